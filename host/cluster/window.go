package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nodecast/nodecast/host/stream"
	"github.com/nodecast/nodecast/protocol"
)

// The resume windows: one JetStream stream, a subject per client; the
// epoch and the host that holds the client's socket in a KV bucket.
const (
	WindowStream = "NODECAST_WINDOWS"
	EpochBucket  = "nodecast_epochs"
	winPrefix    = "nodecast.win."
	hSeq         = "Nc-Seq"
	hEpoch       = "Nc-Epoch"
	hBinary      = "Nc-Binary"
	hHeadLen     = "Nc-Head"
	hHost        = "Nc-Host"
)

// Window is stream.Log on JetStream: a client's resume window is readable
// from every host, so a client that drops from host A resumes on host B.
// The host where a client last asked to resume owns its window (Claim);
// other hosts' appends for it are dropped, and only the owner deletes it.
// Bounds: the stream's age and bytes over every client (no per-client byte
// bound: JetStream has none per subject).
type Window struct {
	n      *Node
	st     jetstream.Stream
	kv     jetstream.KeyValue
	mu     sync.Mutex
	logs   map[string]*winLog
	appErr uint64
}

type winLog struct {
	epoch   string
	owner   string
	last    uint64 // the client's seq of its last entry
	subjSeq uint64 // the stream sequence of its last message
}

var _ stream.Log = (*Window)(nil)

// Window makes (or opens) the windows' stream, bounded by maxAge and
// maxBytes, and starts following ownership changes.
func (n *Node) Window(maxAge time.Duration, maxBytes int64) (*Window, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := jetstream.StreamConfig{Name: WindowStream, Subjects: []string{winPrefix + ">"}, Storage: jetstream.FileStorage,
		MaxAge: maxAge, Discard: jetstream.DiscardOld}
	if maxBytes > 0 {
		cfg.MaxBytes = maxBytes
	}
	st, err := n.js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: stream %s: %v", ErrCluster, WindowStream, err)
	}
	kv, err := n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: EpochBucket, Storage: jetstream.FileStorage, TTL: maxAge})
	if err != nil {
		return nil, fmt.Errorf("%w: KV %s: %v", ErrCluster, EpochBucket, err)
	}
	w := &Window{n: n, st: st, kv: kv, logs: map[string]*winLog{}}
	wctx, stop := context.WithCancel(context.Background())
	n.onClose(stop)
	watch, err := kv.WatchAll(wctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("%w: watching %s: %v", ErrCluster, EpochBucket, err)
	}
	go func() {
		for e := range watch.Updates() {
			if e == nil {
				continue
			}
			w.mu.Lock()
			for id, l := range w.logs {
				if kvKey(id) != e.Key() {
					continue
				}
				epoch, owner, _ := strings.Cut(string(e.Value()), " ")
				if e.Operation() != jetstream.KeyValuePut || epoch != l.epoch {
					delete(w.logs, id) // read again when next used
				} else {
					l.owner = owner
				}
			}
			w.mu.Unlock()
		}
	}()
	return w, nil
}

func winSubject(clientID string) string { return winPrefix + kvKey(clientID) }

// load reads clientID's epoch and last entry; claim makes this host its
// owner. w.mu is held.
func (w *Window) load(clientID string, claim bool) *winLog {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l := &winLog{}
	key := kvKey(clientID)
	if e, err := w.kv.Get(ctx, key); err == nil {
		l.epoch, l.owner, _ = strings.Cut(string(e.Value()), " ")
	}
	if l.epoch == "" {
		l.epoch, l.owner, claim = protocol.RandomHex(8), w.n.id, true
		if _, err := w.kv.Create(ctx, key, []byte(l.epoch+" "+w.n.id)); errors.Is(err, jetstream.ErrKeyExists) {
			return w.load(clientID, claim)
		}
	}
	if m, err := w.st.GetLastMsgForSubject(ctx, winSubject(clientID)); err == nil {
		l.subjSeq = m.Sequence
		if m.Header.Get(hEpoch) == l.epoch {
			l.last, _ = strconv.ParseUint(m.Header.Get(hSeq), 10, 64)
		}
	}
	if claim && l.owner != w.n.id {
		l.owner = w.n.id
		if _, err := w.kv.Put(ctx, key, []byte(l.epoch+" "+w.n.id)); err != nil {
			w.n.log.Warn("cluster: resume window not claimed", "client", clientID, "err", err)
		}
	}
	w.logs[clientID] = l
	return l
}

// Claim makes this host the owner of clientID's window: the hub calls it
// when a socket asks to resume here.
func (w *Window) Claim(clientID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.load(clientID, true)
}

// Open implements stream.Log.
func (w *Window) Open(clientID string) (string, uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.logs[clientID]
	if l == nil {
		l = w.load(clientID, false)
	}
	return l.epoch, l.last
}

