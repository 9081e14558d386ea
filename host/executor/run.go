package executor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/nodecast/nodecast/host/supervisor"
	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// releaseTimeout bounds the release of a prompt's tensors, so a stuck plugin
// cannot hold a worker forever.
const releaseTimeout = 30 * time.Second

// Exception types of failures the executor reports itself.
const (
	ExceptionMissingOutput = "nodecast.MissingOutput" // a node returned fewer outputs than a link needs
)

// promptRun is the state of one prompt while it runs.
type promptRun struct {
	e        *Executor
	j        *job
	messages []StatusMessage
	outputs  map[string][]any
	ui       map[string]map[string]any
	meta     map[string]NodeMeta
	executed []string
	handles  []supervisor.Handle
	retried  map[string]bool   // nodes retried after their plugin died, by id
	stopped  bool              // interrupted, as opposed to failed
	keys     map[string]string // cache keys by node id (cache.go)
	cached   map[string]bool   // nodes whose outputs came from the cache
	pinned   []*cacheEntry     // cache entries this prompt uses
	cachedAt []string          // ids of the nodes the cache held at the start: execution_error's current_outputs
	progress progressState     // progress_state (progress.go)
}

// run executes a prompt's nodes in order and returns its history entry.
func (e *Executor) run(ctx context.Context, j *job) HistoryEntry {
	r := &promptRun{
		e: e, j: j,
		outputs: map[string][]any{}, ui: map[string]map[string]any{}, meta: map[string]NodeMeta{},
		executed: []string{}, retried: map[string]bool{},
	}
	defer r.release(ctx)
	defer r.finishCache(ctx)
	promptID := j.item.PromptID
	r.add(protocol.TypeExecutionStart, protocol.ExecutionStartData{PromptID: promptID, Timestamp: nowMillis()})
	r.cachedAt = r.fromCache()
	r.add(protocol.TypeExecutionCached, protocol.ExecutionCachedData{Nodes: r.cachedAt, PromptID: promptID, Timestamp: nowMillis()})
	for _, id := range r.cachedAt { // execution.py execute: a cached node's progress finishes at once
		r.progress.set(id, protocol.NodeStateFinished, 1, 1)
		r.sendProgressState()
	}
	ok := true
	for _, id := range j.plan.order {
		if r.cached[id] {
			continue
		}
		if !r.runNode(ctx, j.plan.nodes[id]) {
			ok = false
			break
		}
	}
	if ok {
		r.add(protocol.TypeExecutionSuccess, protocol.ExecutionSuccessData{PromptID: promptID, Timestamp: nowMillis()})
	}
	switch {
	case ok:
		e.succeeded.Add(1)
	case r.stopped:
		e.interrupted.Add(1)
	default:
		e.failed.Add(1)
	}
	status := HistoryStatus{StatusStr: StatusSuccess, Completed: ok, Messages: r.messages}
	if !ok {
		status.StatusStr = StatusError
	}
	return HistoryEntry{Prompt: j.item, Outputs: r.ui, Status: status, Meta: r.meta}
}

// add sends a message and keeps it for the prompt's history status.
func (r *promptRun) add(typ string, data any) {
	r.messages = append(r.messages, StatusMessage{Type: typ, Data: data})
	r.e.opts.Broadcaster.SendJSON(r.j.clientID, typ, data)
}

