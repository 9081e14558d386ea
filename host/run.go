package host

import (
	"context"
	"fmt"

	"github.com/nodecast/nodecast/host/supervisor"
	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// NodeCall runs one node outside of any prompt: the Go API for embedders and
// tests. Inputs hold string, int64, float64, bool, JSON values and
// *protocol.Tensor; tensors are moved into the node's plugin.
type NodeCall struct {
	Class    string
	NodeID   string // "" = "1"
	PromptID string // "" = a new id; clients see it in parts and progress
	ClientID string // "" = every connected client
	Inputs   map[string]any
}

// NodeResult is what a node returned. Tensor outputs are copied back to the
// host as *protocol.Tensor.
type NodeResult struct {
	PromptID string
	Outputs  []any
	UI       map[string]any
}

// RunNode runs one node in its plugin. Image parts it emits reach the call's
// client (every client when ClientID is empty) through the hub, and its
// progress is reported as ComfyUI "progress" messages.
func (h *Host) RunNode(ctx context.Context, call NodeCall) (NodeResult, error) {
	if call.NodeID == "" {
		call.NodeID = "1"
	}
	if call.PromptID == "" {
		call.PromptID = protocol.RandomHex(16)
	}
	res, err := h.sup.Run(ctx, supervisor.Call{
		ClassType: call.Class, NodeID: call.NodeID, PromptID: call.PromptID,
		Inputs: call.Inputs, Limits: h.limits,
	}, plugins.RunHandlers{
		Part: func(p *protocol.ImagePart) error { return h.hub.Publish(call.ClientID, p) },
		Progress: func(value, max int) {
			h.hub.SendJSON(call.ClientID, protocol.TypeProgress, protocol.ProgressData{
				Value: value, Max: max, PromptID: call.PromptID, Node: call.NodeID,
			})
		},
	})
	// Whatever did not complete (a failed or interrupted node) must not linger.
	h.hub.AbortImages(call.PromptID)
	if err != nil {
		return NodeResult{}, err
	}
	out := NodeResult{PromptID: call.PromptID, UI: res.UI, Outputs: make([]any, len(res.Outputs))}
	var handles []supervisor.Handle
	defer func() { h.sup.Release(context.WithoutCancel(ctx), handles...) }()
	for i, v := range res.Outputs {
		hd, ok := v.(supervisor.Handle)
		if !ok {
			out.Outputs[i] = v
			continue
		}
		handles = append(handles, hd)
		t, err := h.sup.Fetch(ctx, hd)
		if err != nil {
			return NodeResult{}, fmt.Errorf("host: output %d of %s: %w", i, call.Class, err)
		}
		out.Outputs[i] = t
	}
	return out, nil
}
