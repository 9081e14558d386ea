// The live page: every prompt's images as they arrive, grouped by prompt and
// node, progress per node, the queue and history, the connection and its
// resumes, a form to queue a prompt and one to upload an image. It uses only
// client.js and the host's public routes.
//
// Memory: each image is one Blob until it is drawn, scaled by the browser,
// into a small thumbnail canvas; only the newest `keep` images (?keep=N,
// default 40) keep their Blob for the full view, older ones are "released".
// The only object URL is the open full view's, revoked when it closes. A
// long session of 2048² batches therefore does not grow without bound.

import { NodecastClient } from "/nodecast/client.js";

const params = new URLSearchParams(location.search);
const keep = Math.max(1, parseInt(params.get("keep") || "40", 10) || 40);
const historyItems = Math.max(1, parseInt(params.get("history") || "10", 10) || 10);

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

const client = new NodecastClient(undefined, {
  clientId: params.get("clientId") || undefined,
  token: params.get("token") || undefined,
  parts: params.get("parts") !== "0",
});

/** What the page shows, readable by tests and the console as window.nodecastViewer. */
const viewer = {
  client,
  keep,
  /** @type {Array<{promptId:string,node:string,event:string,index:number,batch:number,size:number,sha256:string,mime:string,shape:string,width:number,height:number,blob:Blob|null,released:boolean}>} */
  images: [],
  /** prompt_id -> "running" | "success" | "error" | "interrupted" */
  prompts: /** @type {Record<string,string>} */ ({}),
  resumes: /** @type {any[]} */ ([]),
  errors: /** @type {string[]} */ ([]),
  states: /** @type {string[]} */ ([]),
  /** progress text (TEXT frames) as it came: {promptId, node, text} */
  texts: /** @type {Array<{promptId:string,node:string,text:string}>} */ ([]),
  liveURLs: 0, // object URLs alive: the lightbox's, at most one
};
/** @type {any} */ (window).nodecastViewer = viewer;

// --- prompts and nodes ------------------------------------------------------

/** @type {Map<string, HTMLElement>} */ const promptEls = new Map();
/** @type {Map<string, HTMLElement>} */ const nodeEls = new Map();

/** @param {string} id */
function promptEl(id) {
  let el = promptEls.get(id);
  if (el) return el;
  $("empty").hidden = true;
  el = document.createElement("section");
  el.className = "prompt";
  el.dataset.prompt = id;
  el.innerHTML = `<header><h3></h3><span class="status st-running">running</span><span class="muted count"></span></header>`;
  /** @type {HTMLElement} */ (el.querySelector("h3")).textContent = id || "(no prompt id)";
  $("prompts").prepend(el);
  promptEls.set(id, el);
  viewer.prompts[id] ??= "running";
  return el;
}

/** @param {string} promptId @param {string} node */
function nodeEl(promptId, node) {
  const key = promptId + "\u0000" + node;
  let el = nodeEls.get(key);
  if (el) return el;
  el = document.createElement("div");
  el.className = "node";
  el.dataset.node = node;
  el.innerHTML = `<header><span>node <b class="id"></b></span><span class="event"></span><div class="bar"><div></div></div><span class="muted pct"></span></header><p class="text muted"></p><div class="thumbs"></div>`;
  /** @type {HTMLElement} */ (el.querySelector(".id")).textContent = node || "?";
  promptEl(promptId).append(el);
  nodeEls.set(key, el);
  return el;
}

/** @param {string} promptId @param {string} status */
function setPromptStatus(promptId, status) {
  viewer.prompts[promptId] = status;
  const el = promptEls.get(promptId);
  if (!el) return;
  const s = /** @type {HTMLElement} */ (el.querySelector(".status"));
  s.textContent = status;
  s.className = "status st-" + (status === "success" ? "success" : status === "running" ? "running" : "error");
  if (status === "success") el.querySelectorAll(".bar").forEach((b) => b.classList.add("done"));
}

// --- images -------------------------------------------------------------------

const THUMB = 320; // longest side of a thumbnail, in canvas pixels
let thumbQueue = Promise.resolve(); // one full decode at a time: a 2048² image is 16 MiB decoded

