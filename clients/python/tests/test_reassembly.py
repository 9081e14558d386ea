"""Reassembly and checks of nodecast_client, on frames built as the host
builds them (PART: [u32be "PART"][u32be len(json)][json][bytes])."""
import base64
import hashlib
import json
import struct
import unittest

from nodecast_client import Image, Message, NodecastError, ProgressText
from nodecast_client.client import Client, PART_MAGIC


def part_frame(h: dict, data: bytes) -> bytes:
    j = json.dumps(h).encode()
    return struct.pack(">II", PART_MAGIC, len(j)) + j + data


def parts_of(img: bytes, n: int, image_id="p/3/0", sha=None, seq0=0):
    size = len(img)
    step = -(-size // n)
    out = []
    for i in range(n):
        h = {"event": "e", "prompt_id": "p", "node": "3", "image_id": image_id, "index": 0, "batch": 1,
             "part": i, "parts": n, "offset": i * step, "size": size, "mime": "image/png",
             "sha256": sha or hashlib.sha256(img).hexdigest()}
        if seq0:
            h["seq"] = seq0 + i
        out.append(part_frame(h, img[i * step:(i + 1) * step]))
    return out


class Reassembly(unittest.TestCase):
    def setUp(self):
        self.c = Client("http://127.0.0.1:1")
        self.img = bytes(range(256)) * 1000

    def feed(self, frames):
        evs = []
        for f in frames:
            evs.extend(self.c._handle_binary(f))
        return evs

    def test_whole_image_in_order_and_out_of_order(self):
        fr = parts_of(self.img, 3)
        for order in ([0, 1, 2], [2, 0, 1]):
            evs = self.feed([fr[i] for i in order])
            self.assertEqual(len(evs), 1)
            self.assertIsInstance(evs[0], Image)
            self.assertEqual(evs[0].data, self.img)
            self.assertEqual((evs[0].event, evs[0].node, evs[0].shape), ("e", "3", "part"))

    def test_sha256_mismatch_is_refused(self):
        evs = self.feed(parts_of(self.img, 2, sha="0" * 64))
        self.assertEqual(evs, [])
        self.assertEqual(self.c.stats["refused"], 1)
        self.assertEqual(self.c.last_refusal.kind, "sha256")

    def test_duplicate_part_is_ignored(self):
        fr = parts_of(self.img, 3)
        evs = self.feed([fr[0], fr[0], fr[1], fr[2]])
        self.assertEqual(len(evs), 1)
        self.assertEqual(evs[0].data, self.img)

    def test_inconsistent_parts_are_refused(self):
        fr = parts_of(self.img, 3)
        other = parts_of(self.img + b"x", 3)
        evs = self.feed([fr[0], other[1]])
        self.assertEqual(evs, [])
        self.assertIn("differ", str(self.c.last_refusal))

    def test_part_out_of_range_is_refused(self):
        h = {"image_id": "x", "part": 3, "parts": 3, "size": 3, "sha256": ""}
        self.assertEqual(self.feed([part_frame(h, b"abc")]), [])
        self.assertIn("part 3 of 3", str(self.c.last_refusal))

    def test_pending_bound_drops_the_oldest(self):
        self.c.max_pending_bytes = len(self.img) + 10
        a = parts_of(self.img, 2, image_id="a")
        b = parts_of(self.img, 2, image_id="b")
        evs = self.feed([a[0], b[0], b[1], a[1]])
        self.assertEqual([e.image_id for e in evs], ["b"])
        self.assertEqual(self.c.last_refusal.kind, "pending")  # a was dropped for b; its last part starts anew, incomplete
        self.assertIn("image a dropped", str(self.c.last_refusal))

    def test_seq_hole_raises_to_reconnect(self):
        self.c.epoch, self.c.seq = "E", 10
        fr = parts_of(self.img, 2, seq0=11)
        self.feed([fr[0]])
        self.assertEqual(self.c.seq, 11)
        with self.assertRaises(NodecastError):
            self.c._handle_text({"seq": 13, "type": "progress", "data": {}})

    def test_base64_parts(self):
        size, sha = len(self.img), hashlib.sha256(self.img).hexdigest()
        half = size // 2
        evs = []
        for i, chunk in enumerate([self.img[:half], self.img[half:]]):
            evs.extend(self.c._handle_text({"type": "myevent", "data": {
                "nodelabel": "3", "img_idx": 0, "part_idx": i, "part_b64": base64.b64encode(chunk).decode(),
                "part_count": 2, "size": size, "mime": "image/png", "sha256": sha, "prompt_id": "p", "node": "3"}}))
        self.assertEqual(len(evs), 1)
        self.assertEqual((evs[0].data, evs[0].shape, evs[0].event), (self.img, "b64", "myevent"))

    def test_messages_pass_through(self):
        evs = self.c._handle_text({"type": "executing", "data": {"node": None, "prompt_id": "p"}})
        self.assertIsInstance(evs[0], Message)
        self.assertTrue(evs[0].is_prompt_done("p"))

    def test_progress_text_frames(self):
        # ComfyUI's server.py send_progress_text: struct.pack(">I", 3), then
        # struct.pack(">I", len(node_id)) + node_id + text, all UTF-8.
        node, text = "12", "étape 2/3"
        frame = struct.pack(">II", 3, len(node.encode())) + node.encode() + text.encode()
        evs = self.c._handle_binary(frame)
        self.assertEqual(evs, [ProgressText(node="12", text="étape 2/3")])
        # A node id longer than the frame is skipped, not fatal.
        self.assertEqual(self.c._handle_binary(struct.pack(">II", 3, 99) + b"x"), [])


if __name__ == "__main__":
    unittest.main()
