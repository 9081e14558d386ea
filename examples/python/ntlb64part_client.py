#!/usr/bin/python3
"""A ComfyUI client in the style of the ntlb64part rewrite's README: aiohttp,
a dict of base64 parts per node label and image index, joined and decoded at
the end. It runs unchanged against ComfyUI with the NTL nodes and against
nodecast; against nodecast it also checks the integrity fields nodecast adds
(part_count, size, sha256), so a missing or corrupt part is detected.

  ntlb64part_client.py URL IMAGE N [--partlen CHARS] [--out DIR]

Uploads IMAGE, queues LoadImage -> RepeatImageBatch(N) -> NTL_SendImagesWebSocket,
receives the batch, compares every pixel with IMAGE and prints one JSON line:
{"ok","images","max_diff","max_message","parts","verified_sha256","error"}.
Needs aiohttp, Pillow and numpy (Debian: python3-aiohttp python3-pil python3-numpy).
"""
import argparse, asyncio, base64, hashlib, io, json, sys, urllib.request, uuid

import aiohttp
import numpy as np
from PIL import Image


def _is_continuous(img_data):
    keys = sorted(img_data.keys())
    return keys == list(range(len(keys)))


def _merge_base64_to_pil(allb64, meta):
    result, verified = {}, 0
    for node, node_data in allb64.items():
        result[node] = []
        for img_index, img_data in sorted(node_data.items()):
            if not _is_continuous(img_data):
                raise ValueError(f"non-continuous image: node_{node}_image_{img_index}")
            full_b64 = "".join(value for _, value in sorted(img_data.items()))
            img_bytes = base64.b64decode(full_b64)
            m = meta.get((node, img_index))
            if m:  # nodecast's integrity fields
                if len(img_data) != m["part_count"]:
                    raise ValueError(f"image {img_index}: {len(img_data)} parts of {m['part_count']}")
                if len(img_bytes) != m["size"]:
                    raise ValueError(f"image {img_index}: {len(img_bytes)} bytes, header says {m['size']}")
                if hashlib.sha256(img_bytes).hexdigest() != m["sha256"]:
                    raise ValueError(f"image {img_index}: sha256 mismatch")
                verified += 1
            img = Image.open(io.BytesIO(img_bytes))
            img.load()
            result[node].append(img)
    return result, verified


def upload(url, path):
    boundary = uuid.uuid4().hex
    data = open(path, "rb").read()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"ntl_src.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "/upload/image", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return json.loads(urllib.request.urlopen(req).read())["name"]


async def _get_images(url, prompt, client_id):
    allb64, meta, max_message, parts = {}, {}, 0, 0
    async with aiohttp.ClientSession() as session:
        # The stock limit of aiohttp: any message of 4 MiB or more kills the connection.
        async with session.ws_connect(url.replace("http", "ws", 1) + f"/ws?clientId={client_id}") as ws:
            async with session.post(url + "/prompt", json={"prompt": prompt, "client_id": client_id}) as r:
                body = await r.json()
                if r.status != 200:
                    raise RuntimeError(f"POST /prompt: {r.status} {body}")
                prompt_id = body["prompt_id"]
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    max_message = max(max_message, len(msg.data))
                    message = json.loads(msg.data)
                    if message["type"] == "execution_error":
                        raise RuntimeError(f"execution_error: {message['data'].get('exception_message')}")
                    if message["type"] == "executing" and message.get("data"):
                        data = message["data"]
                        if data["node"] is None and data["prompt_id"] == prompt_id:
                            break
                    if message["type"] == "ntlb64part" and message.get("data"):
                        m = message["data"]
                        parts += 1
                        allb64.setdefault(m["nodelabel"], {}).setdefault(m["img_idx"], {})[m["part_idx"]] = m["part_b64"]
                        if "sha256" in m:
                            meta[(m["nodelabel"], m["img_idx"])] = m
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    max_message = max(max_message, len(msg.data))
                else:
                    raise RuntimeError(f"websocket ended: {msg.type} {msg.data}")
    return allb64, meta, max_message, parts


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("img")
    p.add_argument("n", type=int)
    p.add_argument("--partlen", type=int, default=1024 * 1024)
    a = p.parse_args()
    res = {"ok": False, "images": 0, "max_diff": None, "max_message": 0, "parts": 0, "verified_sha256": 0, "error": None}
    try:
        name = upload(a.url, a.img)
        prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                  "2": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": a.n}},
                  "3": {"class_type": "NTL_SendImagesWebSocket",
                        "inputs": {"images": ["2", 0], "nodelabel": "out", "partlen": a.partlen}}}
        allb64, meta, max_message, parts = asyncio.run(_get_images(a.url, prompt, str(uuid.uuid4())))
        images, verified = _merge_base64_to_pil(allb64, meta)
        images = images.get("out", [])
        ref = np.asarray(Image.open(a.img).convert("RGB"), dtype=np.int16)
        diff = max((int(np.abs(np.asarray(i.convert("RGB"), dtype=np.int16) - ref).max()) for i in images), default=None)
        res.update(images=len(images), max_diff=diff, max_message=max_message, parts=parts, verified_sha256=verified,
                   ok=len(images) == a.n and diff == 0 and verified == a.n)
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {e}"[:300]
    print(json.dumps(res))
    sys.exit(0 if res["ok"] else 1)


if __name__ == "__main__":
    main()
