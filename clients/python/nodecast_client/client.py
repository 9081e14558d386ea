"""The nodecast asyncio client: one WebSocket that survives drops.

Wire format: the main README's "What a client reads" and "Client sessions".
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, List, Optional, Union

import aiohttp

PART_MAGIC = 0x50415254  # "PART"
CLOSE_REPLACED = 4001


class NodecastError(Exception):
    """A refused part or image (kind: part, size, sha256, pending, seq, http)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class PromptError(NodecastError):
    """The host refused a prompt (ComfyUI's 400 answer: error, node_errors)."""

    def __init__(self, status: int, body: str):
        super().__init__("http", f"POST /prompt: HTTP {status}: {body[:500]}")
        self.status, self.body = status, body


@dataclass
class Image:
    """A whole image; its size and sha256 were checked against the host's."""
    data: bytes
    event: str
    node: str
    index: int
    batch: int
    prompt_id: str
    image_id: str
    mime: str
    size: int
    sha256: str
    seq: int = 0          # position of its last part in the stream (0 without resume)
    shape: str = "part"   # part, b64 (base64 JSON parts) or whole (type 1/4 frame)

    def to_pil(self):
        """Decodes the image with Pillow (optional dependency)."""
        import io
        from PIL import Image as PILImage
        im = PILImage.open(io.BytesIO(self.data))
        im.load()
        return im


@dataclass
class Message:
    """A ComfyUI JSON message: status, executing, progress, executed, ..."""
    type: str
    data: Any
    seq: int = 0

    def is_prompt_done(self, prompt_id: str) -> bool:
        """True for the executing message with node null that ends prompt_id."""
        return (self.type == "executing" and isinstance(self.data, dict)
                and self.data.get("node") is None and self.data.get("prompt_id") == prompt_id)


@dataclass
class ResumeLost:
    """After a reconnect the host could not resume: messages were missed (read
    /history for them); images incomplete at the drop are listed in dropped."""
    reason: str
    dropped: List[str] = field(default_factory=list)


@dataclass
class ProgressText:
    """A node's progress text: ComfyUI's binary TEXT frame (type 3,
    [u32be 3][u32be len(node_id)][node_id][utf-8 text]), what a node sends with
    send_progress_text. It has no seq: the frame has no room for one, so it is
    delivered live and not replayed after a resume."""
    node: str
    text: str


Event = Union[Image, Message, ProgressText, ResumeLost]


@dataclass
class Backoff:
    """Delay before reconnect number attempt: min doubling (times factor) up
    to max, each randomized by ±jitter of itself."""
    min: float = 0.1
    max: float = 10.0
    factor: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        d = min(self.min * self.factor ** attempt, self.max)
        if self.jitter > 0:
            d += d * self.jitter * (2 * random.random() - 1)
        return max(0.0, d)


class _Pending:
    __slots__ = ("h", "chunks", "got", "nbytes")

    def __init__(self, h: dict):
        self.h = h
        self.chunks: List[Optional[bytes]] = [None] * h["parts"]
        self.got = 0
        self.nbytes = 0


