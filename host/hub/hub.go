package hub

import (
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nodecast/nodecast/protocol"
)

// Broadcaster is what the executor needs from a hub. *Hub is the in-memory
// implementation; a NATS-backed one can replace it without touching callers.
type Broadcaster interface {
	// SendJSON sends {"type":typ,"data":data} to clientID ("" = every client).
	SendJSON(clientID, typ string, data any)
	// Publish hands over one part of an encoded image for clientID ("" = every
	// client); the image is delivered when its last part arrives.
	Publish(clientID string, p *protocol.ImagePart) error
	// AbortImages drops the incomplete images of a prompt that failed.
	AbortImages(promptID string)
}

var _ Broadcaster = (*Hub)(nil)

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
}

// Defaults of Options.
const (
	DefaultQueueBytes           = 256 << 20
	DefaultWriteTimeout         = 10 * time.Second
	DefaultPingInterval         = 30 * time.Second
	DefaultReadLimit            = 1 << 20
	DefaultMaxPendingImageBytes = 1 << 30
)

// Close codes the hub sends.
const (
	CloseSlowClient   = websocket.ClosePolicyViolation // 1008: queue over QueueBytes
	CloseShuttingDown = websocket.CloseGoingAway       // 1001: Close was called
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
	return o
}

// Hub owns the connected clients and delivers messages and images to them.
// Its methods are safe for concurrent use.
type Hub struct {
	opts     Options
	log      *slog.Logger
	flags    protocol.FeatureFlags // the server's feature flags
	flagsMsg []byte                // the feature_flags answer, marshalled once
	upgrader websocket.Upgrader

	// commitMu serializes commits (SendJSON and complete images), so that
	// every client sees messages in one order.
	commitMu sync.Mutex

	mu           sync.Mutex
	closed       bool
	clients      map[string]*client // by id; includes ids reserved during upgrade
	pending      map[string]*pendingImage
	pendingBytes int64
	dropped      map[string]string // image id -> prompt id of images dropped for errors
	droppedOrder []string          // oldest first, to bound dropped
	writers      sync.WaitGroup

	evictions, committed, droppedImages, refused atomic.Uint64
}

// New returns a hub with opts; see Options for the defaults.
func New(opts Options) *Hub {
	opts = opts.withDefaults()
	h := &Hub{
		opts:    opts,
		log:     opts.Logger,
		clients: make(map[string]*client),
		pending: make(map[string]*pendingImage),
		dropped: make(map[string]string),
	}
	h.flags = protocol.FeatureFlags{protocol.FlagPreviewMetadata: true}
	for k, v := range opts.ServerFlags {
		h.flags[k] = v
	}
	h.flags[protocol.FlagImageParts] = true
	h.flags[protocol.FlagMaxMessageSize] = opts.MessageLimit
	msg, err := protocol.Marshal(protocol.TypeFeatureFlags, h.flags)
	if err != nil {
		// ServerFlags held a value JSON cannot carry: answer with our own flags.
		h.log.Error("hub: server feature flags are not JSON; sending the hub's own", "err", err)
		h.flags = protocol.FeatureFlags{protocol.FlagPreviewMetadata: true, protocol.FlagImageParts: true,
			protocol.FlagMaxMessageSize: opts.MessageLimit}
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
}

// Stats returns the current counters.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	s := Stats{PendingImages: len(h.pending), PendingBytes: h.pendingBytes}
	for _, c := range h.clients {
		if c.conn != nil {
			s.Clients++
		}
	}
	h.mu.Unlock()
	s.Evictions = h.evictions.Load()
	s.Refused = h.refused.Load()
	s.Committed = h.committed.Load()
	s.Dropped = h.droppedImages.Load()
	return s
}

// ClientInfo describes one connected client.
type ClientInfo struct {
	ID         string
	RemoteAddr string
	Flags      protocol.FeatureFlags // as the client sent them; nil if it sent none
	Queued     int64                 // bytes waiting to be written
}

// Clients lists the connected clients, sorted by id.
func (h *Hub) Clients() []ClientInfo {
	var out []ClientInfo
	for _, c := range h.targets("") {
		c.mu.Lock()
		out = append(out, ClientInfo{ID: c.id, RemoteAddr: c.remote, Flags: copyFlags(c.flags), Queued: c.queued})
		c.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Flags returns the feature flags clientID sent, and whether it is connected.
func (h *Hub) Flags(clientID string) (protocol.FeatureFlags, bool) {
	t := h.targets(clientID)
	if len(t) == 0 || clientID == "" {
		return nil, false
	}
	c := t[0]
	c.mu.Lock()
	defer c.mu.Unlock()
	return copyFlags(c.flags), true
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

// SendJSON sends {"type":typ,"data":data} to clientID, or to every client when
// clientID is "". The message is marshalled once. A message that cannot be
// marshalled or is not smaller than MessageLimit is dropped with an error log,
// since a stock client would drop the connection on it.
func (h *Hub) SendJSON(clientID, typ string, data any) {
	msg, err := protocol.Marshal(typ, data)
	if err != nil {
		h.log.Error("hub: message not sent: cannot marshal", "type", typ, "client", clientID, "err", err)
		return
	}
	if len(msg) >= h.opts.MessageLimit {
		h.log.Error("hub: message not sent: over the message limit", "type", typ, "client", clientID,
			"size", len(msg), "limit", h.opts.MessageLimit)
		return
	}
	b := &batch{frames: []frame{{kind: websocket.TextMessage, data: msg}}, size: int64(len(msg))}
	h.commitMu.Lock()
	defer h.commitMu.Unlock()
	for _, c := range h.targets(clientID) {
		c.enqueue(b)
	}
}

// targets returns the connected clients that a message for clientID goes to.
func (h *Hub) targets(clientID string) []*client {
	h.mu.Lock()
	defer h.mu.Unlock()
	if clientID != "" {
		if c := h.clients[clientID]; c != nil && c.conn != nil {
			return []*client{c}
		}
		return nil
	}
	out := make([]*client, 0, len(h.clients))
	for _, c := range h.clients {
		if c.conn != nil {
			out = append(out, c)
		}
	}
	return out
}

// writeTimeout is how long writing a message of n bytes may take.
func (h *Hub) writeTimeout(n int) time.Duration {
	return h.opts.WriteTimeout * time.Duration(1+n/h.opts.MessageLimit)
}

// forget removes c from the client set, freeing its id.
func (h *Hub) forget(c *client) {
	h.mu.Lock()
	if h.clients[c.id] == c {
		delete(h.clients, c.id)
	}
	h.mu.Unlock()
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
	for _, c := range h.clients {
		if c.conn != nil {
			open = append(open, c)
		}
	}
	h.pending = make(map[string]*pendingImage)
	h.pendingBytes = 0
	h.mu.Unlock()
	deadline := time.Now().Add(h.opts.WriteTimeout)
	for _, c := range open {
		c.shutdown(CloseShuttingDown, "server shutting down", deadline)
	}
	h.writers.Wait()
	return nil
}
