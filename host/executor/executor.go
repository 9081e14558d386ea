package executor

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nodecast/nodecast/host/supervisor"
	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// Runner runs nodes; *supervisor.Supervisor satisfies it.
type Runner interface {
	Class(name string) (supervisor.Class, bool)
	Run(ctx context.Context, call supervisor.Call, h plugins.RunHandlers) (supervisor.Result, error)
	Release(ctx context.Context, hs ...supervisor.Handle)
	// Live reports whether a tensor handle's plugin still holds it: false
	// once the process that made it has died.
	Live(h supervisor.Handle) bool
}

var _ Runner = (*supervisor.Supervisor)(nil)

// Broadcaster is what the executor needs from the hub: *hub.Hub satisfies
// it, and so does a cluster node's Broadcaster, which relays to the host
// holding the client. clientID "" means every client.
type Broadcaster interface {
	SendJSON(clientID, typ string, data any)
	Publish(clientID string, p *protocol.ImagePart) error
	AbortImages(promptID string)
}

// Workflow is a configured workflow: an API-format prompt and per-node input
// settings keyed by node id or by _meta.title.
type Workflow struct {
	Prompt map[string]any
	Nodes  map[string]map[string]any
}

// Options configures an Executor. Only Runner is required.
type Options struct {
	Runner      Runner
	Broadcaster Broadcaster // nil = messages are dropped
	// InputDir is the folder whose files image_upload inputs name. "" = such
	// inputs are refused, since no file can be checked.
	InputDir string
	// Workers is how many prompts run at once. 0 = 1, as ComfyUI.
	Workers int
	// MaxHistory bounds the finished prompts remembered. 0 = 10000, as ComfyUI.
	MaxHistory int
	// MaxHistoryBytes bounds the JSON size of the finished prompts
	// remembered; the oldest are forgotten first. 0 = DefaultHistoryBytes.
	MaxHistoryBytes int64
	// HistoryValueBytes: a prompt input (or extra_data value) longer than
	// this is shown in /queue and kept in history as a placeholder string
	// that gives its length and first characters; the run itself gets the
	// whole value. 0 = DefaultHistoryValueBytes.
	HistoryValueBytes int
	// PromptTensorBytes bounds the bytes of the tensors one prompt's nodes
	// make; a node checks it before allocating (plugins.BudgetError).
	// 0 = DefaultPromptTensorBytes; negative = no budget.
	PromptTensorBytes int64
	// Limits are passed to every node call.
	Limits plugins.Limits
	// Workflows by name, for requests that name one.
	Workflows map[string]Workflow
	// Defaults are the host's values for output nodes' inputs (event,
	// encoder, wire, part_size ...), used where neither the node nor its
	// workflow entry sets one, and only for inputs the node's Spec declares.
	Defaults map[string]any
	Logger   *slog.Logger // nil = discard
	// CacheBytes bounds the tensor bytes of the node outputs kept between
	// prompts (ComfyUI's cache: an unchanged node is not run again).
	// 0 or negative = no cache (--cache-none); nodecast serve's config
	// defaults to config.DefaultCacheBytes.
	CacheBytes int64
	// Cluster, when set, takes validated prompts instead of the local
	// queue and carries interrupts to every host (see Cluster); the
	// executor then runs only the prompts handed to SubmitLocal.
	Cluster Cluster
	// SensitiveKeys are extra_data keys kept secret besides
	// DefaultSensitiveKeys (see secrets.go).
	SensitiveKeys []string
}

// Request is a prompt to queue.
type Request struct {
	Prompt    map[string]any // API-format prompt; nil = the workflow's own
	Workflow  string         // a configured workflow's name, or ""
	ClientID  string         // routes messages; "" = extra_data's client_id, else every client
	PromptID  string         // "" = a new UUID
	ExtraData map[string]any
	Front     bool // queue before the pending prompts (ComfyUI's "front")
	// Targets are ComfyUI's partial_execution_targets: nil = every output
	// node runs; otherwise only the output nodes listed, and what they need.
	Targets []string
	// Number is ComfyUI's "number", the prompt's place in the queue (lowest
	// first; equal numbers keep their arrival order). nil = after the
	// others, or first with Front. A cluster orders by its own count.
	Number *float64

	number int64 // SubmitLocal: the number the cluster gave it (0 = none)
	local  bool  // SubmitLocal: queue here even with a Cluster
}

