package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/protocol"
)

// Headers of the messages on the message stream.
const (
	hKind    = "Nc-Kind" // json, part, text or abort
	hClient  = "Nc-Client"
	hPrompt  = "Nc-Prompt"
	hAttempt = "Nc-Attempt" // the prompt's delivery attempt on the executing host
	hType    = "Nc-Type"    // a JSON message's type
	hPart    = "Nc-Part"    // a part's header (JSON of partHead)
	hChunk   = "Nc-Chunk"   // "i/n": this NATS message is chunk i of n of a part's data
	hID      = "Nc-Id"      // the chunks of one part share it
	hNode    = "Nc-Node"    // the node a progress text comes from
	outSubj  = "nodecast.out.m"
)

// partHead is an image part without its data.
type partHead struct {
	protocol.PartHeader
	Label string        `json:"label,omitempty"`
	Wire  protocol.Wire `json:"wire,omitempty"`
}

// relay is the executor's Broadcaster on a cluster host: it publishes what
// the executor sends to the message stream instead of the local hub. It is
// a TextBroadcaster too, so a node's progress text reaches a client whose
// socket another host holds.
type relay struct{ n *Node }

// Broadcaster returns the executor.Broadcaster that publishes to the
// cluster's message stream; every host's Serve hands the messages on to its
// own hub.
func (n *Node) Broadcaster() executor.Broadcaster { return relay{n} }

var _ executor.TextBroadcaster = relay{}

func (r relay) header(kind, clientID, promptID string) nats.Header {
	h := nats.Header{}
	h.Set(hKind, kind)
	h.Set(hClient, clientID)
	if promptID != "" {
		h.Set(hPrompt, promptID)
		r.n.mu.Lock()
		a := r.n.attempts[promptID]
		r.n.mu.Unlock()
		h.Set(hAttempt, strconv.FormatUint(a, 10))
	}
	return h
}

func (r relay) publish(m *nats.Msg) error {
	m.Subject = outSubj
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := r.n.js.PublishMsg(ctx, m)
	if err == nil {
		r.n.published.Add(1)
	}
	return err
}

func (r relay) SendJSON(clientID, typ string, data any) {
	body, err := json.Marshal(data)
	if err != nil {
		r.n.log.Error("cluster: message not sent: cannot marshal", "type", typ, "err", err)
		return
	}
	var p struct {
		PromptID string `json:"prompt_id"`
	}
	_ = json.Unmarshal(body, &p)
	h := r.header("json", clientID, p.PromptID)
	h.Set(hType, typ)
	if err := r.publish(&nats.Msg{Header: h, Data: body}); err != nil {
		r.n.log.Error("cluster: message not published", "type", typ, "prompt", p.PromptID, "err", err)
	}
}

// chunkSize is the data carried per NATS message: the server's max_payload
// less room for the headers, so parts fit whatever it is configured to.
func (r relay) chunkSize() int {
	return max(int(r.n.nc.MaxPayload())-8<<10, 1<<10)
}

func (r relay) Publish(clientID string, p *protocol.ImagePart) error {
	head, err := json.Marshal(partHead{PartHeader: p.PartHeader, Label: p.Label, Wire: p.Wire})
	if err != nil {
		return err
	}
	size := r.chunkSize()
	n := max((len(p.Data)+size-1)/size, 1)
	id := nuid.Next()
	for i := range n {
		h := r.header("part", clientID, p.PromptID)
		h.Set(hPart, string(head))
		h.Set(hID, id)
		h.Set(hChunk, strconv.Itoa(i)+"/"+strconv.Itoa(n))
		data := p.Data[min(i*size, len(p.Data)):min((i+1)*size, len(p.Data))]
		if err := r.publish(&nats.Msg{Header: h, Data: data}); err != nil {
			return fmt.Errorf("%w: image part %d of %s not published: %v", ErrCluster, p.Part, p.ImageID, err)
		}
		r.n.chunks.Add(1)
	}
	return nil
}

// SendProgressText publishes a node's progress text; the executor checked
// it against protocol's limit, which is far below any max_payload.
func (r relay) SendProgressText(clientID, nodeID, text string) {
	h := r.header("text", clientID, "")
	h.Set(hNode, nodeID)
	if err := r.publish(&nats.Msg{Header: h, Data: []byte(text)}); err != nil {
		r.n.log.Error("cluster: progress text not published", "node", nodeID, "err", err)
	}
}

func (r relay) AbortImages(promptID string) {
	if err := r.publish(&nats.Msg{Header: r.header("abort", "", promptID)}); err != nil {
		r.n.log.Error("cluster: abort not published", "prompt", promptID, "err", err)
	}
}

// imageKey is an image's deterministic identity.
type imageKey struct {
	node  string
	index int
}

type imageState struct {
	imageID  string
	got, all int
}

type promptState struct {
	attempt uint64
	done    bool // its terminal message passed
	images  map[imageKey]*imageState
	seen    time.Time
}

// receiver hands the message stream to the local hub, in order, dropping
// what a rerun repeats.
type receiver struct {
	n       *Node
	sink    executor.Broadcaster
	mu      sync.Mutex
	prompts map[string]*promptState
	chunks  map[string]*chunked
	count   int
}

