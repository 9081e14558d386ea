// nodecast browser client: one dependency-free ES module.
//
//   import { NodecastClient } from "/nodecast/client.js";
//   const c = new NodecastClient();                 // this page's host
//   c.addEventListener("image", (e) => show(e.detail.blob, e.detail));
//   c.addEventListener("progresstext", (e) => note(e.detail.node, e.detail.text));
//   await c.connect();
//   await c.queuePrompt({ ... API-format prompt ... });
//
// It negotiates PART frames and resume (supports_image_parts,
// supports_resume), reassembles each image from its parts, checks its size
// and sha256 (WebCrypto, or a built-in SHA-256 where crypto.subtle is missing:
// plain http on a host other than localhost), reconnects after a drop with
// backoff and resumes where the stream broke, so nothing is lost or seen
// twice. With {parts:false} it reads the base64 JSON parts instead (the
// ntlb64part shape), with the same checks. The wire format is the one of the
// main README's "What a client reads" and "Client sessions" sections.

/**
 * @typedef {Object} Backoff
 * @property {number} [min=100]   first delay in ms
 * @property {number} [max=10000] largest delay in ms
 * @property {number} [factor=2]  growth per failed attempt
 * @property {number} [jitter=0.2] each delay randomized by ±jitter of itself
 */

/**
 * @typedef {Object} ClientOptions
 * @property {string} [clientId]  the clientId prompts are routed by; default a random one
 * @property {string} [token]     the host's WebSocket token (sent as ?token=, browsers cannot set headers on a WebSocket)
 * @property {boolean} [parts=true] negotiate PART frames; false = base64 JSON parts (the fallback shape)
 * @property {boolean} [resume=true] negotiate resume (needs parts)
 * @property {Backoff} [backoff]
 * @property {number} [maxAttempts=0] failed reconnects in a row before giving up; 0 = never
 * @property {number} [maxPendingBytes=1073741824] bytes of images being reassembled at once; over it the oldest is dropped
 */

/**
 * A whole image, size and sha256 checked.
 * @typedef {Object} ImageDetail
 * @property {Blob} blob        the encoded image (type = its MIME)
 * @property {string} event     the sender's event name ("" for type 1/4 whole images)
 * @property {string} node      the sender node's id
 * @property {number} index     position in its batch
 * @property {number} batch     images in the batch
 * @property {string} promptId
 * @property {string} imageId
 * @property {string} mime
 * @property {number} size      bytes
 * @property {string} sha256    lowercase hex, checked against the host's
 * @property {number} seq       position in the stream of the last part (0 without resume)
 * @property {"part"|"b64"|"whole"} shape how it arrived
 */

/**
 * @typedef {Object} MessageDetail
 * @property {string} type  ComfyUI message type (status, executing, progress, ...)
 * @property {any} data
 * @property {number} seq   0 outside the resume stream
 */

/**
 * @typedef {Object} ResumeDetail
 * @property {boolean} recovered  true: nothing was lost
 * @property {string} epoch
 * @property {number} seq
 * @property {string} [reason]    why not, when recovered is false
 * @property {string[]} [dropped] image ids that were incomplete and are lost
 */

/**
 * @typedef {"idle"|"connecting"|"open"|"reconnecting"|"closed"|"replaced"|"failed"} ConnState
 */

const PART_MAGIC = 0x50415254; // "PART"
const CLOSE_REPLACED = 4001;

/** Thrown (and dispatched as "error") for a part or image that fails a check. */
export class NodecastError extends Error {
  /** @param {string} kind @param {string} message */
  constructor(kind, message) {
    super(message);
    this.name = "NodecastError";
    /** "part", "sha256", "size", "pending", "seq", "http" */
    this.kind = kind;
  }
}

