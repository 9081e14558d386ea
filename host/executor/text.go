package executor

import "github.com/nodecast/nodecast/protocol"

// TextBroadcaster is a Broadcaster that can also send ComfyUI's binary
// TEXT frames (type 3: a node's progress text). The hub implements it; a
// Broadcaster that does not (the cluster relay, test recorders) drops
// progress text.
type TextBroadcaster interface {
	Broadcaster
	// SendProgressText frames [u32be 3][u32be len(nodeID)][nodeID][text]
	// to clientID ("" = every client), in order with its other messages.
	SendProgressText(clientID, nodeID, text string)
}

// progressText is the RunHandlers.ProgressText of node id: it hands the
// text to the broadcaster for the prompt's client, as ComfyUI's
// send_progress_text, or logs why it cannot.
func (r *promptRun) progressText(id string) func(text string, err error) {
	return func(text string, err error) {
		if err == nil {
			err = protocol.CheckProgressText(id, text)
		}
		if err != nil {
			r.e.log.Warn("progress text dropped", "prompt_id", r.j.item.PromptID, "node", id, "err", err)
			return
		}
		tb, ok := r.e.opts.Broadcaster.(TextBroadcaster)
		if !ok {
			r.e.log.Debug("progress text dropped: the broadcaster has no TEXT frames", "prompt_id", r.j.item.PromptID, "node", id)
			return
		}
		tb.SendProgressText(r.j.clientID, id, text)
	}
}
