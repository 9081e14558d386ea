package hub

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nodecast/nodecast/host/stream"
	"github.com/nodecast/nodecast/protocol"
)

// The executor codes against its own Broadcaster interface
// (executor.Broadcaster: SendJSON, Publish, AbortImages), which *Hub
// satisfies; there is no second copy of it here.

// Options configures a Hub. The zero value works: every field's default is
// written on it.
type Options struct {
	// MessageLimit: every message the hub sends is strictly smaller, except
	// type 1 whole images (as in ComfyUI). PART and base64 parts that would not
	// fit are split again. 0 = protocol.DefaultMessageLimit.
	MessageLimit int
	// QueueBytes bounds each client's outbound queue; a client over it is
	// evicted with close code 1008. 0 = 256 MiB.
	QueueBytes int64
	// WriteTimeout is the deadline set before every write, per started
	// MessageLimit bytes of the message (a 20 MB type 1 image gets 5 times
	// as long as a 4 MB part). 0 = 10 s.
	WriteTimeout time.Duration
	// PingInterval is how often clients are pinged; a client that does not
	// answer within twice this is dropped. 0 = 30 s.
	PingInterval time.Duration
	// ReadLimit is the largest message a client may send. 0 = 1 MiB.
	ReadLimit int64
	// MaxPendingImageBytes bounds the bytes held for images whose parts have
	// not all arrived, over all images. 0 = 1 GiB.
	MaxPendingImageBytes int64
	// SkipHashCheck turns off the sha256 check of every complete image before
	// it is committed. false = check (a sender bug then fails its prompt
	// instead of every client's reassembly).
	SkipHashCheck bool
	// AllowedOrigins lists the Origin values accepted ("https://host:port",
	// or "*" for any). Empty = requests without Origin (non-browser clients)
	// and requests whose Origin's host equals the Host header.
	AllowedOrigins []string
	// AllowedHosts lists the accepted Host headers, a guard against DNS
	// rebinding; an entry without a port matches any port. Empty = any.
	AllowedHosts []string
	// Token, when set, must be sent as ?token= or "Authorization: Bearer".
	Token string
	// ServerFlags are merged into the feature_flags answer (for example
	// max_upload_size); supports_image_parts and max_message_size are the
	// hub's own and cannot be overridden.
	ServerFlags map[string]any
	// QueueRemaining reports the prompt queue length for status messages.
	// nil = 0.
	QueueRemaining func() int
	// Logger receives the hub's logs. nil = slog.Default().
	Logger *slog.Logger

	// OnDuplicateClientID says what a connection whose clientId is already
	// connected does: DuplicateReplace (default, as ComfyUI: the old socket
	// is closed with 4001) or DuplicateRefuse (HTTP 409).
	OnDuplicateClientID string
	// Sessions bounds what is kept for clients between reconnects.
	Sessions SessionOptions
}

// What a duplicate clientId does (Options.OnDuplicateClientID).
const (
	DuplicateReplace = "replace"
	DuplicateRefuse  = "refuse"
)

// SessionOptions bounds the messages kept per clientId: held messages for
// plain clients while no socket holds their id, and the replay window of
// resume clients. 0 = the default; a negative value turns a bound off.
type SessionOptions struct {
	HeldAge      time.Duration // default 60 s; also how long a detached plain session is kept
	HeldBytes    int64         // per clientId, default 64 MiB
	WindowAge    time.Duration // default 5 min; also how long a detached resume session is kept
	WindowBytes  int64         // per clientId, default 64 MiB
	WindowGlobal int64         // memory of every window together, a shared image counted once; default 1 GiB (held messages have their own cap of the same size)
	// Log is the resume window's store; nil = an in-memory stream.Memory
	// with the bounds above.
	Log stream.Log
}

