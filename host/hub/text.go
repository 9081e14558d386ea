package hub

import (
	"github.com/nodecast/nodecast/host/stream"
	"github.com/nodecast/nodecast/protocol"
)

// SendProgressText sends ComfyUI's TEXT frame, [u32be 3][u32be
// len(nodeID)][nodeID][utf-8 text] (server.py send_progress_text), to
// clientID, or to every client when clientID is "" — where ComfyUI sends
// it to every socket whatever the prompt, nodecast sends it, as its other
// messages, to the prompt's client. Every client gets the same bytes,
// whatever flags it sent (ComfyUI has no flag for it). It goes through the
// client's ordered stream: held for a plain client that is away, and sent
// live to a resume client in order with its numbered messages, without a
// seq of its own and not replayed on resume (the frame has no place for
// one). Text that fails protocol.CheckProgressText is dropped with a log.
func (h *Hub) SendProgressText(clientID, nodeID, text string) {
	if err := protocol.CheckProgressText(nodeID, text); err != nil {
		h.log.Warn("hub: progress text not sent", "client", clientID, "node", nodeID, "err", err)
		return
	}
	frame := protocol.AppendTextFrame(make([]byte, 0, 8+len(nodeID)+len(text)), nodeID, text)
	b := &batch{frames: []stream.Message{{Binary: true, Body: frame}}, size: int64(len(frame)), unnumbered: true}
	h.commitMu.Lock()
	defer h.commitMu.Unlock()
	h.deliverLocked(clientID, func(target) shape { return shapePART }, func(shape) (*batch, error) { return b, nil })
}