class Client:
    """A connection to a nodecast host at base_url (http://host:port).

    async with Client("http://127.0.0.1:8188") as c:
        prompt_id = await c.queue_prompt(prompt)
        async for ev in c:
            if isinstance(ev, Image): ...
            if isinstance(ev, Message) and ev.is_prompt_done(prompt_id): break

    parts=True negotiates PART frames and (resume=True) resume; parts=False
    reads base64 JSON parts (the ntlb64part shape) and does not resume.
    Events are delivered in the host's order. A caller that stops iterating
    stops the client reading its socket (at most event_buffer events wait);
    the host then drops the connection and the client resumes when read again.
    """

    def __init__(self, base_url: str, *, client_id: Optional[str] = None, token: Optional[str] = None,
                 parts: bool = True, resume: bool = True, backoff: Optional[Backoff] = None,
                 max_attempts: int = 0, max_pending_bytes: int = 1 << 30,
                 max_msg_size: int = 64 << 20, event_buffer: int = 64,
                 session: Optional[aiohttp.ClientSession] = None):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url {base_url!r}: want http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.token = token or ""
        self.parts = parts
        self.resume = resume and parts
        self.backoff = backoff or Backoff()
        self.max_attempts = max_attempts
        self.max_pending_bytes = max_pending_bytes
        self.max_msg_size = max_msg_size
        self.epoch, self.seq = "", 0
        self.server_flags: Dict[str, Any] = {}
        self.stats = {"connects": 0, "resumed": 0, "resume_lost": 0, "images": 0, "messages": 0, "refused": 0}
        self.error: Optional[BaseException] = None  # why the client ended, when it did on its own
        self.last_refusal: Optional[NodecastError] = None  # the last part or image refused (see stats["refused"])
        self._session = session
        self._own_session = session is None
        self._events: asyncio.Queue = asyncio.Queue(maxsize=event_buffer)
        self._pending: Dict[str, _Pending] = {}
        self._pending_bytes = 0
        self._ws: Optional[aiohttp.ClientWebSocketResponse] = None
        self._task: Optional[asyncio.Task] = None
        self._closed = False

    # --- lifecycle ---------------------------------------------------------

    async def connect(self) -> "Client":
        """Connects and waits for the host's feature_flags answer, so that a
        prompt queued after it is numbered for this client. Later drops are
        handled by reconnecting."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        early = await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._run(early))
        return self

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._own_session and self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> "Client":
        return await self.connect()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def drop(self) -> None:
        """Closes the socket as a network drop would (tests, demos): the
        client reconnects and resumes."""
        if self._ws is not None:
            asyncio.get_running_loop().create_task(self._ws.close(code=4000, message=b"dropped by the client"))

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    async def events(self) -> AsyncIterator[Event]:
        """Messages, images and ResumeLost in the host's order, until the
        client ends (close, replaced by another connection, or gave up)."""
        while True:
            ev = await self._events.get()
            if ev is None:
                return
            yield ev

    # --- HTTP --------------------------------------------------------------

    def _headers(self) -> Dict[str, str]:
        return {"Authorization": "Bearer " + self.token} if self.token else {}

    async def queue_prompt(self, prompt: Dict[str, Any]) -> str:
        """Queues an API-format prompt (node id -> class_type, inputs) for
        this client; returns its prompt_id."""
        return await self._queue({"prompt": prompt, "client_id": self.client_id})

    async def queue_workflow(self, name: str) -> str:
        """Queues a workflow configured on the host (its config file) by name."""
        return await self._queue({"workflow": name, "client_id": self.client_id})

    async def _queue(self, body: dict) -> str:
        async with self._session.post(self.base_url + "/prompt", json=body, headers=self._headers()) as r:
            text = await r.text()
            if r.status != 200:
                raise PromptError(r.status, text)
            return json.loads(text)["prompt_id"]

    async def upload(self, image: Union[bytes, str, os.PathLike], name: Optional[str] = None,
                     overwrite: bool = True) -> Dict[str, str]:
        """Uploads an image (bytes or a file path) for LoadImage; returns
        {"name", "subfolder", "type"}: LoadImage reads it by name."""
        if not isinstance(image, (bytes, bytearray)):
            name = name or os.path.basename(os.fspath(image))
            with open(image, "rb") as f:
                image = f.read()
        form = aiohttp.FormData()
        form.add_field("image", bytes(image), filename=name or "image.png", content_type="application/octet-stream")
        form.add_field("type", "input")
        form.add_field("overwrite", "true" if overwrite else "false")
        async with self._session.post(self.base_url + "/upload/image", data=form, headers=self._headers()) as r:
            text = await r.text()
            if r.status != 200:
                raise NodecastError("http", f"upload {name}: HTTP {r.status}: {text[:500]}")
            return json.loads(text)

    async def get_queue(self) -> dict:
        return await self._get("/queue")

    async def get_history(self, max_items: int = 20) -> dict:
        return await self._get(f"/history?max_items={int(max_items)}")

    async def interrupt(self) -> None:
        async with self._session.post(self.base_url + "/interrupt", json={}, headers=self._headers()) as r:
            await r.read()

    async def _get(self, path: str) -> Any:
        async with self._session.get(self.base_url + path, headers=self._headers()) as r:
            text = await r.text()
            if r.status != 200:
                raise NodecastError("http", f"GET {path}: HTTP {r.status}: {text[:500]}")
            return json.loads(text)

    # --- WebSocket ---------------------------------------------------------

    def _ws_url(self) -> str:
        u = "ws" + self.base_url[len("http"):] + "/ws?clientId=" + self.client_id
        if self.token:
            u += "&token=" + self.token
        return u

    async def _connect(self) -> List[Event]:
        """Dials, sends the flags (with resume_from when the client has a
        position) and reads up to the answer; returns what came before it."""
        resuming = self.resume and self.epoch != ""
        ws = await self._session.ws_connect(self._ws_url(), headers=self._headers(),
                                            max_msg_size=self.max_msg_size, heartbeat=30)
        self._ws = ws
        flags: Dict[str, Any] = {"supports_image_parts": self.parts, "supports_resume": self.resume}
        if resuming:
            flags["resume_from"] = {"epoch": self.epoch, "seq": self.seq}
        try:
            await ws.send_str(json.dumps({"type": "feature_flags", "data": flags}))
            early: List[Event] = []
            while True:
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    m = json.loads(msg.data)
                    if m.get("type") == "feature_flags":
                        lost = self._answer(m.get("data") or {}, resuming)
                        if lost is not None:
                            early.append(lost)
                        self.stats["connects"] += 1
                        return early
                    early.extend(self._handle_text(m))
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    early.extend(self._handle_binary(msg.data))
                else:
                    raise ConnectionError(f"closed ({ws.close_code}) before the feature_flags answer")
        except BaseException:
            await ws.close()
            raise

    def _answer(self, data: dict, resuming: bool) -> Optional[ResumeLost]:
        self.server_flags = data
        st = data.get("resume")
        if not st:  # a host without resume (ComfyUI): live only
            self.epoch, self.seq = "", 0
            return None
        self.epoch, self.seq = st["epoch"], int(st["seq"])
        if not resuming:
            return None
        if st.get("recovered") is True:
            self.stats["resumed"] += 1
            return None
        self.stats["resume_lost"] += 1
        dropped = list(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        return ResumeLost(reason=st.get("reason", ""), dropped=dropped)

    async def _run(self, early: List[Event]) -> None:
        failures = 0
        try:
            while True:
                for ev in early:
                    await self._deliver(ev)
                code = await self._read(self._ws)
                if self._closed:
                    return
                if code == CLOSE_REPLACED:
                    self.error = NodecastError("http", "replaced by another connection with the same clientId")
                    return
                while True:
                    await asyncio.sleep(self.backoff.delay(failures))
                    try:
                        early = await self._connect()
                        failures = 0
                        break
                    except (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError, OSError) as e:
                        failures += 1
                        if self.max_attempts and failures >= self.max_attempts:
                            self.error = e
                            return
        finally:
            # End of events; never blocks, even when the queue is full.
            while True:
                try:
                    self._events.put_nowait(None)
                    break
                except asyncio.QueueFull:
                    self._events.get_nowait()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> Optional[int]:
        """Serves one connection until it ends; returns its close code."""
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    evs = self._handle_text(json.loads(msg.data))
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    evs = self._handle_binary(msg.data)
                else:
                    break
                for ev in evs:
                    await self._deliver(ev)
        except NodecastError:
            # A hole in seq: reconnect and resume from the last whole message.
            await ws.close(code=4000, message=b"seq hole")
        except (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError, OSError):
            pass
        return ws.close_code

    async def _deliver(self, ev: Event) -> None:
        await self._events.put(ev)
        if isinstance(ev, Image):
            self.stats["images"] += 1
        elif isinstance(ev, Message):
            self.stats["messages"] += 1

    def _advance(self, seq: int) -> None:
        if not seq or self.epoch == "":
            return
        if seq != self.seq + 1:
            raise NodecastError("seq", f"got seq {seq} after {self.seq}; reconnecting to resume")
        self.seq = seq

    def _handle_text(self, m: dict) -> List[Event]:
        seq = int(m.get("seq") or 0)
        self._advance(seq)
        data = m.get("data")
        if not seq and isinstance(data, dict) and isinstance(data.get("part_b64"), str):
            return self._add_b64(m.get("type", ""), data)
        return [Message(type=m.get("type", ""), data=data, seq=seq)]

    def _handle_binary(self, b: bytes) -> List[Event]:
        if len(b) < 8:
            raise NodecastError("part", f"binary frame of {len(b)} bytes")
        kind, n = struct.unpack(">II", b[:8])
        if kind == PART_MAGIC:
            if 8 + n > len(b):
                raise NodecastError("part", f"PART header of {n} bytes in a frame of {len(b)}")
            h = json.loads(b[8:8 + n])
            seq = int(h.get("seq") or 0)
            self._advance(seq)
            return self._add_part(h, b[8 + n:], "part", seq)
        if kind in (1, 4):  # a whole image; type 4 carries metadata first
            meta, off = {}, 8
            if kind == 4:
                meta, off = json.loads(b[8:8 + n]), 8 + n
                mime = meta.get("image_type") or "image/jpeg"
            else:
                mime = "image/jpeg" if n == 1 else "image/png"
            data = bytes(b[off:])
            return [Image(data=data, event="", node=str(meta.get("node_id", "")), index=0, batch=1,
                          prompt_id=meta.get("prompt_id", ""), image_id="", mime=mime, size=len(data),
                          sha256=hashlib.sha256(data).hexdigest(), shape="whole")]
        if kind == 3:  # TEXT; a malformed one is skipped, as an unknown frame is
            if 8 + n > len(b):
                return []
            return [ProgressText(node=bytes(b[8:8 + n]).decode("utf-8", "replace"),
                                 text=bytes(b[8 + n:]).decode("utf-8", "replace"))]
        return []  # a frame type this client does not know

    def _add_b64(self, event: str, d: dict) -> List[Event]:
        if not isinstance(d.get("part_count"), int) or not isinstance(d.get("sha256"), str):
            return self._refuse(NodecastError("part", f"base64 part of {event} without part_count or sha256: not a nodecast host"))
        node = str(d.get("node") or d.get("nodelabel") or "")
        h = {"event": event, "prompt_id": d.get("prompt_id", ""), "node": node,
             "image_id": d.get("image_id") or f"{d.get('prompt_id')}/{node}/{d.get('img_idx')}",
             "index": d.get("img_idx", 0), "batch": d.get("batch", 0), "part": d.get("part_idx"),
             "parts": d["part_count"], "offset": d.get("offset", -1), "size": d.get("size"),
             "mime": d.get("mime", "image/png"), "sha256": d["sha256"]}
        try:
            data = base64.b64decode(d["part_b64"], validate=True)
        except ValueError as e:
            return self._refuse(NodecastError("part", f"image {h['image_id']} part {h['part']}: bad base64: {e}"))
        return self._add_part(h, data, "b64", 0)

    def _refuse(self, err: NodecastError) -> List[Event]:
        self.stats["refused"] += 1
        self.last_refusal = err
        return []

    def _add_part(self, h: dict, data: bytes, shape: str, seq: int) -> List[Event]:
        iid, part, parts, size = h.get("image_id", ""), h.get("part"), h.get("parts"), h.get("size")
        bad = lambda why: self._refuse(NodecastError("part", f"image {iid} part {part}: {why}"))
        if not (isinstance(parts, int) and parts > 0 and isinstance(part, int) and 0 <= part < parts):
            return bad(f"part {part} of {parts}")
        if not (isinstance(size, int) and size >= 0):
            return bad(f"size {size}")
        p = self._pending.get(iid)
        if p is None:
            if size > self.max_pending_bytes:
                return bad(f"size {size} over max_pending_bytes {self.max_pending_bytes}")
            while self._pending and self._pending_bytes + size > self.max_pending_bytes:
                old = next(iter(self._pending))
                self._drop(old)
                self._refuse(NodecastError("pending", f"image {old} dropped: images being reassembled exceed max_pending_bytes {self.max_pending_bytes}"))
            p = _Pending(h)
            self._pending[iid] = p
            self._pending_bytes += size
        if (p.h["parts"], p.h["size"], p.h["sha256"]) != (parts, size, h.get("sha256")):
            self._drop(iid)
            return bad("parts/size/sha256 differ from the first part's")
        if p.chunks[part] is not None:
            return []  # a duplicate (replayed after a resume): already have it
        off = h.get("offset", -1)
        if isinstance(off, int) and off >= 0 and off + len(data) > size:
            self._drop(iid)
            return bad(f"offset {off} + {len(data)} bytes past size {size}")
        p.chunks[part] = bytes(data)
        p.got += 1
        p.nbytes += len(data)
        if p.got < parts:
            return []
        self._drop(iid)
        whole = b"".join(p.chunks)  # type: ignore[arg-type]
        if len(whole) != size:
            return self._refuse(NodecastError("size", f"image {iid}: {len(whole)} bytes arrived, header says {size}"))
        digest = hashlib.sha256(whole).hexdigest()
        if digest != h["sha256"]:
            return self._refuse(NodecastError("sha256", f"image {iid}: sha256 {digest}, header says {h['sha256']}"))
        return [Image(data=whole, event=h.get("event", ""), node=str(h.get("node", "")), index=int(h.get("index", 0)),
                      batch=int(h.get("batch") or 0), prompt_id=h.get("prompt_id", ""), image_id=iid,
                      mime=h.get("mime", ""), size=size, sha256=digest, seq=seq, shape=shape)]

    def _drop(self, iid: str) -> None:
        p = self._pending.pop(iid, None)
        if p is not None:
            self._pending_bytes -= p.h["size"]