/**
 * A connection to a nodecast host that survives drops.
 *
 * Events (CustomEvent, payload in .detail):
 *  - "image"   ImageDetail, in the host's order relative to "message"
 *  - "message" MessageDetail, every ComfyUI JSON message
 *  - "state"   {state: ConnState, attempt: number, delay?: number, error?: string}
 *  - "resume"  ResumeDetail, after each reconnect that asked to resume
 *  - "error"   {error: NodecastError} an image or part refused (the stream goes on)
 */
export class NodecastClient extends EventTarget {
  /**
   * @param {string} [baseURL] the host's HTTP address; default this page's origin
   * @param {ClientOptions} [options]
   */
  constructor(baseURL, options = {}) {
    super();
    const base = baseURL || (typeof location !== "undefined" ? location.origin : "");
    /** @readonly */ this.baseURL = base.replace(/\/+$/, "");
    /** @readonly */ this.clientId = options.clientId || randomId();
    this.options = {
      parts: options.parts !== false,
      resume: options.resume !== false && options.parts !== false,
      token: options.token || "",
      backoff: { min: 100, max: 10000, factor: 2, jitter: 0.2, ...(options.backoff || {}) },
      maxAttempts: options.maxAttempts || 0,
      maxPendingBytes: options.maxPendingBytes || 1 << 30,
    };
    /** @type {ConnState} */ this.state = "idle";
    /** position of the last whole message: epoch "" until the host answered with one */
    this.position = { epoch: "", seq: 0 };
    /** feature flags of the host's last answer */
    this.serverFlags = {};
    this.stats = { connects: 0, resumed: 0, resumeLost: 0, images: 0, messages: 0, dropped: 0 };
    /** @type {WebSocket|null} */ this._ws = null;
    /** @type {Map<string, any>} image id -> parts being reassembled */
    this._pending = new Map();
    this._pendingBytes = 0;
    this._chain = Promise.resolve(); // deliveries, in order (sha256 is async)
    this._closed = false;
    this._failures = 0;
    this._timer = 0;
  }

  /**
   * Connects and negotiates; resolves once the host answered the feature
   * flags (so a prompt queued after it is numbered for this client), rejects
   * when the first connection fails. Later drops reconnect by themselves.
   * @returns {Promise<void>}
   */
  connect() {
    this._closed = false;
    return new Promise((resolve, reject) => this._open(resolve, reject));
  }

  /** Ends the client; no reconnect follows. */
  close() {
    this._closed = true;
    clearTimeout(this._timer);
    if (this._ws) this._ws.close(1000);
    this._setState("closed");
  }

  /** Closes the socket as a network drop would; the client reconnects and resumes (for tests and demos). */
  drop() {
    if (this._ws) this._ws.close(4000, "dropped by the client");
  }

  /**
   * Queues an API-format prompt (node id -> {class_type, inputs}) for this client.
   * @param {Object<string, any>} prompt
   * @returns {Promise<string>} the prompt_id
   */
  async queuePrompt(prompt) {
    const r = await this._post("/prompt", JSON.stringify({ prompt, client_id: this.clientId }), "application/json");
    return r.prompt_id;
  }

  /**
   * Queues a workflow configured on the host (its config file's workflows) by name.
   * @param {string} name
   * @returns {Promise<string>} the prompt_id
   */
  async queueWorkflow(name) {
    const r = await this._post("/prompt", JSON.stringify({ workflow: name, client_id: this.clientId }), "application/json");
    return r.prompt_id;
  }

  /**
   * Uploads an image for LoadImage (POST /upload/image, ComfyUI's form).
   * @param {Blob} file
   * @param {string} [name] default the File's name
   * @returns {Promise<{name: string, subfolder: string, type: string}>}
   */
  async upload(file, name) {
    const form = new FormData();
    form.append("image", file, name || /** @type {any} */ (file).name || "image.png");
    form.append("type", "input");
    form.append("overwrite", "true");
    return this._post("/upload/image", form);
  }

  /** GET /queue: {queue_running, queue_pending}. */
  async getQueue() { return this._get("/queue"); }

