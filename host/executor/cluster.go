package executor

import (
	"context"
)

// Cluster is a prompt queue shared by several hosts (host/cluster implements
// it on NATS JetStream). Submit validates a prompt here and hands it to
// Enqueue; whichever host takes it runs it through SubmitLocal.
type Cluster interface {
	// Enqueue stores the validated request durably and returns its queue
	// number (FIFO over the cluster). An error means the prompt was not
	// accepted; its text says why (the request is refused with 503).
	Enqueue(ctx context.Context, req Request, item QueueItem) (number int64, err error)
	// Interrupt asks every host to stop promptID ("" = every running prompt).
	Interrupt(promptID string)
}

// dispatch hands a validated prompt to the cluster's queue.
func (e *Executor) dispatch(ctx context.Context, req Request, p *plan, clientID, promptID string, extra map[string]any) (Accepted, *ValidationError) {
	req.ClientID, req.PromptID, req.ExtraData = clientID, promptID, extra
	if req.Prompt == nil && req.Workflow != "" {
		req.Prompt = e.opts.Workflows[req.Workflow].Prompt
	}
	item := QueueItem{PromptID: promptID, OutputsToExecute: p.outputs,
		Prompt:    elideValues(p.prompt, e.opts.HistoryValueBytes),
		ExtraData: elideValues(extra, e.opts.HistoryValueBytes)}
	n, err := e.opts.Cluster.Enqueue(ctx, req, item)
	if err != nil {
		return Accepted{}, NewValidationError(TypeQueueClosed, "The cluster queue cannot take the prompt", err.Error())
	}
	return Accepted{PromptID: promptID, Number: float64(n), NodeErrors: p.nodeErrors}, nil
}

// SubmitLocal queues a prompt taken from the cluster's queue on this host,
// with the number the cluster gave it. It is validated again: the host that
// accepted it may have other node packs.
func (e *Executor) SubmitLocal(ctx context.Context, req Request, number int64) (Accepted, error) {
	req.local, req.number = true, number
	return e.Submit(ctx, req)
}

// ClusterQueue is implemented by a Cluster that keeps the queue and the
// history of every host (JetStream KV): /queue, queue deletes and history
// deletes then act on the whole cluster.
type ClusterQueue interface {
	Queue() (running, pending []QueueItem)
	DeleteQueued(ids ...string) int
	ClearQueue()
	DeleteHistory(ids ...string)
	ClearHistory()
}

func (e *Executor) clusterQueue() ClusterQueue {
	cq, _ := e.opts.Cluster.(ClusterQueue)
	return cq
}

// RecordHistory adds a prompt finished on another host to this host's
// history, so /history shows the whole cluster.
func (e *Executor) RecordHistory(promptID string, entry HistoryEntry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.hist.add(promptID, entry)
}

// ForgetHistory removes prompts from this host's history only.
func (e *Executor) ForgetHistory(ids ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		e.hist.remove(id)
	}
}

// ClusterInputs is implemented by a Cluster that shares input files: the
// files a prompt names are fetched to this host before it is validated.
type ClusterInputs interface {
	FetchInputs(ctx context.Context, prompt map[string]any)
}