client.addEventListener("image", (e) => {
  const d = /** @type {CustomEvent} */ (e).detail;
  const rec = { promptId: d.promptId, node: d.node, event: d.event, index: d.index, batch: d.batch, size: d.size,
    sha256: d.sha256, mime: d.mime, shape: d.shape, width: 0, height: 0, blob: d.blob, released: false };
  viewer.images.push(rec);

  const n = nodeEl(d.promptId, d.node);
  if (d.event) /** @type {HTMLElement} */ (n.querySelector(".event")).textContent = d.event;
  const fig = document.createElement("figure");
  fig.className = "thumb";
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 1;
  const cap = document.createElement("figcaption");
  const idx = document.createElement("span");
  idx.textContent = `#${d.index}${d.batch ? "/" + d.batch : ""}`;
  const dims = document.createElement("span");
  dims.textContent = formatBytes(d.size);
  const ok = document.createElement("span");
  ok.className = "ok";
  ok.textContent = d.sha256 ? "✓" : "";
  ok.title = "sha256 checked: " + d.sha256;
  cap.append(idx, dims, ok);
  fig.append(canvas, cap);
  fig.onclick = openLightbox.bind(null, rec); // not a closure: see drawThumb
  // In batch order, whatever order they arrived in.
  const thumbs = /** @type {HTMLElement} */ (n.querySelector(".thumbs"));
  fig.dataset.index = String(d.index);
  const after = [...thumbs.children].find((c) => Number(/** @type {HTMLElement} */ (c).dataset.index) > d.index);
  thumbs.insertBefore(fig, after || null);
  const count = /** @type {HTMLElement} */ (promptEl(d.promptId).querySelector(".count"));
  count.textContent = `${viewer.images.filter((r) => r.promptId === d.promptId).length} images`;

  const blob = d.blob, imageId = d.imageId;
  thumbQueue = thumbQueue.then(() => drawThumb(blob, rec, canvas, dims, imageId));

  // Only the newest `keep` images keep their Blob (for the full view).
  const live = viewer.images.filter((r) => !r.released);
  for (let i = 0; live.length - i > keep; i++) {
    live[i].released = true;
    live[i].blob = null;
    const f = live[i].fig;
    if (f) {
      f.classList.add("released");
      f.title = "thumbnail only: the full image was released (the page keeps the newest ?keep=" + keep + ")";
    }
  }
  /** @type {any} */ (rec).fig = fig;
});

/**
 * Draws the thumbnail: a small canvas the browser scales the decoded image
 * into; the full decode is closed at once. An <img> of the Blob would keep
 * the encoded and the decoded image in the renderer's caches (~29 MiB per
 * 2048² image, measured) long after its URL is revoked. A function of its
 * own, so that no closure of the image listener (fig.onclick) shares a
 * scope that holds the Blob: that kept every Blob alive (measured, 13 MiB
 * per image).
 * @param {Blob} blob @param {any} rec @param {HTMLCanvasElement} canvas @param {HTMLElement} dims @param {string} imageId
 */
async function drawThumb(blob, rec, canvas, dims, imageId) {
  try {
    const bmp = await createImageBitmap(blob);
    rec.width = bmp.width;
    rec.height = bmp.height;
    const sc = Math.min(1, THUMB / Math.max(bmp.width, bmp.height));
    canvas.width = Math.max(1, Math.round(bmp.width * sc));
    canvas.height = Math.max(1, Math.round(bmp.height * sc));
    /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d")).drawImage(bmp, 0, 0, canvas.width, canvas.height);
    bmp.close();
    dims.textContent = `${rec.width}×${rec.height}`;
  } catch (err) {
    dims.textContent = "does not decode";
    viewer.errors.push(`image ${imageId}: ${err}`);
  }
}

/** The object URL of the image in the lightbox, revoked when it closes. */
let lightboxURL = "";

/** @param {any} rec */
function openLightbox(rec) {
  if (rec.released || !rec.blob) return;
  closeLightbox();
  lightboxURL = URL.createObjectURL(rec.blob);
  viewer.liveURLs = 1;
  /** @type {HTMLImageElement} */ ($("lightbox-img")).src = lightboxURL;
  $("lightbox-cap").textContent = `${rec.promptId} · node ${rec.node} · ${rec.event} #${rec.index} · ${rec.width}×${rec.height} · ${formatBytes(rec.size)} · sha256 ${rec.sha256}`;
  $("lightbox").hidden = false;
}
function closeLightbox() {
  $("lightbox").hidden = true;
  /** @type {HTMLImageElement} */ ($("lightbox-img")).removeAttribute("src");
  if (lightboxURL) URL.revokeObjectURL(lightboxURL);
  lightboxURL = "";
  viewer.liveURLs = 0;
}
$("lightbox").onclick = closeLightbox;