  /** GET /history?max_items=n: prompt_id -> entry. @param {number} [maxItems=20] */
  async getHistory(maxItems = 20) { return this._get(`/history?max_items=${maxItems | 0}`); }

  /** POST /interrupt: stops the running prompt. */
  async interrupt() { return this._post("/interrupt", "{}", "application/json"); }

  // --- connection -----------------------------------------------------------

  _wsURL() {
    const u = new URL(this.baseURL + "/ws");
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    u.searchParams.set("clientId", this.clientId);
    if (this.options.token) u.searchParams.set("token", this.options.token);
    return u.toString();
  }

  /**
   * @param {(() => void) | null} resolve first connect only
   * @param {((e: Error) => void) | null} reject
   */
  _open(resolve, reject) {
    const resuming = this.options.resume && this.position.epoch !== "";
    const next = this.stats.connects === 0 && !resuming ? "connecting" : "reconnecting";
    if (this.state !== next) this._setState(next); // "reconnecting" was said when the socket closed
    let ws;
    try {
      ws = new WebSocket(this._wsURL());
    } catch (e) {
      if (reject) reject(/** @type {Error} */ (e));
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    let answered = false;
    ws.onopen = () => {
      /** @type {Object<string, any>} */
      const flags = { supports_image_parts: this.options.parts, supports_resume: this.options.resume };
      if (resuming) flags.resume_from = { epoch: this.position.epoch, seq: this.position.seq };
      ws.send(JSON.stringify({ type: "feature_flags", data: flags }));
    };
    ws.onmessage = (ev) => {
      if (ws !== this._ws) return;
      try {
        if (!answered && typeof ev.data === "string") {
          const m = JSON.parse(ev.data);
          if (m.type === "feature_flags") {
            answered = true;
            this._answer(m.data || {}, resuming);
            this.stats.connects++;
            this._failures = 0;
            this._setState("open");
            if (resolve) { resolve(); resolve = reject = null; }
            return;
          }
        }
        this._receive(ev.data);
      } catch (e) {
        // A hole in seq or a malformed frame: reconnect and resume from the
        // last whole message rather than deliver a gap.
        this._error(e instanceof NodecastError ? e : new NodecastError("part", String(e)));
        ws.close(4000, "client: " + String(e).slice(0, 100));
      }
    };
    ws.onclose = (ev) => {
      if (ws !== this._ws) return;
      this._ws = null;
      if (reject && !answered) {
        reject(new Error(`nodecast: connect ${this.baseURL}: closed (${ev.code}) before the feature_flags answer`));
        this._setState("failed");
        return;
      }
      if (this._closed) return;
      if (ev.code === CLOSE_REPLACED) {
        this._setState("replaced", { error: "another connection with this clientId replaced this one" });
        return;
      }
      if (!answered) this._failures++;
      if (this.options.maxAttempts > 0 && this._failures >= this.options.maxAttempts) {
        this._setState("failed", { error: `gave up after ${this._failures} failed reconnects` });
        return;
      }
      const delay = this._delay(this._failures);
      this._setState("reconnecting", { delay, error: `closed (${ev.code}${ev.reason ? " " + ev.reason : ""})` });
      this._timer = setTimeout(() => this._open(null, null), delay);
    };
  }

  /** @param {number} attempt */
  _delay(attempt) {
    const b = this.options.backoff;
    let d = Math.min(b.min * Math.pow(b.factor, attempt), b.max);
    if (b.jitter > 0) d += d * b.jitter * (2 * Math.random() - 1);
    return Math.max(0, Math.round(d));
  }

  /** @param {any} data @param {boolean} resuming */
  _answer(data, resuming) {
    this.serverFlags = data;
    const st = data.resume;
    if (!st) { // a host without resume (ComfyUI): live only
      this.position = { epoch: "", seq: 0 };
      return;
    }
    this.position = { epoch: st.epoch, seq: st.seq };
    if (!resuming) return;
    /** @type {ResumeDetail} */
    const detail = { recovered: st.recovered === true, epoch: st.epoch, seq: st.seq };
    if (detail.recovered) {
      this.stats.resumed++;
    } else {
      this.stats.resumeLost++;
      detail.reason = st.reason || "";
      detail.dropped = [...this._pending.keys()];
      this._pending.clear();
      this._pendingBytes = 0;
    }
    this._later(() => this.dispatchEvent(new CustomEvent("resume", { detail })));
  }

  /** Checks that seq follows the last one. @param {number} seq */
  _advance(seq) {
    if (!seq || this.position.epoch === "") return;
    if (seq !== this.position.seq + 1) {
      throw new NodecastError("seq", `got seq ${seq} after ${this.position.seq}; reconnecting to resume`);
    }
    this.position.seq = seq;
  }

  /** @param {string | ArrayBuffer} data */
  _receive(data) {
    if (typeof data !== "string") {
      const view = new DataView(data);
      if (data.byteLength < 8) throw new NodecastError("part", `binary frame of ${data.byteLength} bytes`);
      const type = view.getUint32(0);
      if (type === PART_MAGIC) {
        const jlen = view.getUint32(4);
        if (8 + jlen > data.byteLength) throw new NodecastError("part", `PART header of ${jlen} bytes in a frame of ${data.byteLength}`);
        const h = JSON.parse(new TextDecoder().decode(new Uint8Array(data, 8, jlen)));
        this._advance(h.seq || 0);
        this._addPart(h, new Uint8Array(data, 8 + jlen), "part", h.seq || 0);
      } else if (type === 1 || type === 4) { // a whole image (type 4 carries metadata JSON first)
        let off = 8, meta = {};
        if (type === 4) {
          const jlen = view.getUint32(4);
          meta = JSON.parse(new TextDecoder().decode(new Uint8Array(data, 8, jlen)));
          off = 8 + jlen;
        }
        const mime = type === 4 ? (/** @type {any} */ (meta).image_type || "image/jpeg") : (view.getUint32(4) === 1 ? "image/jpeg" : "image/png");
        const bytes = new Uint8Array(data, off);
        const m = /** @type {any} */ (meta);
        this._whole({ event: "", node: m.node_id || "", index: 0, batch: 1, prompt_id: m.prompt_id || "", image_id: "", mime, size: bytes.length, sha256: "" }, [bytes], "whole", 0);
      } else if (type === 3) { // TEXT, a node's progress text: [3][len(node_id)][node_id][utf-8 text]; no seq
        const nlen = view.getUint32(4);
        if (8 + nlen <= data.byteLength) { // a malformed one is skipped, as an unknown frame type is
          const dec = new TextDecoder();
          const detail = { node: dec.decode(new Uint8Array(data, 8, nlen)), text: dec.decode(new Uint8Array(data, 8 + nlen)) };
          this._later(() => this.dispatchEvent(new CustomEvent("progresstext", { detail })));
        }
      }
      return; // other frame types are not for this client
    }
    const m = JSON.parse(data);
    if (m.seq) this._advance(m.seq);
    const d = m.data;
    if (d && typeof d.part_b64 === "string" && !m.seq) {
      this._addB64(m.type, d);
      return;
    }
    this._later(() => {
      this.stats.messages++;
      this.dispatchEvent(new CustomEvent("message", { detail: { type: m.type, data: d, seq: m.seq || 0 } }));
    });
  }

  /** A base64 JSON part, mapped onto a PART header. @param {string} event @param {any} d */
  _addB64(event, d) {
    if (typeof d.part_count !== "number" || typeof d.sha256 !== "string") {
      throw new NodecastError("part", `base64 part of ${event} without part_count or sha256: not a nodecast host`);
    }
    const bin = atob(d.part_b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const node = d.node || d.nodelabel || "";
    const h = {
      event, prompt_id: d.prompt_id || "", node, image_id: d.image_id || `${d.prompt_id}/${node}/${d.img_idx}`,
      index: d.img_idx, batch: d.batch || 0, part: d.part_idx, parts: d.part_count,
      offset: typeof d.offset === "number" ? d.offset : -1, size: d.size, mime: d.mime || "image/png", sha256: d.sha256,
    };
    this._addPart(h, bytes, "b64", 0);
  }

  /**
   * @param {any} h a PART header
   * @param {Uint8Array} bytes this part's bytes
   * @param {"part"|"b64"} shape
   * @param {number} seq
   */
  _addPart(h, bytes, shape, seq) {
    const bad = (/** @type {string} */ why) => this._error(new NodecastError("part", `image ${h.image_id} part ${h.part}: ${why}`));
    if (!(Number.isInteger(h.parts) && h.parts > 0 && Number.isInteger(h.part) && h.part >= 0 && h.part < h.parts)) return bad(`part ${h.part} of ${h.parts}`);
    if (!(Number.isInteger(h.size) && h.size >= 0)) return bad(`size ${h.size}`);
    let p = this._pending.get(h.image_id);
    if (!p) {
      if (h.size > this.options.maxPendingBytes) return bad(`size ${h.size} over maxPendingBytes ${this.options.maxPendingBytes}`);
      while (this._pendingBytes + h.size > this.options.maxPendingBytes && this._pending.size > 0) {
        const [oldest, o] = this._pending.entries().next().value;
        this._pending.delete(oldest);
        this._pendingBytes -= o.h.size;
        this.stats.dropped++;
        this._error(new NodecastError("pending", `image ${oldest} dropped: images being reassembled exceed maxPendingBytes ${this.options.maxPendingBytes}`));
      }
      p = { h, chunks: new Array(h.parts), got: 0, bytes: 0 };
      this._pending.set(h.image_id, p);
      this._pendingBytes += h.size;
    }
    if (p.h.parts !== h.parts || p.h.size !== h.size || p.h.sha256 !== h.sha256) {
      this._drop(h.image_id);
      return bad(`parts/size/sha256 (${h.parts}/${h.size}/${h.sha256}) differ from the first part's (${p.h.parts}/${p.h.size}/${p.h.sha256})`);
    }
    if (p.chunks[h.part]) {
      return; // a duplicate (e.g. replayed after a resume): already have it
    }
    if (h.offset >= 0 && h.offset + bytes.length > h.size) {
      this._drop(h.image_id);
      return bad(`offset ${h.offset} + ${bytes.length} bytes past size ${h.size}`);
    }
    // A view into its frame: a part is nearly all of its frame, so keeping
    // the frame costs nothing, and copying would cost a copy per part.
    p.chunks[h.part] = bytes;
    p.got++;
    p.bytes += bytes.length;
    if (p.got < h.parts) return;
    this._drop(h.image_id);
    if (p.bytes !== h.size) {
      return this._error(new NodecastError("size", `image ${h.image_id}: ${p.bytes} bytes arrived, header says ${h.size}`));
    }
    this._whole(h, p.chunks, shape, seq);
  }

  /** @param {string} id */
  _drop(id) {
    const p = this._pending.get(id);
    if (!p) return;
    this._pending.delete(id);
    this._pendingBytes -= p.h.size;
  }

  /**
   * Verifies and delivers a whole image, in order with the messages.
   * @param {any} h @param {Uint8Array[]} chunks @param {"part"|"b64"|"whole"} shape @param {number} seq
   */
  _whole(h, chunks, shape, seq) {
    this._later(async () => {
      // One copy into one buffer, hashed and wrapped as the Blob.
      let all = chunks[0];
      if (chunks.length !== 1) {
        all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        let off = 0;
        for (const c of chunks) { all.set(c, off); off += c.length; }
      }
      const sum = await sha256Hex(all);
      const blob = new Blob([all], { type: h.mime });
      if (h.sha256 && sum !== h.sha256) {
        this._error(new NodecastError("sha256", `image ${h.image_id}: sha256 ${sum}, header says ${h.sha256}`));
        return;
      }
      this.stats.images++;
      /** @type {ImageDetail} */
      const detail = {
        blob, event: h.event, node: h.node, index: h.index, batch: h.batch, promptId: h.prompt_id,
        imageId: h.image_id, mime: h.mime, size: blob.size, sha256: sum, seq, shape,
      };
      this.dispatchEvent(new CustomEvent("image", { detail }));
    });
  }

  /** Runs f after every delivery queued before it. @param {() => any} f */
  _later(f) {
    this._chain = this._chain.then(f).catch((e) => this._error(new NodecastError("part", String(e))));
  }

  /** @param {NodecastError} error */
  _error(error) {
    this.dispatchEvent(new CustomEvent("error", { detail: { error } }));
  }

  /** @param {ConnState} state @param {Object} [extra] */
  _setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, attempt: this._failures, ...extra } }));
  }

  /** @param {string} path */
  async _get(path) {
    const r = await fetch(this.baseURL + path, { headers: this._headers() });
    if (!r.ok) throw new NodecastError("http", `GET ${path}: HTTP ${r.status}: ${(await r.text()).slice(0, 500)}`);
    return r.json();
  }

  /** @param {string} path @param {BodyInit} body @param {string} [type] */
  async _post(path, body, type) {
    /** @type {Record<string, string>} */
    const headers = this._headers();
    if (type) headers["Content-Type"] = type;
    const r = await fetch(this.baseURL + path, { method: "POST", body, headers });
    const text = await r.text();
    if (!r.ok) throw new NodecastError("http", `POST ${path}: HTTP ${r.status}: ${text.slice(0, 500)}`);
    return text ? JSON.parse(text) : {};
  }

  _headers() {
    /** @type {Record<string, string>} */
    const h = {};
    if (this.options.token) h.Authorization = "Bearer " + this.options.token;
    return h;
  }
}

