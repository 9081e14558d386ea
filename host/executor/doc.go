// Package executor is nodecast's ComfyUI-compatible prompt executor: it
// validates a prompt ({node_id: {class_type, inputs, _meta}}) against the node
// classes' Specs with ComfyUI's error shapes, applies a configured workflow's
// per-node settings and the host's defaults, queues prompts (FIFO, one at a
// time by default), runs their nodes in dependency order through a Runner
// (the plugin supervisor), and reports progress with ComfyUI's WebSocket
// messages through a Broadcaster (the hub). It keeps a bounded history and
// answers ComfyUI's queue and history questions.
//
// The executor knows nodes only by their Spec. It must never import sendimage
// or a node implementation (plugins/builtin): nodes run in plugin processes.
package executor
