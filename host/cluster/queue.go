package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/nodecast/nodecast/host/executor"
)

// job is a prompt in the work queue.
type job struct {
	Prompt    map[string]any `json:"prompt,omitempty"`
	Workflow  string         `json:"workflow,omitempty"`
	ClientID  string         `json:"client_id,omitempty"`
	PromptID  string         `json:"prompt_id"`
	ExtraData map[string]any `json:"extra_data,omitempty"`
	// Body names the object in PromptBodyBucket that holds this job
	// whole, when it is over max_payload.
	Body string `json:"body,omitempty"`
	// Targets are the prompt's partial_execution_targets (nil = all).
	Targets []string `json:"partial_execution_targets,omitempty"`
}

var _ executor.Cluster = (*Node)(nil)

// Enqueue implements executor.Cluster: the prompt is accepted once
// JetStream stored it; the stream sequence is its number. Front is not
// honoured: the work queue is FIFO.
func (n *Node) Enqueue(ctx context.Context, req executor.Request, item executor.QueueItem) (int64, error) {
	if err := n.Connected(); err != nil {
		return 0, err
	}
	data, err := json.Marshal(job{Prompt: req.Prompt, Workflow: req.Workflow, ClientID: req.ClientID, PromptID: req.PromptID, ExtraData: req.ExtraData, Targets: req.Targets})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if len(data) > int(n.nc.MaxPayload())-4<<10 {
		// Over max_payload: the body goes to the object store (chunked),
		// the queue carries its name.
		name := nuid.Next()
		if _, err := n.bodies.Put(ctx, n.objectMeta(name, nil), bytes.NewReader(data)); err != nil {
			return 0, fmt.Errorf("the prompt (%d bytes, over max_payload) was not stored: %v", len(data), err)
		}
		data, _ = json.Marshal(job{PromptID: req.PromptID, Body: name})
	}
	ack, err := n.js.Publish(ctx, PromptSubject, data, jetstream.WithMsgID(req.PromptID))
	if err != nil {
		if n.Connected() != nil {
			err = n.Connected()
		}
		return 0, fmt.Errorf("the prompt was not stored in the cluster queue: %v", err)
	}
	if ack.Duplicate {
		return 0, fmt.Errorf("prompt_id %q is already in the cluster queue", req.PromptID)
	}
	n.accepted.Add(1)
	item.Number = float64(ack.Sequence)
	n.putQueue(queueRec{Seq: ack.Sequence, Item: item}, true)
	return int64(ack.Sequence), nil
}

// Interrupt implements executor.Cluster: every host stops promptID.
func (n *Node) Interrupt(promptID string) {
	if err := n.nc.Publish(InterruptSubj, []byte(promptID)); err != nil {
		n.log.Warn("cluster: interrupt not sent to the other hosts", "prompt", promptID, "err", err)
	}
}

// Serve starts this host's part: its hub (sink) receives the cluster's
// messages, exec runs prompts from the queue (unless Workers < 0), and
// interrupts from any host reach exec.
//
// dirs are this host's folders by type ("input", "output", "temp"): files
// shared by other hosts are written there.
func (n *Node) Serve(ctx context.Context, exec *executor.Executor, sink executor.Broadcaster, dirs map[string]string) error {
	n.dirs = dirs
	if err := n.mirrorFiles(dirs); err != nil {
		return err
	}
	if err := n.receive(ctx, sink); err != nil {
		return err
	}
	if err := n.watchState(exec); err != nil {
		return err
	}
	sub, err := n.nc.Subscribe(InterruptSubj, func(m *nats.Msg) { exec.InterruptLocal(string(m.Data)) })
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCluster, err)
	}
	n.onClose(func() { _ = sub.Unsubscribe() })
	if n.opts.Workers < 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := n.js.CreateOrUpdateConsumer(cctx, PromptStream, jetstream.ConsumerConfig{
		Durable: workersConsumer, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: n.opts.AckWait, MaxAckPending: 10000, MaxDeliver: -1,
	})
	if err != nil {
		return fmt.Errorf("%w: consumer of %s: %v", ErrCluster, PromptStream, err)
	}
	wctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.work(wctx, cons, exec)
		}()
	}
	n.onClose(func() { stop(); wg.Wait() })
	return nil
}

// work takes one prompt at a time from the queue and runs it.
func (n *Node) work(ctx context.Context, cons jetstream.Consumer, exec *executor.Executor) {
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond): // NATS away: try again
			}
			continue
		}
		for m := range batch.Messages() {
			n.runOne(ctx, m, exec)
		}
	}
}