// Accepted is a queued prompt. NodeErrors lists outputs that failed
// validation and will not run, when others passed.
type Accepted struct {
	PromptID   string               `json:"prompt_id"`
	Number     float64              `json:"number"`
	NodeErrors map[string]NodeError `json:"node_errors"`
}

// job is a queued or running prompt.
type job struct {
	item     QueueItem
	plan     *plan
	clientID string
	done     chan struct{} // closed when finished, deleted or dropped
	entry    HistoryEntry  // valid after done when err == nil
	err      error
	cancel   context.CancelCauseFunc // set while running
	secrets  map[string]any          // extra_data's sensitive keys, never shown (secrets.go)
}

// Executor queues and runs prompts.
type Executor struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	cond    *sync.Cond
	number  int64
	front   int64 // numbers given to front-queued prompts count down from -1
	pending []*job
	running []*job
	jobs    map[string]*job // pending and running, by prompt id
	hist    *history
	closed  bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	succeeded, failed, interrupted atomic.Uint64 // prompts finished, by outcome

	cache *outputCache // node outputs kept between prompts (cache.go); nil = none
}

// Finished counts the prompts that ran to an end since New, by outcome.
type Finished struct {
	Success     uint64 // every node ran
	Error       uint64 // a node failed or could not run
	Interrupted uint64 // stopped by Interrupt or Close
}

// Finished returns how many prompts ended, by outcome. A prompt is counted
// before its history entry is stored, so it is counted once Wait returns.
func (e *Executor) Finished() Finished {
	return Finished{Success: e.succeeded.Load(), Error: e.failed.Load(), Interrupted: e.interrupted.Load()}
}

// New starts an executor's workers.
func New(opts Options) (*Executor, error) {
	if opts.Runner == nil {
		return nil, ErrNoRunner
	}
	if opts.Broadcaster == nil {
		opts.Broadcaster = discard{}
	}
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.MaxHistory <= 0 {
		opts.MaxHistory = 10000
	}
	if opts.MaxHistoryBytes <= 0 {
		opts.MaxHistoryBytes = DefaultHistoryBytes
	}
	if opts.HistoryValueBytes <= 0 {
		opts.HistoryValueBytes = DefaultHistoryValueBytes
	}
	if opts.PromptTensorBytes == 0 {
		opts.PromptTensorBytes = DefaultPromptTensorBytes
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Executor{opts: opts, log: log, jobs: map[string]*job{}, hist: newHistory(opts.MaxHistory, opts.MaxHistoryBytes), ctx: ctx, cancel: cancel}
	e.cond = sync.NewCond(&e.mu)
	e.cache = newOutputCache(opts.CacheBytes, opts.Runner.Release)
	for range opts.Workers {
		e.wg.Add(1)
		go e.worker()
	}
	return e, nil
}

// Close stops taking prompts, interrupts the running ones, drops the pending
// ones (their waiters get ErrClosed) and waits for the workers.
func (e *Executor) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	for _, j := range e.pending {
		e.finishJob(j, ErrClosed)
	}
	e.pending = nil
	e.cond.Broadcast()
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
	return nil
}

// Workflows lists the configured workflows' names, sorted.
func (e *Executor) Workflows() []string {
	return slices.Sorted(maps.Keys(e.opts.Workflows))
}

// Submit validates a prompt and queues it. A refused prompt's error is a
// *ValidationError (errors.As), ComfyUI's 400 shape; an accepted one may
// still list node errors of outputs that will not run.
func (e *Executor) Submit(ctx context.Context, req Request) (Accepted, error) {
	acc, verr := e.submit(ctx, req)
	if verr != nil { // not a nil *ValidationError in a non-nil error
		return Accepted{}, verr
	}
	return acc, nil
}

