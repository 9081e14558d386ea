// Package host is the nodecast runtime: it supervises plugin processes (the
// built-in node pack and every plugin in a folder), keeps the node registry,
// queues and executes ComfyUI prompts, and serves ComfyUI's HTTP and WebSocket
// API through one shared hub. A Go service embeds it with New and Handler;
// `nodecast serve` (host/cmd/nodecast) runs it standalone.
//
// host imports protocol and the plugins bridge, never a node's
// implementation: node packs reach it only as plugin processes.
package host
