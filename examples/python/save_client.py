#!/usr/bin/python3
"""A ComfyUI client written the way ComfyUI's script example
websockets_api_example.py is: websocket-client, urllib, queue a prompt with
our own prompt_id, wait for "executing" with node None, read /history/{id},
fetch every image with GET /view. It runs unchanged against ComfyUI and
against nodecast.

  save_client.py URL IMAGE N PREFIX

Uploads IMAGE, queues LoadImage -> RepeatImageBatch(N) -> SaveImage(PREFIX)
and PreviewImage, with a workflow in extra_data.extra_pnginfo, twice; then
checks every saved image: its pixels equal IMAGE's, its PNG text chunks hold
the prompt and the workflow as JSON, its name follows ComfyUI's counter
({PREFIX}_00001_.png, ...), and /view's preview=webp;90 and channel=rgb
answers decode. Prints one JSON line:
{"ok","saved","previews","max_diff","names","text_chunks","view_checks","error"}.
Needs websocket-client and Pillow (Debian: python3-websocket python3-pil).
"""
import io
import json
import sys
import urllib.parse
import urllib.request
import uuid

import websocket  # websocket-client
from PIL import Image

server_address = ""
client_id = str(uuid.uuid4())


def queue_prompt(prompt, prompt_id, extra_data):
    p = {"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id, "extra_data": extra_data}
    data = json.dumps(p).encode("utf-8")
    req = urllib.request.Request("http://{}/prompt".format(server_address), data=data)
    urllib.request.urlopen(req).read()


def get_image(filename, subfolder, folder_type, **extra):
    data = {"filename": filename, "subfolder": subfolder, "type": folder_type}
    url_values = urllib.parse.urlencode(data)
    for k, v in extra.items():  # preview=webp;90 goes unescaped, as ComfyUI's front end sends it
        url_values += "&{}={}".format(k, v)
    with urllib.request.urlopen("http://{}/view?{}".format(server_address, url_values)) as response:
        return response.read(), response.headers


def get_history(prompt_id):
    with urllib.request.urlopen("http://{}/history/{}".format(server_address, prompt_id)) as response:
        return json.loads(response.read())


def upload_image(path):
    boundary = uuid.uuid4().hex
    with open(path, "rb") as f:
        body = f.read()
    name = path.rsplit("/", 1)[-1]
    data = (
        "--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{n}\"\r\n"
        "Content-Type: image/png\r\n\r\n".format(b=boundary, n=name).encode() + body +
        "\r\n--{b}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n--{b}--\r\n".format(b=boundary).encode()
    )
    req = urllib.request.Request("http://{}/upload/image".format(server_address), data=data,
                                 headers={"Content-Type": "multipart/form-data; boundary=" + boundary})
    with urllib.request.urlopen(req) as response:
        return json.loads(response.read())["name"]


def get_images(ws, prompt, extra_data):
    prompt_id = str(uuid.uuid4())
    queue_prompt(prompt, prompt_id, extra_data)
    output_images = {}
    while True:
        out = ws.recv()
        if isinstance(out, str):
            message = json.loads(out)
            if message["type"] == "executing":
                data = message["data"]
                if data["node"] is None and data["prompt_id"] == prompt_id:
                    break  # Execution is done
            elif message["type"] == "execution_error":
                raise RuntimeError("execution_error: " + json.dumps(message["data"])[:500])
        else:
            continue  # previews are binary data

    history = get_history(prompt_id)[prompt_id]
    for node_id in history["outputs"]:
        node_output = history["outputs"][node_id]
        images_output = []
        if "images" in node_output:
            for image in node_output["images"]:
                image_data, _ = get_image(image["filename"], image["subfolder"], image["type"])
                images_output.append((image, image_data))
        output_images[node_id] = images_output
    return output_images


def check(url, image_path, n, prefix):
    global server_address
    server_address = urllib.parse.urlparse(url).netloc
    want = Image.open(image_path).convert("RGB")
    name = upload_image(image_path)
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": n}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
        "10": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    workflow = {"last_node_id": 10, "nodes": [{"id": 9, "type": "SaveImage", "title": "Save \u00e9t\u00e9"}], "version": 0.4}
    result = {"saved": 0, "previews": 0, "max_diff": 0, "names": [], "text_chunks": 0, "view_checks": 0}

    ws = websocket.WebSocket()
    ws.connect("ws://{}/ws?clientId={}".format(server_address, client_id))
    try:
        for _ in range(2):  # the second run continues the counter
            images = get_images(ws, prompt, {"extra_pnginfo": {"workflow": workflow}})
            for node_id, outputs in images.items():
                for meta, data in outputs:
                    img = Image.open(io.BytesIO(data))
                    img.load()
                    if img.size != want.size:
                        raise ValueError("{}: size {} want {}".format(meta["filename"], img.size, want.size))
                    a, b = img.convert("RGB").tobytes(), want.tobytes()
                    diff = max(abs(x - y) for x, y in zip(a, b)) if a != b else 0
                    result["max_diff"] = max(result["max_diff"], diff)
                    if node_id == "10":
                        if meta["type"] != "temp" or not meta["filename"].startswith("ComfyUI_temp_"):
                            raise ValueError("preview saved as {}".format(meta))
                        result["previews"] += 1
                        continue
                    if meta["type"] != "output":
                        raise ValueError("saved as {}".format(meta))
                    result["saved"] += 1
                    result["names"].append(meta["subfolder"] + "/" + meta["filename"] if meta["subfolder"] else meta["filename"])
                    text = img.text  # Pillow's view of the tEXt chunks
                    got_prompt, got_workflow = json.loads(text["prompt"]), json.loads(text["workflow"])
                    for nid, node in prompt.items():
                        gn = got_prompt[nid]
                        if gn["class_type"] != node["class_type"] or any(gn["inputs"].get(k) != v for k, v in node["inputs"].items()):
                            raise ValueError("prompt chunk node {}: {}".format(nid, gn))
                    if got_workflow != workflow:
                        raise ValueError("workflow chunk {!r}".format(text["workflow"][:200]))
                    result["text_chunks"] += 1
                    # /view re-encodes: a webp preview and the RGB channels.
                    webp, headers = get_image(meta["filename"], meta["subfolder"], meta["type"], preview="webp;90")
                    if headers["Content-Type"] != "image/webp" or Image.open(io.BytesIO(webp)).size != want.size:
                        raise ValueError("preview=webp;90 answered {} {}".format(headers["Content-Type"], len(webp)))
                    rgb, headers = get_image(meta["filename"], meta["subfolder"], meta["type"], channel="rgb")
                    if Image.open(io.BytesIO(rgb)).convert("RGB").tobytes() != want.tobytes():
                        raise ValueError("channel=rgb differs")
                    result["view_checks"] += 1
    finally:
        ws.close()
    return result


def main():
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    url, image_path, n, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    try:
        result = check(url, image_path, n, prefix)
        result["ok"] = result["max_diff"] == 0
    except Exception as e:  # one JSON line whatever happens, for the test that runs this
        result = {"ok": False, "error": "{}: {}".format(type(e).__name__, e)}
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
