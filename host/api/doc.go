// Package api serves ComfyUI's HTTP API over nodecast's executor, so existing
// ComfyUI clients work unchanged: /prompt, /queue, /interrupt, /history,
// /object_info, /upload/image, /view, /features, /system_stats and the
// WebSocket at /ws (delegated to the hub), every route also under /api; and
// Prometheus's GET /metrics when Options.Metrics is set. Every
// request body is bounded (413, readable even by a client that sends its
// whole body first); uploads stream to disk and are checked as images
// (header only, with image.DecodeConfig) against the pixel limits before
// they are stored, and file names never leave their folder. Every route
// refuses a Host the server does not answer to (loopback names only on a
// loopback listener: DNS rebinding), and every POST refuses a cross-site
// browser request, Origin "null" included (CSRF).
//
// It imports sendimage only to re-encode /view previews, and must never import
// a node implementation: it knows nodes only by their Spec.
package api
