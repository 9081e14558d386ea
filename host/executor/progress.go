package executor

import (
	"sync"

	"github.com/nodecast/nodecast/protocol"
)

// progressState is the per-node progress ComfyUI's ProgressRegistry keeps
// (comfy_execution/progress.py): a node enters it when it starts (running,
// 0 of 1) or is found in the cache (finished), moves with its progress
// reports and ends finished (value = max) or, here only, error. Every
// change sends the whole of it as "progress_state" (WebUIProgressHandler
// _send_progress_state).
type progressState struct {
	mu    sync.Mutex // progress reports may come from a plugin's goroutine
	nodes map[string]protocol.NodeProgressState
}

func (p *progressState) set(id, state string, value, max float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nodes == nil {
		p.nodes = map[string]protocol.NodeProgressState{}
	}
	p.nodes[id] = protocol.NodeProgressState{Value: value, Max: max, State: state, NodeID: id, DisplayNodeID: id, RealNodeID: id}
}

// finish is ProgressRegistry.finish_progress: value becomes max.
func (p *progressState) finish(id string) { p.end(id, protocol.NodeStateFinished) }

// fail marks a failed node's entry "error" (ComfyUI declares the state but
// leaves a failed node "running").
func (p *progressState) fail(id string) { p.end(id, protocol.NodeStateError) }

func (p *progressState) end(id, state string) {
	p.mu.Lock()
	ent, ok := p.nodes[id]
	p.mu.Unlock()
	if !ok {
		ent.Max = 1
	}
	value := ent.Max
	if state == protocol.NodeStateError {
		value = ent.Value
	}
	p.set(id, state, value, ent.Max)
}

// snapshot returns the message's data: a copy, since the hub may encode it
// after later changes.
func (p *progressState) snapshot(promptID string) protocol.ProgressStateData {
	p.mu.Lock()
	defer p.mu.Unlock()
	nodes := make(map[string]protocol.NodeProgressState, len(p.nodes))
	for id, ent := range p.nodes {
		ent.PromptID = promptID
		nodes[id] = ent
	}
	return protocol.ProgressStateData{PromptID: promptID, Nodes: nodes}
}

// sendProgressState sends "progress_state" to the prompt's client. It is
// not kept in the history's messages (ComfyUI sends it with send_sync, not
// add_message).
func (r *promptRun) sendProgressState() {
	r.e.opts.Broadcaster.SendJSON(r.j.clientID, protocol.TypeProgressState, r.progress.snapshot(r.j.item.PromptID))
}
