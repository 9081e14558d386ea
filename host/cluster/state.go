package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nodecast/nodecast/host/executor"
)

// KV buckets of the cluster's queue and history.
const (
	QueueBucket   = "nodecast_queue"
	HistoryBucket = "nodecast_history"
	// PromptBodyBucket holds prompts too large for one NATS message; the
	// work queue then carries a reference.
	PromptBodyBucket = "nodecast_prompts"
)

// queueRec is a prompt of the cluster's queue, as kept in QueueBucket.
type queueRec struct {
	Seq     uint64             `json:"seq"` // its message in the work queue
	Item    executor.QueueItem `json:"item"`
	Running bool               `json:"running"`
	Host    string             `json:"host,omitempty"` // the host running it
}

// kvKey makes a KV key of any prompt id (KV keys allow few characters).
func kvKey(promptID string) string { return base64.RawURLEncoding.EncodeToString([]byte(promptID)) }

func (n *Node) makeBuckets(ctx context.Context) error {
	var err error
	if n.qkv, err = n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: QueueBucket, Storage: jetstream.FileStorage}); err != nil {
		return fmt.Errorf("%w: KV %s: %v", ErrCluster, QueueBucket, err)
	}
	if n.hkv, err = n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: HistoryBucket, Storage: jetstream.FileStorage,
		MaxBytes: 256 << 20}); err != nil {
		return fmt.Errorf("%w: KV %s: %v", ErrCluster, HistoryBucket, err)
	}
	if n.bodies, err = n.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: PromptBodyBucket, Storage: jetstream.FileStorage,
		TTL: 7 * 24 * time.Hour}); err != nil {
		return fmt.Errorf("%w: object store %s: %v", ErrCluster, PromptBodyBucket, err)
	}
	if n.files, err = n.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: FilesBucket, Storage: jetstream.FileStorage}); err != nil {
		return fmt.Errorf("%w: object store %s: %v", ErrCluster, FilesBucket, err)
	}
	return nil
}

// watchState mirrors the queue bucket in memory and the history bucket
// into exec's history, so every host shows the whole cluster.
func (n *Node) watchState(exec *executor.Executor) error {
	ctx, cancel := context.WithCancel(context.Background())
	n.onClose(cancel)
	qw, err := n.qkv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("%w: watching %s: %v", ErrCluster, QueueBucket, err)
	}
	hw, err := n.hkv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("%w: watching %s: %v", ErrCluster, HistoryBucket, err)
	}
	go func() {
		for e := range qw.Updates() {
			if e == nil {
				continue // the end of the initial values
			}
			n.mu.Lock()
			switch {
			case e.Operation() != jetstream.KeyValuePut:
				delete(n.queue, e.Key())
				delete(n.doneKeys, e.Key())
			case !n.doneKeys[e.Key()]:
				var r queueRec
				if json.Unmarshal(e.Value(), &r) == nil {
					n.queue[e.Key()] = r
				}
			}
			n.mu.Unlock()
		}
	}()
	go func() {
		for e := range hw.Updates() {
			if e == nil {
				continue
			}
			id, err := base64.RawURLEncoding.DecodeString(e.Key())
			if err != nil {
				continue
			}
			if e.Operation() == jetstream.KeyValuePut {
				var h executor.HistoryEntry
				if json.Unmarshal(e.Value(), &h) == nil {
					n.mu.Lock()
					delete(n.queue, e.Key())
					n.doneKeys[e.Key()] = true // a late queue record must not bring it back
					n.mu.Unlock()
					exec.RecordHistory(string(id), h)
				}
			} else {
				n.mu.Lock()
				delete(n.doneKeys, e.Key())
				n.mu.Unlock()
				exec.ForgetHistory(string(id))
			}
		}
	}()
	return nil
}

var _ executor.ClusterQueue = (*Node)(nil)

// Queue implements executor.ClusterQueue: the whole cluster's prompts, in
// queue order.
func (n *Node) Queue() (running, pending []executor.QueueItem) {
	n.mu.Lock()
	recs := make([]queueRec, 0, len(n.queue))
	for _, r := range n.queue {
		recs = append(recs, r)
	}
	n.mu.Unlock()
	sort.Slice(recs, func(i, j int) bool { return recs[i].Seq < recs[j].Seq })
	running, pending = []executor.QueueItem{}, []executor.QueueItem{}
	for _, r := range recs {
		if r.Running {
			running = append(running, r.Item)
		} else {
			pending = append(pending, r.Item)
		}
	}
	return running, pending
}

// DeleteQueued implements executor.ClusterQueue: pending prompts are taken
// out of the work queue, whichever host accepted them.
func (n *Node) DeleteQueued(ids ...string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := n.js.Stream(ctx, PromptStream)
	if err != nil {
		n.log.Warn("cluster: queue delete failed", "err", err)
		return 0
	}
	deleted := 0
	for _, id := range ids {
		n.mu.Lock()
		r, ok := n.queue[kvKey(id)]
		n.mu.Unlock()
		if !ok || r.Running {
			continue
		}
		if err := stream.DeleteMsg(ctx, r.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			n.log.Warn("cluster: queue delete failed", "prompt", id, "err", err)
			continue
		}
		_ = n.qkv.Delete(ctx, kvKey(id))
		deleted++
	}
	return deleted
}

// ClearQueue implements executor.ClusterQueue.
func (n *Node) ClearQueue() {
	_, pending := n.Queue()
	ids := make([]string, len(pending))
	for i, p := range pending {
		ids[i] = p.PromptID
	}
	n.DeleteQueued(ids...)
}

// DeleteHistory implements executor.ClusterQueue: every host forgets them.
func (n *Node) DeleteHistory(ids ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, id := range ids {
		_ = n.hkv.Delete(ctx, kvKey(id))
	}
}

// ClearHistory implements executor.ClusterQueue.
func (n *Node) ClearHistory() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := n.hkv.ListKeys(ctx)
	if err != nil {
		return
	}
	for k := range keys.Keys() {
		_ = n.hkv.Delete(ctx, k)
	}
}

// putQueue records a prompt's queue state (create: only when the key is
// new, so a late record of its acceptance cannot hide that it runs).
func (n *Node) putQueue(r queueRec, create bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, _ := json.Marshal(r)
	var err error
	if create {
		_, err = n.qkv.Create(ctx, kvKey(r.Item.PromptID), b)
		if errors.Is(err, jetstream.ErrKeyExists) {
			err = nil
		}
	} else {
		_, err = n.qkv.Put(ctx, kvKey(r.Item.PromptID), b)
	}
	if err != nil {
		n.log.Warn("cluster: queue state not recorded", "prompt", r.Item.PromptID, "err", err)
	}
}

// finished moves a prompt from the queue to the history.
func (n *Node) finished(promptID string, entry executor.HistoryEntry) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if b, err := json.Marshal(entry); err == nil {
		if _, err := n.hkv.Put(ctx, kvKey(promptID), b); err != nil {
			n.log.Warn("cluster: history not recorded", "prompt", promptID, "err", err)
		}
	}
	_ = n.qkv.Delete(ctx, kvKey(promptID))
}
