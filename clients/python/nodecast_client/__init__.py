"""nodecast_client: an asyncio client for nodecast hosts (aiohttp only).

It negotiates PART frames and resume, reassembles each image from its parts,
checks its size and sha256, reconnects after a drop with backoff and resumes
where the stream broke, and falls back to base64 JSON parts (parts=False).
See README.md.
"""
from .client import (Backoff, Client, Event, Image, Message, NodecastError, ProgressText,
                     PromptError, ResumeLost)

__all__ = ["Backoff", "Client", "Event", "Image", "Message", "NodecastError", "ProgressText", "PromptError",
           "ResumeLost"]
__version__ = "0.1.0"