// runNode runs one node and reports whether the prompt goes on.
func (r *promptRun) runNode(ctx context.Context, n *node) bool {
	b := r.e.opts.Broadcaster
	promptID, client := r.j.item.PromptID, r.j.clientID
	if ctx.Err() != nil { // interrupted between nodes
		r.interrupted(n)
		return false
	}
	inputs, missing := r.inputsOf(n)
	if missing != "" {
		r.failed(n, inputs, ExceptionMissingOutput, missing, nil)
		return false
	}

	id := n.id
	b.SendJSON(client, protocol.TypeExecuting, protocol.ExecutingData{Node: &id, DisplayNode: &id, PromptID: promptID})
	r.progress.set(id, protocol.NodeStateRunning, 0, 1)
	r.sendProgressState()
	handlers := plugins.RunHandlers{
		Part: func(p *protocol.ImagePart) error { return b.Publish(client, p) },
		Progress: func(value, max int) {
			b.SendJSON(client, protocol.TypeProgress, protocol.ProgressData{Value: value, Max: max, PromptID: promptID, Node: id})
			r.progress.set(id, protocol.NodeStateRunning, float64(value), float64(max))
			r.sendProgressState()
		},
		ProgressText: r.progressText(id), // text.go
	}
	// One tracker across this node's tries, the supervisor's and ours, so
	// that clients get each image of the batch once.
	var tracker supervisor.ImageTracker
	res, err := r.call(ctx, n, inputs, tracker.Handlers(handlers, false))
	if err != nil && ctx.Err() == nil && r.retriable(n, err) {
		r.retried[id] = true
		r.e.log.Warn("node's plugin died and took its inputs; making them again and retrying the node once",
			"prompt_id", promptID, "node", id, "class_type", n.classType, "images_done", tracker.Done(), "err", err)
		var rerr error
		if rerr = r.remakeInputs(ctx, n); rerr == nil {
			inputs, missing = r.inputsOf(n)
			if missing != "" {
				r.failed(n, inputs, ExceptionMissingOutput, missing, nil)
				return false
			}
			res, err = r.call(ctx, n, inputs, tracker.Handlers(handlers, true))
		} else {
			err = rerr
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			r.interrupted(n)
			return false
		}
		var nf *plugins.NodeFailure
		if errors.As(err, &nf) {
			r.failed(n, inputs, nf.ExceptionType, nf.Message, nf.Traceback)
		} else {
			r.failed(n, inputs, exceptionType(err), err.Error(), nil)
		}
		return false
	}
	r.outputs[id] = res.Outputs
	r.keep(n, res.Outputs)
	r.executed = append(r.executed, id)
	r.progress.finish(id)
	r.sendProgressState()
	if len(res.UI) > 0 {
		r.ui[id] = res.UI
		r.meta[id] = NodeMeta{NodeID: id, DisplayNode: id, RealNodeID: id}
		b.SendJSON(client, protocol.TypeExecuted, protocol.ExecutedData{Node: id, DisplayNode: id, Output: res.UI, PromptID: promptID})
	}
	return true
}

// inputsOf gathers n's inputs: its values and its links' outputs. missing
// says why a link has no output to give, or is "".
func (r *promptRun) inputsOf(n *node) (inputs map[string]any, missing string) {
	inputs = make(map[string]any, len(n.values)+len(n.links))
	maps.Copy(inputs, n.values)
	for name, l := range n.links {
		out := r.outputs[l.from]
		if l.slot >= len(out) {
			return inputs, fmt.Sprintf("input %q links to output %d of node %s, which returned %d outputs", name, l.slot, l.from, len(out))
		}
		inputs[name] = out[l.slot]
	}
	r.addHidden(n, inputs)
	return inputs, ""
}

// addHidden fills the hidden inputs n's Spec declares, as ComfyUI fills
// "hidden": the prompt as run and the request's extra_data.extra_pnginfo.
func (r *promptRun) addHidden(n *node, inputs map[string]any) {
	for _, in := range n.spec.Inputs {
		switch in.Type {
		case plugins.TypePrompt:
			inputs[in.Name] = r.j.item.Prompt
		case plugins.TypeExtraPNGInfo:
			if v, ok := r.j.item.ExtraData["extra_pnginfo"]; ok {
				inputs[in.Name] = v
			}
		case plugins.TypeAuthTokenComfyOrg:
			inputs[in.Name] = r.j.secrets["auth_token_comfy_org"]
		case plugins.TypeAPIKeyComfyOrg:
			inputs[in.Name] = r.j.secrets["api_key_comfy_org"]
		case plugins.TypeSecret:
			inputs[in.Name] = r.j.secrets[in.Name]
		}
	}
}

// call runs n once through the Runner and keeps the tensors it made for
// release. Images n left unfinished are dropped whatever the outcome, so no
// client ever sees a torn one, and a retry may send them afresh.
func (r *promptRun) call(ctx context.Context, n *node, inputs map[string]any, h plugins.RunHandlers) (supervisor.Result, error) {
	promptID := r.j.item.PromptID
	limits := r.e.opts.Limits
	if b := r.e.opts.PromptTensorBytes; b > 0 {
		limits.TensorBudget, limits.TensorHeld = b, r.heldBytes()
	}
	res, err := r.e.opts.Runner.Run(ctx, supervisor.Call{
		ClassType: n.classType, NodeID: n.id, PromptID: promptID, Inputs: inputs, Limits: limits,
	}, h)
	r.e.opts.Broadcaster.AbortImages(promptID)
	r.handles = append(r.handles, handlesIn(res.Outputs)...)
	return res, err
}

