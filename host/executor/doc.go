// Package executor is nodecast's ComfyUI-compatible prompt executor: it
// validates a prompt ({node_id: {class_type, inputs, _meta}}) against the node
// classes' Specs with ComfyUI's error shapes, applies a configured workflow's
// per-node settings and the host's defaults, queues prompts (FIFO, one at a
// time by default), runs their nodes in dependency order through a Runner
// (the plugin supervisor), and reports progress with ComfyUI's WebSocket
// messages through a Broadcaster (the hub). It keeps a bounded history and
// answers ComfyUI's queue and history questions.
//
// A node whose plugin died and took the node's tensor inputs with it (the
// supervisor cannot retry such a call) is retried once per prompt: the nodes
// upstream whose outputs were lost run again first, recursively, then the
// node, with one supervisor.ImageTracker across all its tries so that
// clients get each image of the batch once. The re-runs are quiet: clients
// get no second "executing", progress, images or "executed" for them, and no
// second "executing" for the retried node either, since a client's running
// node (what ComfyUI's script examples file binary images under) is the
// retried node all along; the executor logs them at Warn instead. A second
// death fails the node with execution_error.
//
// With Options.CacheBytes set it keeps ComfyUI's cache (cache.go): a node
// whose class, inputs and upstream are unchanged since an earlier prompt
// (LoadImage-style file inputs keyed on the file's sha256, as IS_CHANGED)
// reuses that prompt's outputs, owned by the cache until evicted (LRU, bounded
// in tensor bytes, never while a running prompt uses them), and is listed in
// execution_cached; output nodes always run; FreeCache empties it (/free).
//
// The executor knows nodes only by their Spec. It must never import sendimage
// or a node implementation (plugins/builtin): nodes run in plugin processes.
package executor