// --- messages -------------------------------------------------------------------

let refreshTimer = 0;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshLists, 250);
}

// The prompt that runs: a TEXT frame names only its node.
let runningPrompt = "";

client.addEventListener("progresstext", (e) => {
  const { node, text } = /** @type {CustomEvent} */ (e).detail;
  viewer.texts.push({ promptId: runningPrompt, node, text });
  if (viewer.texts.length > 1000) viewer.texts.shift();
  if (runningPrompt) /** @type {HTMLElement} */ (nodeEl(runningPrompt, node).querySelector(".text")).textContent = text;
});

client.addEventListener("message", (e) => {
  const { type, data } = /** @type {CustomEvent} */ (e).detail;
  showPositionSoon();
  if ((type === "execution_start" || type === "executing") && data && data.prompt_id) runningPrompt = data.prompt_id;
  switch (type) {
    case "status":
      refreshSoon();
      break;
    case "execution_start":
      promptEl(data.prompt_id);
      refreshSoon();
      break;
    case "progress": {
      const n = nodeEl(data.prompt_id, String(data.node));
      const pct = data.max > 0 ? Math.min(100, (100 * data.value) / data.max) : 0;
      /** @type {HTMLElement} */ (n.querySelector(".bar > div")).style.width = pct + "%";
      /** @type {HTMLElement} */ (n.querySelector(".pct")).textContent = `${data.value}/${data.max}`;
      break;
    }
    case "executing":
      if (data.node === null && data.prompt_id) {
        if (viewer.prompts[data.prompt_id] === "running") setPromptStatus(data.prompt_id, "success");
        refreshSoon();
      }
      break;
    case "execution_success":
      setPromptStatus(data.prompt_id, "success");
      break;
    case "execution_error":
      promptEl(data.prompt_id);
      setPromptStatus(data.prompt_id, "error");
      log(`prompt ${data.prompt_id}: ${data.exception_type || "error"}: ${data.exception_message || ""}`);
      break;
    case "execution_interrupted":
      promptEl(data.prompt_id);
      setPromptStatus(data.prompt_id, "interrupted");
      break;
  }
});

// --- connection -------------------------------------------------------------------

client.addEventListener("state", (e) => {
  const d = /** @type {CustomEvent} */ (e).detail;
  viewer.states.push(d.state);
  const s = $("state");
  s.textContent = d.state;
  s.className = "badge " + d.state;
  log(d.state + (d.delay !== undefined ? ` in ${d.delay} ms` : "") + (d.error ? ` (${d.error})` : ""));
  showPosition();
});
client.addEventListener("resume", (e) => {
  const d = /** @type {CustomEvent} */ (e).detail;
  viewer.resumes.push(d);
  log(d.recovered ? `resumed at seq ${d.seq}, nothing lost` : `resume failed, messages missed: ${d.reason}`);
  showPosition();
  if (!d.recovered) reconcile();
});

/** After messages were missed: prompts that ended meanwhile take their
 * status from /history, marked as incomplete on this page. */
async function reconcile() {
  try {
    const h = await client.getHistory(200);
    for (const [id, st] of Object.entries(viewer.prompts)) {
      const e = h[id];
      if (st !== "running" || !e || !e.status || !e.status.completed && e.status.status_str !== "error") continue;
      setPromptStatus(id, (e.status.status_str || "success") === "success" ? "success" : "error");
      const el = promptEls.get(id);
      if (el) /** @type {HTMLElement} */ (el.querySelector(".status")).textContent += " · images missed while disconnected";
    }
  } catch (err) {
    log("history: " + String(err));
  }
  refreshSoon();
}
client.addEventListener("error", (e) => {
  const err = /** @type {CustomEvent} */ (e).detail.error;
  viewer.errors.push(String(err.message));
  log("error: " + err.message);
});

let positionTimer = 0;
function showPositionSoon() {
  if (!positionTimer) positionTimer = setTimeout(() => { positionTimer = 0; showPosition(); }, 200);
}

