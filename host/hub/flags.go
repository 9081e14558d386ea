package hub

import (
	"github.com/nodecast/nodecast/host/stream"
	"github.com/nodecast/nodecast/protocol"
)

// lateFlags answers a feature_flags message that is not the connection's
// first JSON message. ComfyUI (server.py websocket_handler) reads flags only
// from the first message and ignores later ones without a word; nodecast
// ignores them too, but says so, so that a client that renegotiates learns
// that its flags did not change. The answer goes to this socket only, like
// the feature_flags answer, and carries no seq.
func (h *Hub) lateFlags(c *client) {
	h.log.Info("hub: feature_flags after the first message ignored", "client", c.id, "remote", c.remote)
	msg, err := protocol.Marshal(protocol.TypeError, protocol.ErrorData{
		Type:      protocol.ErrorFeatureFlagsNotFirst,
		Message:   "feature_flags ignored: only a connection's first message may carry them, as in ComfyUI; the flags of the first message stay in force",
		Details:   "send feature_flags as the first message after connecting; reconnect to negotiate other flags",
		ExtraInfo: map[string]any{},
	})
	if err != nil {
		return
	}
	h.commitMu.Lock() // enqueue may evict, which needs it
	defer h.commitMu.Unlock()
	c.enqueue(&batch{frames: []stream.Message{{Body: msg}}, size: int64(len(msg))})
}
