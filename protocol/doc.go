// Package protocol holds every type that crosses a process or network boundary
// in nodecast, and nothing else: tensors, ComfyUI's JSON messages, binary
// WebSocket frames (type 1, type 4 and PART), base64 JSON parts, feature flags,
// limits, the Splitter that keeps every message under a client's limit, the
// Reassembler that clients use, and (in pluginpb) the gRPC contract with plugins.
//
// protocol imports no other package of this module, so that clients, plugins
// and the host can all depend on it without pulling in each other.
package protocol