// retriable reports whether n failed because a plugin died and took some of
// n's inputs with it, and n has not been retried in this prompt. A node whose
// inputs survived was already retried by the supervisor, if it could be:
// trying again would be a second retry of its unfinished image.
func (r *promptRun) retriable(n *node, err error) bool {
	if r.retried[n.id] || !(errors.Is(err, plugins.ErrUnavailable) || errors.Is(err, supervisor.ErrTensorLost)) {
		return false
	}
	return len(r.lostSources(n)) > 0
}

// lostSources returns, in run order, the nodes that must run again before n
// can: those whose outputs n uses were lost with a dead plugin, and,
// recursively, those whose lost outputs they use.
func (r *promptRun) lostSources(n *node) []*node {
	need := map[string]bool{}
	var visit func(n *node)
	visit = func(n *node) {
		for _, l := range n.links {
			if need[l.from] {
				continue
			}
			if out := r.outputs[l.from]; l.slot < len(out) && r.lost(out[l.slot]) {
				need[l.from] = true
				visit(r.j.plan.nodes[l.from])
			}
		}
	}
	visit(n)
	var order []*node
	for _, id := range r.j.plan.order {
		if need[id] {
			order = append(order, r.j.plan.nodes[id])
		}
	}
	return order
}

// lost reports whether v is a tensor handle its plugin no longer holds.
func (r *promptRun) lost(v any) bool {
	switch h := v.(type) {
	case supervisor.Handle:
		return !r.e.opts.Runner.Live(h)
	case *supervisor.Handle:
		return h != nil && !r.e.opts.Runner.Live(*h)
	}
	return false
}

// remakeInputs runs again the nodes whose outputs n needs and a dead plugin
// took. The re-runs are quiet: clients were told of these nodes once, and
// a second "executing" would move a client's idea of the running node away
// from n (the ComfyUI script examples file binary images under the last
// executing node); their progress, images and "ui" outputs are dropped
// for the same reason. They are logged instead.
func (r *promptRun) remakeInputs(ctx context.Context, n *node) error {
	for _, m := range r.lostSources(n) {
		if err := ctx.Err(); err != nil {
			return err
		}
		r.e.log.Warn("running a node again: a dead plugin took its outputs",
			"prompt_id", r.j.item.PromptID, "node", m.id, "class_type", m.classType, "for_node", n.id)
		inputs, missing := r.inputsOf(m)
		if missing != "" {
			return fmt.Errorf("executor: running node %s (%s) again for node %s: %s", m.id, m.classType, n.id, missing)
		}
		res, err := r.call(ctx, m, inputs, plugins.RunHandlers{})
		if err != nil {
			return fmt.Errorf("executor: running node %s (%s) again for node %s: %w", m.id, m.classType, n.id, err)
		}
		r.outputs[m.id] = res.Outputs
	}
	return nil
}

func (r *promptRun) interrupted(n *node) {
	r.stopped = true
	r.add(protocol.TypeExecutionInterrupted, protocol.ExecutionInterruptedData{
		PromptID: r.j.item.PromptID, NodeID: n.id, NodeType: n.classType,
		Executed: append([]string{}, r.executed...), Timestamp: nowMillis(),
	})
}

func (r *promptRun) failed(n *node, inputs map[string]any, excType, message string, traceback []string) {
	if traceback == nil {
		traceback = []string{}
	}
	current := make(map[string]any, len(inputs))
	for k, v := range inputs {
		current[k] = []any{formatValue(v)}
	}
	for _, in := range n.spec.Inputs { // a secret never goes into a message
		switch in.Type {
		case plugins.TypeAuthTokenComfyOrg, plugins.TypeAPIKeyComfyOrg, plugins.TypeSecret:
			delete(current, in.Name)
		}
	}
	r.progress.fail(n.id)
	r.sendProgressState()
	// execution.py handle_execution_error: list(current_outputs), the ids
	// of the nodes the output cache held when the prompt started.
	outs := append([]string{}, r.cachedAt...)
	r.add(protocol.TypeExecutionError, protocol.ExecutionErrorData{
		PromptID: r.j.item.PromptID, NodeID: n.id, NodeType: n.classType,
		Executed:         append([]string{}, r.executed...),
		ExceptionMessage: shortened(message, maxQuotedValue*4), ExceptionType: excType, Traceback: traceback,
		CurrentInputs: current, CurrentOutputs: outs, Timestamp: nowMillis(),
	})
	r.e.log.Warn("node failed", "prompt_id", r.j.item.PromptID, "node", n.id, "class_type", n.classType, "exception_type", excType, "message", message)
}

