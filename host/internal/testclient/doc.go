// Package testclient is the WebSocket client of the host's tests: it connects
// as a given kind of ComfyUI client (PART-aware, or plain: base64 parts and
// whole type 1 frames), records every message in the order it arrived with
// its size and wire shape, and reassembles the images it receives, so a test
// can wait for what it expects and then check everything that came.
//
// Its methods return errors instead of taking a testing.TB, so that tests
// may use a client from any goroutine.
package testclient