func (e *Executor) submit(ctx context.Context, req Request) (Accepted, *ValidationError) {
	if err := ctx.Err(); err != nil {
		return Accepted{}, NewValidationError(TypeQueueClosed, "Request cancelled", err.Error())
	}
	var wf *Workflow
	prompt := req.Prompt
	if req.Workflow != "" {
		w, ok := e.opts.Workflows[req.Workflow]
		if !ok {
			known := strings.Join(e.Workflows(), ", ")
			if known == "" {
				known = "none"
			}
			verr := NewValidationError(TypeUnknownWorkflow, fmt.Sprintf("Unknown workflow %q", req.Workflow), "configured workflows: "+known)
			verr.Detail.ExtraInfo["workflow"] = req.Workflow
			return Accepted{}, verr
		}
		wf = &w
		if prompt == nil {
			prompt = w.Prompt
		}
	}
	if ci, ok := e.opts.Cluster.(ClusterInputs); ok {
		ci.FetchInputs(ctx, prompt)
	}
	p, verr := e.validate(prompt, wf, req.Targets)
	if verr != nil {
		return Accepted{}, verr
	}

	extra := make(map[string]any, len(req.ExtraData)+1)
	maps.Copy(extra, req.ExtraData)
	clientID := req.ClientID
	if clientID != "" {
		extra["client_id"] = clientID
	} else if s, ok := extra["client_id"].(string); ok {
		clientID = s
	}
	secrets := splitSensitive(extra, e.opts.sensitiveKeys())
	promptID := req.PromptID
	if promptID == "" {
		promptID = protocol.NewUUID()
	}

	if e.opts.Cluster != nil && !req.local {
		// Secrets do not cross the cluster: its queue records are listed.
		return e.dispatch(ctx, req, p, clientID, promptID, extra)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return Accepted{}, NewValidationError(TypeQueueClosed, "The server is shutting down", "the prompt queue is closed")
	}
	if _, dup := e.jobs[promptID]; dup {
		return Accepted{}, NewValidationError(TypeDuplicatePromptID, fmt.Sprintf("A queued or running prompt already has prompt_id %q", promptID), promptID)
	}
	var number float64
	if req.number != 0 {
		number = float64(req.number)
	} else if req.Number != nil {
		number = *req.Number
	} else if req.Front {
		e.front--
		number = float64(e.front)
	} else {
		number = float64(e.number)
		e.number++
	}
	j := &job{
		item: QueueItem{Number: number, PromptID: promptID, OutputsToExecute: p.outputs,
			Prompt:    elideValues(p.prompt, e.opts.HistoryValueBytes),
			ExtraData: elideValues(extra, e.opts.HistoryValueBytes)},
		plan:     p,
		clientID: clientID,
		done:     make(chan struct{}),
		secrets:  secrets,
	}
	// In number order, as ComfyUI's heap; after the equal ones.
	at := len(e.pending)
	for i, o := range e.pending {
		if o.item.Number > number {
			at = i
			break
		}
	}
	e.pending = slices.Insert(e.pending, at, j)
	e.jobs[promptID] = j
	e.sendStatusLocked()
	e.cond.Signal()
	return Accepted{PromptID: promptID, Number: number, NodeErrors: p.nodeErrors}, nil
}

// Wait blocks until the prompt has finished and returns its history entry.
// A finished prompt's entry comes from the history while it is remembered.
func (e *Executor) Wait(ctx context.Context, promptID string) (HistoryEntry, error) {
	e.mu.Lock()
	j, queued := e.jobs[promptID]
	if !queued {
		entry, ok := e.hist.entries[promptID]
		e.mu.Unlock()
		if !ok {
			return HistoryEntry{}, fmt.Errorf("%w: %q", ErrUnknownPrompt, promptID)
		}
		return entry, nil
	}
	e.mu.Unlock()
	select {
	case <-j.done:
		return j.entry, j.err
	case <-ctx.Done():
		return HistoryEntry{}, ctx.Err()
	}
}

// Interrupt stops the running prompt promptID, or every running prompt when
// promptID is "". It reports whether a prompt was interrupted.
func (e *Executor) Interrupt(promptID string) bool {
	if e.opts.Cluster != nil {
		e.opts.Cluster.Interrupt(promptID)
	}
	return e.InterruptLocal(promptID)
}

// InterruptLocal is Interrupt for the prompts running on this host only.
func (e *Executor) InterruptLocal(promptID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	hit := false
	for _, j := range e.running {
		if promptID == "" || j.item.PromptID == promptID {
			j.cancel(ErrInterrupted)
			hit = true
		}
	}
	return hit
}