func (n *Node) runOne(ctx context.Context, m jetstream.Msg, exec *executor.Executor) {
	md, err := m.Metadata()
	if err != nil {
		_ = m.Term()
		return
	}
	var j job
	err = json.Unmarshal(m.Data(), &j)
	if err == nil && j.Body != "" {
		var body []byte
		if body, err = n.bodies.GetBytes(ctx, j.Body); err == nil {
			j = job{}
			err = json.Unmarshal(body, &j)
		} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
			_ = m.NakWithDelay(time.Second) // NATS trouble: try again
			return
		}
	}
	if err != nil || j.PromptID == "" {
		n.log.Error("cluster: unreadable prompt in the queue dropped", "seq", md.Sequence.Stream, "err", err)
		_ = m.Term()
		return
	}
	n.ran.Add(1)
	if md.NumDelivered > 1 {
		n.redelivered.Add(1)
		n.log.Warn("cluster: running a prompt again: the host that had it stopped acknowledging it", "prompt", j.PromptID, "attempt", md.NumDelivered)
	}
	n.mu.Lock()
	n.attempts[j.PromptID] = md.NumDelivered
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.attempts, j.PromptID)
		n.mu.Unlock()
	}()
	// In-progress acks while it is validated and runs, so a long prompt
	// is not given to another host.
	tick := time.NewTicker(max(n.opts.AckWait/3, 10*time.Millisecond))
	defer tick.Stop()
	stopTick := make(chan struct{})
	defer close(stopTick)
	go func() {
		for {
			select {
			case <-stopTick:
				return
			case <-tick.C:
				_ = m.InProgress()
			}
		}
	}()
	if _, err := exec.SubmitLocal(ctx, executor.Request{Prompt: j.Prompt, Workflow: j.Workflow, ClientID: j.ClientID,
		PromptID: j.PromptID, ExtraData: j.ExtraData, Targets: j.Targets}, int64(md.Sequence.Stream)); err != nil {
		msg := err.Error()
		var verr *executor.ValidationError
		if errors.As(err, &verr) {
			if verr.Detail.Type == executor.TypeDuplicatePromptID {
				return // still running here: that run acks it
			}
			if verr.Detail.Type == executor.TypeQueueClosed {
				_ = m.Nak()
				return
			}
			msg = verr.Detail.Message
		}
		n.log.Error("cluster: prompt refused by this host's validation; dropped", "prompt", j.PromptID, "error", msg)
		n.Broadcaster().SendJSON(j.ClientID, "execution_error", map[string]any{"prompt_id": j.PromptID, "exception_message": msg})
		n.Broadcaster().SendJSON(j.ClientID, "executing", map[string]any{"prompt_id": j.PromptID, "node": nil})
		_ = m.Term()
		return
	}
	n.mu.Lock()
	rec, ok := n.queue[kvKey(j.PromptID)] // as the accepting host recorded it
	n.mu.Unlock()
	if !ok {
		rec.Item = executor.QueueItem{Number: float64(md.Sequence.Stream), PromptID: j.PromptID, ExtraData: j.ExtraData}
	}
	rec.Seq, rec.Running, rec.Host = md.Sequence.Stream, true, n.opts.Name
	n.putQueue(rec, false)
	entry, err := exec.Wait(ctx, j.PromptID)
	if errors.Is(err, executor.ErrClosed) || ctx.Err() != nil {
		_ = m.Nak() // this host is going away: another one runs it
		return
	}
	if err == nil {
		n.shareOutputs(entry)
		n.finished(j.PromptID, entry)
	}
	if b := jobBody(m.Data()); b != "" {
		_ = n.bodies.Delete(context.Background(), b)
	}
	if err := m.DoubleAck(context.Background()); err != nil {
		n.log.Warn("cluster: prompt ran but its ack was not confirmed; another host may run it again", "prompt", j.PromptID, "err", err)
	}
}

// jobBody is the object name a queued job refers to, if any.
func jobBody(data []byte) string {
	var j job
	_ = json.Unmarshal(data, &j)
	return j.Body
}

// objectMeta names an object whose chunks fit the server's max_payload
// (the object store's default chunk is 128 KiB).
func (n *Node) objectMeta(name string, meta map[string]string) jetstream.ObjectMeta {
	chunk := min(128<<10, max(int(n.nc.MaxPayload())-4<<10, 1<<10))
	return jetstream.ObjectMeta{Name: name, Metadata: meta, Opts: &jetstream.ObjectMetaOptions{ChunkSize: uint32(chunk)}}
}
