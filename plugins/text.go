package plugins

import (
	"context"
	"errors"

	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/protocol/pluginpb"
)

// TextEmitter is an Emitter that can also show text on the running node:
// ComfyUI's PromptServer.send_progress_text(text, node_id), which clients
// receive as a binary TEXT frame (type 3). The host's emitter implements
// it; Emitters of tests and embedders may not, and SendProgressText then
// says so.
type TextEmitter interface {
	Emitter
	// ProgressText sends text (UTF-8, at most protocol.MaxProgressTextBytes)
	// for the running node; the host adds the node's id.
	ProgressText(ctx context.Context, text string) error
}

// ErrNoProgressText says that a call's Emitter cannot send progress text.
var ErrNoProgressText = errors.New("plugins: the call's Emitter cannot send progress text (it does not implement TextEmitter)")

// SendProgressText shows text on the node call runs, as ComfyUI's
// send_progress_text: clients get a TEXT frame (type 3) with the node's id.
// Text over protocol.MaxProgressTextBytes is refused with a
// *protocol.LimitError naming the limit and the length, text that is not
// UTF-8 with a *protocol.FrameError; neither reaches the host.
func SendProgressText(ctx context.Context, call *Call, text string) error {
	if err := protocol.CheckProgressText(call.NodeID, text); err != nil {
		return err
	}
	te, ok := call.Emitter.(TextEmitter)
	if !ok {
		return ErrNoProgressText
	}
	return te.ProgressText(ctx, text)
}

// ProgressText sends text on the Run stream (the host checks it again).
func (e *runEmitter) ProgressText(ctx context.Context, text string) error {
	if err := protocol.CheckProgressText("", text); err != nil {
		return err
	}
	return e.send(ctx, &pluginpb.RunEvent{Event: &pluginpb.RunEvent_ProgressText{ProgressText: &pluginpb.ProgressText{Text: text}}})
}
