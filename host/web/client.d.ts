// Types of /nodecast/client.js (the JSDoc in client.js says the same).

export interface Backoff { min?: number; max?: number; factor?: number; jitter?: number }

export interface ClientOptions {
  clientId?: string;
  token?: string;
  parts?: boolean;
  resume?: boolean;
  backoff?: Backoff;
  maxAttempts?: number;
  maxPendingBytes?: number;
}

export interface ImageDetail {
  blob: Blob;
  event: string;
  node: string;
  index: number;
  batch: number;
  promptId: string;
  imageId: string;
  mime: string;
  size: number;
  sha256: string;
  seq: number;
  shape: "part" | "b64" | "whole";
}

export interface MessageDetail { type: string; data: any; seq: number }

/** A node's progress text: ComfyUI's TEXT frame (type 3); it has no seq and is not replayed on resume. */
export interface ProgressTextDetail { node: string; text: string }

export interface ResumeDetail { recovered: boolean; epoch: string; seq: number; reason?: string; dropped?: string[] }

export type ConnState = "idle" | "connecting" | "open" | "reconnecting" | "closed" | "replaced" | "failed";

export interface StateDetail { state: ConnState; attempt: number; delay?: number; error?: string }

export interface ClientStats { connects: number; resumed: number; resumeLost: number; images: number; messages: number; dropped: number }

export class NodecastError extends Error {
  kind: "part" | "sha256" | "size" | "pending" | "seq" | "http";
}

export interface NodecastEventMap {
  image: CustomEvent<ImageDetail>;
  message: CustomEvent<MessageDetail>;
  progresstext: CustomEvent<ProgressTextDetail>;
  state: CustomEvent<StateDetail>;
  resume: CustomEvent<ResumeDetail>;
  error: CustomEvent<{ error: NodecastError }>;
}

export class NodecastClient extends EventTarget {
  constructor(baseURL?: string, options?: ClientOptions);
  readonly baseURL: string;
  readonly clientId: string;
  state: ConnState;
  position: { epoch: string; seq: number };
  serverFlags: Record<string, any>;
  stats: ClientStats;
  connect(): Promise<void>;
  close(): void;
  drop(): void;
  queuePrompt(prompt: Record<string, any>): Promise<string>;
  queueWorkflow(name: string): Promise<string>;
  upload(file: Blob, name?: string): Promise<{ name: string; subfolder: string; type: string }>;
  getQueue(): Promise<{ queue_running: any[]; queue_pending: any[] }>;
  getHistory(maxItems?: number): Promise<Record<string, any>>;
  interrupt(): Promise<any>;
  addEventListener<K extends keyof NodecastEventMap>(type: K, listener: (ev: NodecastEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
}

export function sha256Hex(buf: ArrayBuffer | Uint8Array): Promise<string>;
export function sha256Plain(msg: Uint8Array): string;