function randomId() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * SHA-256 of buf as lowercase hex: WebCrypto where the page is a secure
 * context, a plain implementation elsewhere.
 * @param {ArrayBuffer | Uint8Array} buf
 * @returns {Promise<string>}
 */
export async function sha256Hex(buf) {
  if (typeof crypto !== "undefined" && crypto.subtle) {
    const d = new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
    return Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
  }
  return sha256Plain(buf instanceof Uint8Array ? buf : new Uint8Array(buf));
}

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** FIPS 180-4 SHA-256, for pages without crypto.subtle. @param {Uint8Array} msg */
export function sha256Plain(msg) {
  const H = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const W = new Uint32Array(64);
  const total = Math.ceil((msg.length + 9) / 64) * 64;
  const tail = new Uint8Array(total - Math.floor(msg.length / 64) * 64);
  const full = Math.floor(msg.length / 64) * 64;
  tail.set(msg.subarray(full));
  tail[msg.length - full] = 0x80;
  const tv = new DataView(tail.buffer);
  const bits = msg.length * 8;
  tv.setUint32(tail.length - 8, Math.floor(bits / 0x100000000));
  tv.setUint32(tail.length - 4, bits >>> 0);
  const mv = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  for (let off = 0; off < total; off += 64) {
    const v = off < full ? mv : tv, o = off < full ? off : off - full;
    for (let i = 0; i < 16; i++) W[i] = v.getUint32(o + 4 * i);
    for (let i = 16; i < 64; i++) {
      const a = W[i - 15], b = W[i - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
    }
    let [a, b, c, d, e, f, g, h] = H;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    H[0] += a; H[1] += b; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += h;
  }
  return Array.from(H, (x) => x.toString(16).padStart(8, "0")).join("");
}
