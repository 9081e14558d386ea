"""python3 -m nodecast_client URL [options]: queue a prompt and receive it.

  python3 -m nodecast_client http://127.0.0.1:8188 --prompt prompt.json [--upload photo.png]
      [--workflow NAME] [--out DIR] [--no-parts] [--client-id ID] [--drop-after-bytes N]

Prints one JSON line per image ({"image", "node", "event", "size", "sha256",
"shape", "width", "height"}; width and height when Pillow is installed) and a
last line {"ok", "prompt_id", "images", "stats", "error"}. Exit status 0 when
the prompt ended with success and every image was verified.
"""
import argparse
import asyncio
import json
import os
import sys

from . import Client, Image, Message, ResumeLost


async def run(args) -> dict:
    async with Client(args.url, client_id=args.client_id, parts=not args.no_parts) as c:
        if args.upload:
            up = await c.upload(args.upload)
            print(json.dumps({"uploaded": up["name"]}), flush=True)
        if args.workflow:
            pid = await c.queue_workflow(args.workflow)
        else:
            with open(args.prompt) as f:
                prompt = json.load(f)
            pid = await c.queue_prompt(prompt.get("prompt", prompt))
        images, status, received = 0, "", 0
        async for ev in c:
            if isinstance(ev, ResumeLost):
                return {"ok": False, "prompt_id": pid, "images": images, "stats": c.stats, "error": "resume lost: " + ev.reason}
            if isinstance(ev, Image) and ev.prompt_id == pid:
                images += 1
                line = {"image": ev.index, "node": ev.node, "event": ev.event, "size": ev.size,
                        "sha256": ev.sha256, "shape": ev.shape}
                try:
                    w, h = ev.to_pil().size
                    line.update(width=w, height=h)
                except ImportError:
                    pass
                if args.out:
                    os.makedirs(args.out, exist_ok=True)
                    with open(os.path.join(args.out, f"{ev.node}_{ev.index}.png"), "wb") as f:
                        f.write(ev.data)
                print(json.dumps(line), flush=True)
                received += ev.size
                if args.drop_after_bytes and received >= args.drop_after_bytes:
                    args.drop_after_bytes = 0
                    c.drop()
            if isinstance(ev, Message):
                if ev.type in ("execution_success", "execution_error", "execution_interrupted") and ev.data.get("prompt_id") == pid:
                    status = ev.type
                if ev.is_prompt_done(pid):
                    break
        ok = status == "execution_success" and c.stats["refused"] == 0
        err = "" if ok else f"status {status!r}, refused {c.stats['refused']}: {c.last_refusal}"
        return {"ok": ok, "prompt_id": pid, "images": images, "stats": c.stats, "error": err}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python3 -m nodecast_client", description=__doc__.split("\n")[0])
    ap.add_argument("url", help="the host, e.g. http://127.0.0.1:8188")
    ap.add_argument("--prompt", help="API-format prompt JSON file")
    ap.add_argument("--workflow", help="a workflow configured on the host")
    ap.add_argument("--upload", help="upload this image first")
    ap.add_argument("--out", help="write the images to this folder")
    ap.add_argument("--no-parts", action="store_true", help="base64 JSON parts instead of PART frames (no resume)")
    ap.add_argument("--client-id")
    ap.add_argument("--drop-after-bytes", type=int, default=0, help="drop the connection once (after this many image bytes) to show resume")
    args = ap.parse_args()
    if not args.prompt and not args.workflow:
        ap.error("--prompt or --workflow is needed")
    try:
        res = asyncio.run(run(args))
    except Exception as e:  # one JSON line whatever happens, for scripts
        res = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(res), flush=True)
    return 0 if res.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