// Queue returns the running and the pending prompts, in order.
func (e *Executor) Queue() (running, pending []QueueItem) {
	if cq := e.clusterQueue(); cq != nil {
		return cq.Queue()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	running = make([]QueueItem, 0, len(e.running))
	for _, j := range e.running {
		running = append(running, j.item)
	}
	pending = make([]QueueItem, 0, len(e.pending))
	for _, j := range e.pending {
		pending = append(pending, j.item)
	}
	return running, pending
}

// QueueRemaining is ComfyUI's exec_info.queue_remaining: pending plus running.
func (e *Executor) QueueRemaining() int {
	if cq := e.clusterQueue(); cq != nil {
		running, pending := cq.Queue()
		return len(running) + len(pending)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.pending) + len(e.running)
}

// ClearQueue drops every pending prompt (running ones go on).
func (e *Executor) ClearQueue() {
	if cq := e.clusterQueue(); cq != nil {
		cq.ClearQueue()
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, j := range e.pending {
		e.finishJob(j, ErrPromptDeleted)
	}
	e.pending = nil
	e.sendStatusLocked()
}

// DeleteQueued drops the pending prompts with these ids and reports how many
// it dropped. Running prompts are not affected: interrupt them.
func (e *Executor) DeleteQueued(ids ...string) int {
	if cq := e.clusterQueue(); cq != nil {
		return cq.DeleteQueued(ids...)
	}
	del := map[string]bool{}
	for _, id := range ids {
		del[id] = true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	kept := e.pending[:0]
	n := 0
	for _, j := range e.pending {
		if del[j.item.PromptID] {
			e.finishJob(j, ErrPromptDeleted)
			n++
			continue
		}
		kept = append(kept, j)
	}
	clear(e.pending[len(kept):])
	e.pending = kept
	if n > 0 {
		e.sendStatusLocked()
	}
	return n
}

// History returns up to maxItems finished prompts starting at offset, oldest
// first. maxItems < 0 means all; offset < 0 means the last maxItems.
func (e *Executor) History(maxItems, offset int) History {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hist.list(maxItems, offset)
}

// HistoryEntry returns one finished prompt.
func (e *Executor) HistoryEntry(promptID string) (HistoryEntry, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	entry, ok := e.hist.entries[promptID]
	return entry, ok
}

// ClearHistory forgets every finished prompt.
func (e *Executor) ClearHistory() {
	if cq := e.clusterQueue(); cq != nil {
		cq.ClearHistory()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.hist.clear()
}

// DeleteHistory forgets these finished prompts.
func (e *Executor) DeleteHistory(ids ...string) {
	if cq := e.clusterQueue(); cq != nil {
		cq.DeleteHistory(ids...)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		e.hist.remove(id)
	}
}

// worker runs queued prompts one after another.
func (e *Executor) worker() {
	defer e.wg.Done()
	for {
		e.mu.Lock()
		for len(e.pending) == 0 && !e.closed {
			e.cond.Wait()
		}
		if e.closed {
			e.mu.Unlock()
			return
		}
		j := e.pending[0]
		e.pending[0] = nil
		e.pending = e.pending[1:]
		ctx, cancel := context.WithCancelCause(e.ctx)
		j.cancel = cancel
		e.running = append(e.running, j)
		e.sendStatusLocked()
		e.mu.Unlock()

		entry := e.run(ctx, j)
		cancel(nil)

		e.mu.Lock()
		for i, r := range e.running {
			if r == j {
				e.running = append(e.running[:i:i], e.running[i+1:]...)
				break
			}
		}
		e.hist.add(j.item.PromptID, entry)
		j.entry = entry
		e.sendStatusLocked()
		e.mu.Unlock()
		// After the history holds the prompt, so a client that reads
		// /history on this message finds it (ComfyUI's order); before Wait
		// returns, so an embedder has seen every message of the prompt.
		e.opts.Broadcaster.SendJSON(j.clientID, protocol.TypeExecuting, protocol.ExecutingData{Node: nil, PromptID: j.item.PromptID})
		e.mu.Lock()
		e.finishJob(j, nil)
		e.mu.Unlock()
	}
}

// finishJob ends a job's wait. Callers hold e.mu.
func (e *Executor) finishJob(j *job, err error) {
	j.err = err
	delete(e.jobs, j.item.PromptID)
	close(j.done)
}

// sendStatusLocked broadcasts the queue size. Callers hold e.mu, so that
// status messages leave in the order of the queue changes they report.
func (e *Executor) sendStatusLocked() {
	e.opts.Broadcaster.SendJSON("", protocol.TypeStatus, protocol.StatusData{
		Status: protocol.Status{ExecInfo: protocol.ExecInfo{QueueRemaining: len(e.pending) + len(e.running)}},
	})
}

type discard struct{}

func (discard) SendJSON(string, string, any)              {}
func (discard) Publish(string, *protocol.ImagePart) error { return nil }
func (discard) AbortImages(string)                        {}
