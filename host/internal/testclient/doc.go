// Package testclient is a WebSocket client for the host's tests: it connects
// as a given kind of ComfyUI client (PART-aware, base64 parts, whole type 1
// frames), reassembles what it receives and records every message's size.
package testclient