function showPosition() {
  const p = client.position;
  $("position").textContent = `client ${client.clientId.slice(0, 8)}` + (p.epoch ? ` · seq ${p.seq}` : "");
  const st = client.stats;
  $("resumes").textContent = st.resumed || st.resumeLost ? `resumed ${st.resumed}×` + (st.resumeLost ? `, lost ${st.resumeLost}×` : "") : "";
}

/** @param {string} line */
function log(line) {
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()} ${line}`;
  const ol = $("log");
  ol.append(li);
  while (ol.children.length > 50) ol.firstElementChild?.remove();
  ol.scrollTop = ol.scrollHeight;
}

$("drop-btn").onclick = () => client.drop();

// --- queue and history --------------------------------------------------------------

async function refreshLists() {
  try {
    const [q, h] = await Promise.all([client.getQueue(), client.getHistory(historyItems)]);
    const ul = $("queue");
    ul.replaceChildren();
    const rows = [...(q.queue_running || []).map((/** @type {any} */ e) => [e, "running"]),
      ...(q.queue_pending || []).map((/** @type {any} */ e) => [e, "pending"])];
    for (const [e, st] of rows) ul.append(row(e[1], st));
    $("queue-count").textContent = rows.length ? `(${rows.length})` : "";
    if (!rows.length) ul.append(row("", "empty"));
    const hl = $("history");
    hl.replaceChildren();
    const entries = Object.entries(h).reverse();
    for (const [id, e] of entries) {
      const st = e.status?.status_str || (e.status?.completed ? "success" : "?");
      hl.append(row(id, st));
    }
    if (!entries.length) hl.append(row("", "none yet"));
  } catch (err) {
    log("queue/history: " + String(err));
  }
}

/** @param {string} id @param {string} st */
function row(id, st) {
  const li = document.createElement("li");
  const code = document.createElement("code");
  code.textContent = id.length > 13 ? id.slice(0, 13) + "…" : id;
  code.title = id;
  const s = document.createElement("span");
  s.textContent = st;
  s.className = "st-" + st;
  li.append(code, s);
  return li;
}

// --- forms ----------------------------------------------------------------------------

const example = {
  "1": { class_type: "EmptyImage", inputs: { width: 1024, height: 1024, batch_size: 4, color: 0x4f9dff } },
  "2": { class_type: "SendImageOnWebSocket", inputs: { images: ["1", 0], event: "viewer.example" } },
};
$("example-btn").onclick = () => {
  /** @type {HTMLTextAreaElement} */ ($("prompt")).value = JSON.stringify(example, null, 2);
  /** @type {HTMLInputElement} */ ($("workflow")).value = "";
};
$("interrupt-btn").onclick = () => client.interrupt().catch((err) => log(String(err)));

$("queue-form").onsubmit = async (e) => {
  e.preventDefault();
  const out = $("queue-result");
  out.className = "result";
  const wf = /** @type {HTMLInputElement} */ ($("workflow")).value.trim();
  const text = /** @type {HTMLTextAreaElement} */ ($("prompt")).value.trim();
  try {
    let id;
    if (wf) {
      id = await client.queueWorkflow(wf);
    } else if (text) {
      let prompt = JSON.parse(text);
      if (prompt.prompt && typeof prompt.prompt === "object") prompt = prompt.prompt; // a whole /prompt body
      id = await client.queuePrompt(prompt);
    } else {
      throw new Error("name a workflow or paste a prompt");
    }
    out.textContent = "queued " + id;
    out.dataset.promptId = id;
    promptEl(id);
    refreshSoon();
  } catch (err) {
    out.className = "result bad";
    out.textContent = String(/** @type {any} */ (err).message || err);
  }
};

$("upload-form").onsubmit = async (e) => {
  e.preventDefault();
  const out = $("upload-result");
  out.className = "result";
  const file = /** @type {HTMLInputElement} */ ($("upload-file")).files?.[0];
  if (!file) {
    out.className = "result bad";
    out.textContent = "choose a file first";
    return;
  }
  try {
    const r = await client.upload(file);
    out.textContent = `uploaded as "${r.name}": LoadImage reads it by that name`;
    out.dataset.name = r.name;
  } catch (err) {
    out.className = "result bad";
    out.textContent = String(/** @type {any} */ (err).message || err);
  }
};

/** @param {number} n */
function formatBytes(n) {
  return n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + " MiB" : n >= 1024 ? (n / 1024).toFixed(0) + " KiB" : n + " B";
}

showPosition();
client.connect().then(refreshLists, (err) => log(String(err)));