type chunked struct {
	head partHead
	data []byte
	next int
}

func (n *Node) receive(ctx context.Context, sink executor.Broadcaster) error {
	rc := &receiver{n: n, sink: sink, prompts: map[string]*promptState{}, chunks: map[string]*chunked{}}
	cons, err := n.js.OrderedConsumer(ctx, OutStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{outSubj}, DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return fmt.Errorf("%w: consumer of %s: %v", ErrCluster, OutStream, err)
	}
	cc, err := cons.Consume(rc.handle)
	if err != nil {
		return fmt.Errorf("%w: consuming %s: %v", ErrCluster, OutStream, err)
	}
	n.onClose(cc.Stop)
	return nil
}

func (rc *receiver) handle(m jetstream.Msg) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if md, err := m.Metadata(); err == nil {
		rc.n.lastOutSeq.Store(md.Sequence.Stream + md.NumPending)
		rc.n.appliedOutSeq.Store(md.Sequence.Stream)
	}
	h := m.Headers()
	client, promptID := h.Get(hClient), h.Get(hPrompt)
	var st *promptState
	if promptID != "" {
		attempt, _ := strconv.ParseUint(h.Get(hAttempt), 10, 64)
		st = rc.prompts[promptID]
		if st == nil {
			st = &promptState{attempt: attempt, images: map[imageKey]*imageState{}}
			rc.prompts[promptID] = st
		}
		st.seen = time.Now()
		switch {
		case st.done, attempt < st.attempt:
			return // after the terminal message, or from a host that lost the prompt
		case attempt > st.attempt:
			// A rerun: images the old attempt left torn are discarded;
			// complete ones stay, so the rerun's copies are dropped.
			st.attempt = attempt
			rc.sink.AbortImages(promptID)
			for k, im := range st.images {
				if im.got < im.all {
					delete(st.images, k)
				}
			}
			for id, c := range rc.chunks {
				if c.head.PromptID == promptID {
					delete(rc.chunks, id)
				}
			}
		}
	}
	rc.n.relayed.Add(1)
	switch h.Get(hKind) {
	case "json":
		typ := h.Get(hType)
		if st != nil && typ == protocol.TypeExecuting {
			var d struct {
				Node *string `json:"node"`
			}
			if json.Unmarshal(m.Data(), &d) == nil && d.Node == nil {
				st.done, st.images = true, nil
			}
		}
		rc.sink.SendJSON(client, typ, json.RawMessage(m.Data()))
	case "text":
		if tb, ok := rc.sink.(executor.TextBroadcaster); ok {
			tb.SendProgressText(client, h.Get(hNode), string(m.Data()))
		}
	case "abort":
		rc.sink.AbortImages(promptID)
	case "part":
		rc.part(m, h, client, st)
	}
	rc.count++
	if rc.count%1024 == 0 {
		rc.prune()
	}
}

func (rc *receiver) part(m jetstream.Msg, h nats.Header, client string, st *promptState) {
	id := h.Get(hID)
	var i, n int
	if _, err := fmt.Sscanf(h.Get(hChunk), "%d/%d", &i, &n); err != nil || n < 1 || i >= n {
		rc.n.log.Error("cluster: bad chunk header", "chunk", h.Get(hChunk))
		return
	}
	c := rc.chunks[id]
	if c == nil {
		if i != 0 {
			return // its first chunks were before this host started consuming
		}
		c = &chunked{}
		if err := json.Unmarshal([]byte(h.Get(hPart)), &c.head); err != nil {
			rc.n.log.Error("cluster: bad part header", "err", err)
			return
		}
		rc.chunks[id] = c
	}
	if i != c.next {
		delete(rc.chunks, id)
		rc.n.log.Error("cluster: part chunks out of order; part dropped", "image", c.head.ImageID, "chunk", i, "want", c.next)
		return
	}
	c.data = append(c.data, m.Data()...)
	c.next++
	if c.next < n {
		return
	}
	delete(rc.chunks, id)
	p := &protocol.ImagePart{PartHeader: c.head.PartHeader, Label: c.head.Label, Wire: c.head.Wire, Data: c.data}
	if st != nil {
		k := imageKey{p.Node, p.Index}
		im := st.images[k]
		if im != nil && im.imageID != p.ImageID {
			return // the image was delivered whole by an earlier attempt
		}
		if im == nil {
			im = &imageState{imageID: p.ImageID, all: p.Parts}
			st.images[k] = im
		}
		im.got++
	}
	if err := rc.sink.Publish(client, p); err != nil {
		rc.n.log.Error("cluster: image part refused by the hub", "image", p.ImageID, "part", p.Part, "err", err)
	}
}

// prune forgets prompts not heard of for the stream's age bound.
func (rc *receiver) prune() {
	cut := time.Now().Add(-rc.n.opts.OutMaxAge)
	for id, st := range rc.prompts {
		if st.seen.Before(cut) {
			delete(rc.prompts, id)
		}
	}
}