// Append implements stream.Log. Entries of a window another host owns are
// dropped: that host holds the socket and appends them itself.
func (w *Window) Append(clientID string, entries []stream.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.logs[clientID]
	if l == nil {
		l = w.load(clientID, false)
	}
	if l.owner != w.n.id {
		return nil
	}
	for i, e := range entries {
		if e.Seq != l.last+1+uint64(i) {
			return &stream.SeqError{ClientID: clientID, Got: e.Seq, Last: l.last + uint64(i)}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	size := relay{w.n}.chunkSize()
	for _, e := range entries {
		data := make([]byte, 0, e.Len())
		data = append(append(data, e.Head...), e.Body...)
		parts := max((len(data)+size-1)/size, 1)
		for i := range parts {
			h := nats.Header{}
			h.Set(hSeq, strconv.FormatUint(e.Seq, 10))
			h.Set(hEpoch, l.epoch)
			h.Set(hHost, w.n.id)
			h.Set(hHeadLen, strconv.Itoa(len(e.Head)))
			h.Set(hChunk, strconv.Itoa(i)+"/"+strconv.Itoa(parts))
			if e.Binary {
				h.Set(hBinary, "1")
			}
			var opts []jetstream.PublishOpt
			if l.subjSeq > 0 {
				opts = append(opts, jetstream.WithExpectLastSequencePerSubject(l.subjSeq))
			}
			ack, err := w.n.js.PublishMsg(ctx, &nats.Msg{Subject: winSubject(clientID), Header: h,
				Data: data[min(i*size, len(data)):min((i+1)*size, len(data))]}, opts...)
			if err != nil {
				w.appErr++
				delete(w.logs, clientID) // read again on the next call
				return fmt.Errorf("%w: window of %q: %v", ErrCluster, clientID, err)
			}
			l.subjSeq = ack.Sequence
		}
		l.last = e.Seq
	}
	return nil
}

// Read implements stream.Log.
func (w *Window) Read(clientID, epoch string, after uint64) ([]stream.Entry, error) {
	w.mu.Lock()
	l := w.load(clientID, false)
	cur, last := l.epoch, l.last
	w.mu.Unlock()
	if epoch != cur {
		return nil, &stream.EpochError{ClientID: clientID, Got: epoch, Epoch: cur}
	}
	if after > last {
		return nil, &stream.SeqError{ClientID: clientID, Got: after, Last: last}
	}
	if after == last {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cons, err := w.n.js.OrderedConsumer(ctx, WindowStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{winSubject(clientID)}, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("%w: reading the window of %q: %v", ErrCluster, clientID, err)
	}
	var out []stream.Entry
	var cur0 []byte
	first := uint64(0)
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			return nil, fmt.Errorf("%w: reading the window of %q: %v", ErrCluster, clientID, err)
		}
		h := m.Headers()
		seq, _ := strconv.ParseUint(h.Get(hSeq), 10, 64)
		var i, n int
		fmt.Sscanf(h.Get(hChunk), "%d/%d", &i, &n)
		if h.Get(hEpoch) == epoch {
			if first == 0 && i == 0 {
				first = seq
			}
			if seq > after && first != 0 {
				if i == 0 {
					cur0 = nil
				}
				cur0 = append(cur0, m.Data()...)
				if i == n-1 {
					hl, _ := strconv.Atoi(h.Get(hHeadLen))
					hl = min(hl, len(cur0))
					out = append(out, stream.Entry{Seq: seq, Message: stream.Message{Binary: h.Get(hBinary) == "1",
						Head: cur0[:hl:hl], Body: cur0[hl:]}})
					cur0 = nil
				}
			}
		}
		md, _ := m.Metadata()
		if (seq >= last && i == n-1) || md == nil || md.NumPending == 0 {
			break
		}
	}
	if first == 0 || first > after+1 {
		return nil, &stream.GapError{ClientID: clientID, After: after, First: max(first, 1), Last: last}
	}
	return out, nil
}

// Delete implements stream.Log: the owner purges the window; another host
// only forgets what it cached.
func (w *Window) Delete(clientID string) {
	w.mu.Lock()
	l := w.logs[clientID]
	delete(w.logs, clientID)
	w.mu.Unlock()
	if l == nil || l.owner != w.n.id {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = w.st.Purge(ctx, jetstream.WithPurgeSubject(winSubject(clientID)))
	_ = w.kv.Delete(ctx, kvKey(clientID))
}

// Expire implements stream.Log: JetStream expires entries by MaxAge itself.
func (w *Window) Expire() {}

// Stats implements stream.Log: the windows this host caches.
func (w *Window) Stats() stream.Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return stream.Stats{Logs: len(w.logs)}
}