// Defaults of Options.
const (
	DefaultQueueBytes           = 256 << 20
	DefaultWriteTimeout         = 10 * time.Second
	DefaultPingInterval         = 30 * time.Second
	DefaultReadLimit            = 1 << 20
	DefaultMaxPendingImageBytes = 1 << 30
	DefaultHeldAge              = 60 * time.Second
	DefaultHeldBytes            = 64 << 20
	DefaultWindowAge            = 5 * time.Minute
	DefaultWindowBytes          = 64 << 20
	DefaultWindowGlobal         = 1 << 30
)

// Close codes the hub sends.
const (
	CloseSlowClient   = websocket.ClosePolicyViolation         // 1008: queue over QueueBytes
	CloseShuttingDown = websocket.CloseGoingAway               // 1001: Close was called
	CloseReplaced     = protocol.CloseReplaced                 // 4001: a new connection took the clientId
	CloseInvalidUTF8  = websocket.CloseInvalidFramePayloadData // 1007: a text message that is not UTF-8
)

func (o Options) withDefaults() Options {
	if o.MessageLimit <= 0 {
		o.MessageLimit = protocol.DefaultMessageLimit
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = DefaultQueueBytes
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.ReadLimit <= 0 {
		o.ReadLimit = DefaultReadLimit
	}
	if o.MaxPendingImageBytes <= 0 {
		o.MaxPendingImageBytes = DefaultMaxPendingImageBytes
	}
	if o.QueueRemaining == nil {
		o.QueueRemaining = func() int { return 0 }
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.OnDuplicateClientID == "" {
		o.OnDuplicateClientID = DuplicateReplace
	}
	s := &o.Sessions
	s.HeldAge = orDefault(s.HeldAge, DefaultHeldAge)
	s.HeldBytes = orDefault(s.HeldBytes, DefaultHeldBytes)
	s.WindowAge = orDefault(s.WindowAge, DefaultWindowAge)
	s.WindowBytes = orDefault(s.WindowBytes, DefaultWindowBytes)
	s.WindowGlobal = orDefault(s.WindowGlobal, DefaultWindowGlobal)
	return o
}

// orDefault returns def for 0, 0 (no bound) for negative values, v otherwise.
func orDefault[T ~int64](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// Hub owns the client sessions and delivers messages and images to them.
// Its methods are safe for concurrent use.
type Hub struct {
	opts     Options
	log      *slog.Logger
	flags    protocol.FeatureFlags // the server's feature flags
	flagsMsg []byte                // the feature_flags answer, marshalled once
	upgrader websocket.Upgrader
	window   stream.Log // resume clients' streams
	held     stream.Log // plain clients' messages while no socket holds their id

	// commitMu serializes commits (SendJSON and complete images) and every
	// change of who receives them (attach, detach, resume), so that every
	// client sees messages in one order and a message goes either to a
	// socket or to the held/window log, never to neither.
	commitMu sync.Mutex

	mu           sync.Mutex
	closed       bool
	sessions     map[string]*session // by clientId
	executing    map[string][]byte   // clientId ("" = broadcast) -> last "executing" with a node
	pending      map[string]*pendingImage
	pendingBytes int64
	dropped      protocol.FinishedImages // images dropped for errors, so their later parts are refused
	writers      sync.WaitGroup
	stopJanitor  chan struct{}
	janitorDone  chan struct{}

	evictions, committed, droppedImages, refused          atomic.Uint64
	takeovers, writeTimeouts, invalidUTF8, truncated      atomic.Uint64
	resumed, resumeFailed, heldDelivered, expiredSessions atomic.Uint64
}

// New returns a hub with opts; see Options for the defaults.
func New(opts Options) *Hub {
	opts = opts.withDefaults()
	h := &Hub{
		opts:        opts,
		log:         opts.Logger,
		sessions:    make(map[string]*session),
		executing:   make(map[string][]byte),
		pending:     make(map[string]*pendingImage),
		stopJanitor: make(chan struct{}),
		janitorDone: make(chan struct{}),
	}
	so := opts.Sessions
	h.window = so.Log
	if h.window == nil {
		h.window = stream.NewMemory(stream.MemoryOptions{MaxBytes: so.WindowBytes, MaxAge: so.WindowAge, GlobalBytes: so.WindowGlobal})
	}
	h.held = stream.NewMemory(stream.MemoryOptions{MaxBytes: so.HeldBytes, MaxAge: so.HeldAge, GlobalBytes: so.WindowGlobal})
	h.flags = protocol.FeatureFlags{protocol.FlagPreviewMetadata: true}
	for k, v := range opts.ServerFlags {
		h.flags[k] = v
	}
	h.flags[protocol.FlagImageParts] = true
	h.flags[protocol.FlagResume] = true
	h.flags[protocol.FlagMaxMessageSize] = opts.MessageLimit
	msg, err := protocol.Marshal(protocol.TypeFeatureFlags, h.flags)
	if err != nil {
		// ServerFlags held a value JSON cannot carry: answer with our own flags.
		h.log.Error("hub: server feature flags are not JSON; sending the hub's own", "err", err)
		h.flags = protocol.FeatureFlags{protocol.FlagPreviewMetadata: true, protocol.FlagImageParts: true,
			protocol.FlagResume: true, protocol.FlagMaxMessageSize: opts.MessageLimit}
		msg, _ = protocol.Marshal(protocol.TypeFeatureFlags, h.flags)
	}
	h.flagsMsg = msg
	h.upgrader = websocket.Upgrader{
		ReadBufferSize:  4096,
		WriteBufferSize: 64 << 10,
		// ServeHTTP checks Origin itself, before reserving the client id.
		CheckOrigin: func(*http.Request) bool { return true },
		Error:       h.upgradeError,
	}
	go h.janitor()
	return h
}

// Stats are the hub's counters.
type Stats struct {
	Clients       int    // connected clients
	Evictions     uint64 // clients evicted for exceeding QueueBytes
	Refused       uint64 // connections refused before upgrading
	PendingImages int    // images waiting for parts
	PendingBytes  int64  // bytes held for them
	Committed     uint64 // images delivered
	Dropped       uint64 // images dropped for bad parts, limits or AbortImages

	Sessions        int    // clientIds known, connected or not
	Detached        int    // of them, held for a client that may reconnect
	Takeovers       uint64 // connections closed with 4001 because a new one took their clientId
	WriteTimeouts   uint64 // clients dropped because a write timed out
	InvalidUTF8     uint64 // clients closed with 1007 for a text message that is not UTF-8
	Truncated       uint64 // JSON messages shortened to fit the message limit
	Resumed         uint64 // resumes with recovered:true
	ResumeFailed    uint64 // resumes with recovered:false
	HeldDelivered   uint64 // held messages delivered to a reconnecting plain client
	ExpiredSessions uint64 // detached sessions forgotten after their age bound
	Window          stream.Stats
	Held            stream.Stats
}

// Stats returns the current counters.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	s := Stats{PendingImages: len(h.pending), PendingBytes: h.pendingBytes, Sessions: len(h.sessions)}
	for _, ss := range h.sessions {
		if ss.c != nil {
			s.Clients++
		} else {
			s.Detached++
		}
	}
	h.mu.Unlock()
	s.Evictions = h.evictions.Load()
	s.Refused = h.refused.Load()
	s.Committed = h.committed.Load()
	s.Dropped = h.droppedImages.Load()
	s.Takeovers = h.takeovers.Load()
	s.WriteTimeouts = h.writeTimeouts.Load()
	s.InvalidUTF8 = h.invalidUTF8.Load()
	s.Truncated = h.truncated.Load()
	s.Resumed = h.resumed.Load()
	s.ResumeFailed = h.resumeFailed.Load()
	s.HeldDelivered = h.heldDelivered.Load()
	s.ExpiredSessions = h.expiredSessions.Load()
	s.Window = h.window.Stats()
	s.Held = h.held.Stats()
	return s
}

// ClientInfo describes one connected client.
type ClientInfo struct {
	ID         string
	RemoteAddr string
	Flags      protocol.FeatureFlags // as the client sent them; nil if it sent none
	Queued     int64                 // bytes waiting to be written
	Resume     bool                  // the client negotiated supports_resume
}

// Clients lists the connected clients, sorted by id.
func (h *Hub) Clients() []ClientInfo {
	var out []ClientInfo
	h.mu.Lock()
	for _, s := range h.sessions {
		if s.c == nil {
			continue
		}
		c := s.c
		c.mu.Lock()
		out = append(out, ClientInfo{ID: s.id, RemoteAddr: c.remote, Flags: copyFlags(s.flags), Queued: c.queued, Resume: s.resume})
		c.mu.Unlock()
	}
	h.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Flags returns the feature flags clientID sent, and whether it is connected.
func (h *Hub) Flags(clientID string) (protocol.FeatureFlags, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sessions[clientID]
	if s == nil || s.c == nil || clientID == "" {
		return nil, false
	}
	return copyFlags(s.flags), true
}

// ServerFlags returns the flags the hub answers feature_flags with.
func (h *Hub) ServerFlags() protocol.FeatureFlags { return copyFlags(h.flags) }

func copyFlags(f protocol.FeatureFlags) protocol.FeatureFlags {
	if f == nil {
		return nil
	}
	out := make(protocol.FeatureFlags, len(f))
	for k, v := range f {
		out[k] = v
	}
	return out
}

// seqRoom is what a resume client's seq adds to a message at most:
// `"seq":18446744073709551615,` is 27 bytes. Every message is framed this
// much under the limit, so that adding the seq never pushes it over.
const seqRoom = 32

// limit is the size every framed message must stay under before its seq.
func (h *Hub) limit() int { return h.opts.MessageLimit - seqRoom }

// SendJSON sends {"type":typ,"data":data} to clientID, or to every client when
// clientID is "". The message is marshalled once. A message that is not
// smaller than MessageLimit is shortened to fit (long strings cut, and
// "truncated": true in its data), never dropped: a stock client would drop
// the connection on it. A message that cannot be marshalled is dropped with
// an error log.
func (h *Hub) SendJSON(clientID, typ string, data any) {
	msg, err := protocol.Marshal(typ, data)
	if err != nil {
		h.log.Error("hub: message not sent: cannot marshal", "type", typ, "client", clientID, "err", err)
		return
	}
	if len(msg) >= h.limit() {
		short, err := shorten(msg, h.limit()-1)
		if err != nil {
			h.log.Error("hub: message not sent: over the message limit and cannot be shortened", "type", typ,
				"client", clientID, "size", len(msg), "limit", h.opts.MessageLimit, "err", err)
			return
		}
		h.truncated.Add(1)
		h.log.Warn("hub: message over the limit shortened", "type", typ, "client", clientID,
			"size", len(msg), "shortened", len(short), "limit", h.opts.MessageLimit)
		msg = short
	}
	b := &batch{frames: []stream.Message{{Body: msg}}, size: int64(len(msg))}
	h.commitMu.Lock()
	defer h.commitMu.Unlock()
	if typ == protocol.TypeExecuting {
		h.noteExecuting(clientID, msg)
	}
	h.deliverLocked(clientID, func(target) shape { return shapePART }, func(shape) (*batch, error) { return b, nil })
}

// noteExecuting remembers the running node of clientID's prompt, so that a
// client that connects while it runs is told, as ComfyUI does.
func (h *Hub) noteExecuting(clientID string, msg []byte) {
	var m struct {
		Data struct {
			Node *string `json:"node"`
		} `json:"data"`
	}
	json.Unmarshal(msg, &m)
	h.mu.Lock()
	if m.Data.Node != nil {
		h.executing[clientID] = msg
	} else {
		delete(h.executing, clientID)
	}
	h.mu.Unlock()
}

// target is one session a commit goes to, as it was when the commit began.
type target struct {
	s       *session
	c       *client // live socket, nil when the session is detached or waiting
	resume  bool
	parts   bool // receives PART frames
	preview bool // sent supports_preview_metadata: type 4 where others get type 1
}

// targetsLocked returns the sessions a message for clientID goes to ("" =
// every session, detached ones included: a broadcast is part of each
// client's stream). commitMu must be held.
func (h *Hub) targetsLocked(clientID string) []target {
	h.mu.Lock()
	defer h.mu.Unlock()
	add := func(out []target, s *session) []target {
		t := target{s: s, resume: s.resume}
		if s.c != nil && !s.waiting {
			t.c = s.c
		}
		t.parts = t.resume || s.parts
		t.preview = s.preview
		return append(out, t)
	}
	if clientID != "" {
		if s := h.sessions[clientID]; s != nil {
			return add(nil, s)
		}
		return nil
	}
	out := make([]target, 0, len(h.sessions))
	for _, s := range h.sessions {
		out = add(out, s)
	}
	return out
}

// deliverLocked queues one commit to the sessions of clientID: framed by
// frames(shape) once per shape (shapeOf picks a client's), numbered for resume clients and appended to
// their window, queued to live sockets, held for detached plain clients.
// commitMu must be held.
func (h *Hub) deliverLocked(clientID string, shapeOf func(target) shape, frames func(shape) (*batch, error)) error {
	targets := h.targetsLocked(clientID)
	var batches [numShapes]*batch
	get := func(s shape) (*batch, error) {
		if batches[s] == nil {
			b, err := frames(s)
			if err != nil {
				return nil, err
			}
			batches[s] = b
		}
		return batches[s], nil
	}
	shapes := make([]shape, len(targets))
	for i, t := range targets { // frame everything first: an error sends nothing
		shapes[i] = shapeOf(t)
		if _, err := get(shapes[i]); err != nil {
			return err
		}
	}
	for i, t := range targets {
		b := batches[shapes[i]]
		switch {
		case t.resume:
			_, last := h.window.Open(t.s.id)
			entries := make([]stream.Entry, len(b.frames))
			nb := &batch{frames: make([]stream.Message, len(b.frames)), size: 0}
			for i, f := range b.frames {
				m := withSeq(f, last+1+uint64(i))
				entries[i] = stream.Entry{Seq: last + 1 + uint64(i), Message: m}
				nb.frames[i] = m
				nb.size += int64(m.Len())
			}
			if err := h.window.Append(t.s.id, entries); err != nil {
				h.log.Error("hub: window append failed", "client", t.s.id, "err", err)
			}
			if t.c != nil {
				t.c.enqueue(nb)
			}
		case t.c != nil:
			t.c.enqueue(b)
		default:
			_, last := h.held.Open(t.s.id)
			entries := make([]stream.Entry, len(b.frames))
			for i, f := range b.frames {
				entries[i] = stream.Entry{Seq: last + 1 + uint64(i), Message: f}
			}
			if err := h.held.Append(t.s.id, entries); err != nil {
				h.log.Error("hub: held append failed", "client", t.s.id, "err", err)
			}
		}
	}
	return nil
}

// writeTimeout is how long writing a message of n bytes may take.
func (h *Hub) writeTimeout(n int) time.Duration {
	return h.opts.WriteTimeout * time.Duration(1+n/h.opts.MessageLimit)
}

// Close closes every connection with 1001 (going away) after writing what is
// already queued, each write bounded by WriteTimeout, and waits for the
// writers to finish. Later connections are refused with 503.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	var open []*client
	for _, s := range h.sessions {
		if s.c != nil {
			open = append(open, s.c)
		}
	}
	h.pending = make(map[string]*pendingImage)
	h.pendingBytes = 0
	h.mu.Unlock()
	close(h.stopJanitor)
	<-h.janitorDone
	deadline := time.Now().Add(h.opts.WriteTimeout)
	for _, c := range open {
		c.shutdown(CloseShuttingDown, "server shutting down", deadline)
	}
	h.writers.Wait()
	return nil
}
