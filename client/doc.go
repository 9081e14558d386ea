// Package client is the Go client of a nodecast (or ComfyUI) host, for
// programs that consume images: Dial connects to the host's WebSocket,
// negotiates PART frames and resume, and from then on delivers whole,
// verified images (size and sha256, through protocol.Reassembler) and
// ComfyUI's events, in order, on one channel.
//
// A dropped connection is not the caller's problem: the client reconnects
// with a Backoff and resumes where it left off (feature_flags resume_from),
// so every message arrives once, with nothing missing and no torn image.
// When the host cannot resume (its window no longer holds the position, or
// it restarted), an Event of kind KindResumeLost says so, with the reason:
// what was missed is then in the host's /history. A node's progress text
// (ComfyUI's TEXT frames, type 3) arrives as KindProgressText events with
// the node id; they are live only, a resume does not replay them.
//
//	c, err := client.Dial(ctx, "http://127.0.0.1:8188", client.Options{})
//	...
//	id, err := c.QueuePrompt(ctx, prompt)
//	for ev := range c.Events() {
//		if ev.Kind == client.KindImage { save(ev.Image.Data) }
//		if ev.IsPromptDone(id) { break }
//	}
//
// Dial waits for the host's answer to its feature_flags, which nodecast and
// current ComfyUI send; against a host without resume (ComfyUI) the client
// works live only, and a reconnect cannot recover what was missed.
//
// client imports only protocol of this module (and gorilla/websocket).
package client
