// Package protocol holds every type that crosses a process or network boundary
// in nodecast, and nothing else: tensors, ComfyUI's JSON messages, binary
// WebSocket frames (type 1, type 4 and PART), base64 JSON parts, feature flags,
// limits, the Splitter that keeps every message under a client's limit, the
// Reassembler that clients use, the random ids those messages carry
// (RandomHex, NewUUID), and (in pluginpb) the gRPC contract with plugins.
//
// Tensors are float32, uint8 (pixels as they are) or unorm8 (8-bit images as
// loaded: byte v stands for float32(v)/255, converted once when a node asks
// for floats); a tensor may be a view whose items share other tensors'
// memory (Tensor.Items), copied only when a node makes it Writable.
//
// protocol imports no other package of this module, so that clients, plugins
// and the host can all depend on it without pulling in each other.
package protocol
