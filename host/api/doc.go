// Package api serves ComfyUI's HTTP API over nodecast's executor, so existing
// ComfyUI clients work unchanged: /prompt, /queue, /interrupt, /history,
// /object_info, /upload/image, /view, /features, /system_stats and the
// WebSocket at /ws (delegated to the hub), every route also under /api; and
// Prometheus's GET /metrics when Options.Metrics is set. Every
// request body is bounded; uploads are checked as images (header only, with
// image.DecodeConfig) against the pixel limits before they are stored, and
// file names never leave their folder.
//
// It must never import sendimage or a node implementation: it knows nodes
// only by their Spec.
package api