// heldBytes is the size of the tensors the prompt's nodes made so far, all
// held until the prompt ends.
func (r *promptRun) heldBytes() int64 {
	var n int64
	for _, h := range r.handles {
		n += tensorBytes(h.Ref)
	}
	return n
}

// tensorBytes is a tensor's size from its reference; 0 when it cannot tell,
// and 0 for a view, whose memory belongs to tensors already counted.
func tensorBytes(ref plugins.TensorRef) int64 {
	if ref.View {
		return 0
	}
	n := int64(protocol.DType(ref.DType).Size())
	for _, d := range ref.Shape {
		if d < 0 {
			return 0
		}
		n *= int64(d)
	}
	return n
}

// release lets the plugins forget every tensor the prompt made.
func (r *promptRun) release(ctx context.Context) {
	if len(r.handles) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	r.e.opts.Runner.Release(rctx, r.handles...)
}

// handlesIn returns the tensor handles among a node's outputs.
func handlesIn(outputs []any) []supervisor.Handle {
	var hs []supervisor.Handle
	for _, v := range outputs {
		switch h := v.(type) {
		case supervisor.Handle:
			hs = append(hs, h)
		case *supervisor.Handle:
			if h != nil {
				hs = append(hs, *h)
			}
		}
	}
	return hs
}

// formatValue is ComfyUI's format_value: primitives as they are, anything
// else as a string.
func formatValue(v any) any {
	switch x := v.(type) {
	case string:
		return shortened(x, maxQuotedValue)
	case nil, bool, int, int64, float64:
		return x
	case supervisor.Handle:
		return fmt.Sprintf("<tensor %s %s %v in pack %s>", x.Ref.ID, x.Ref.DType, x.Ref.Shape, x.Pack)
	case *protocol.Tensor:
		if x == nil {
			return nil
		}
		return fmt.Sprintf("<tensor %s %v>", x.DType, x.Shape)
	}
	return shortened(fmt.Sprint(v), maxQuotedValue)
}

// exceptionType names a Go error's type the way ComfyUI names an exception's
// class: "package.Type", looking through fmt.Errorf's wrapper, whose own
// name says nothing about the failure.
func exceptionType(err error) string {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if t, ok := e.(interface{ ExceptionType() string }); ok {
			return t.ExceptionType()
		}
		if name := fmt.Sprintf("%T", e); name != "*fmt.wrapError" {
			return strings.TrimPrefix(name, "*")
		}
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", err), "*")
}

func nowMillis() int64 { return time.Now().UnixMilli() }

// fromCache takes from the cache the outputs of every node whose key it
// holds, and returns those nodes' ids in execution order, for
// execution_cached. They do not run.
func (r *promptRun) fromCache() []string {
	ids := []string{}
	if r.e.cache == nil {
		return ids
	}
	r.keys = cacheKeys(r.j.plan, r.e.opts.InputDir)
	r.cached = map[string]bool{}
	for _, id := range r.j.plan.order {
		ent, ok := r.e.cache.get(r.keys[id], r.e.opts.Runner.Live)
		if !ok {
			continue
		}
		r.pinned = append(r.pinned, ent)
		r.outputs[id] = ent.outputs
		r.cached[id] = true
		ids = append(ids, id)
	}
	return ids
}

// keep gives a node's outputs to the cache, which then owns their tensors
// (the prompt no longer releases them); the entry stays pinned while the
// prompt runs.
func (r *promptRun) keep(n *node, outputs []any) {
	key := r.keys[n.id]
	if r.e.cache == nil || key == "" {
		return
	}
	hs := handlesIn(outputs)
	if !r.e.cache.put(key, outputs, hs, cachedBytes(hs)) {
		return
	}
	r.handles = withoutHandles(r.handles, hs)
	if ent, ok := r.e.cache.get(key, func(supervisor.Handle) bool { return true }); ok {
		r.pinned = append(r.pinned, ent)
	}
}

// finishCache unpins the entries the prompt used and evicts down to the
// cache's bound.
func (r *promptRun) finishCache(ctx context.Context) {
	if r.e.cache == nil {
		return
	}
	for _, ent := range r.pinned {
		r.e.cache.unpin(ent)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	r.e.cache.trim(rctx, false)
}
