package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// MinServerVersion is the oldest nats-server this package works with: the
// one Debian 12 ships. Everything used (WorkQueue streams, pull consumers,
// ordered consumers, consumer creation with a filter subject) exists there.
const MinServerVersion = "2.9.0"

// Names of the JetStream streams and subjects.
const (
	PromptStream    = "NODECAST_PROMPTS"
	PromptSubject   = "nodecast.prompts"
	OutStream       = "NODECAST_OUT"
	OutSubjects     = "nodecast.out.>"
	InterruptSubj   = "nodecast.control.interrupt"
	workersConsumer = "nodecast-workers"
)

// ErrCluster is wrapped by every error of this package.
var ErrCluster = errors.New("cluster")

// Options configures a Node.
type Options struct {
	// URL of the NATS server ("nats://127.0.0.1:4222"); "" with Embed.
	URL string
	// Embed, when set, runs a nats-server with JetStream in this process,
	// listening on this address ("127.0.0.1:4222"; port 0 = any free port).
	Embed string
	// StoreDir is the embedded server's JetStream store. "" = "./nats".
	StoreDir string
	// Name identifies this host in NATS and in logs. "" = host name + pid.
	Name string
	// Workers is how many prompts this host runs at once from the shared
	// queue. 0 = 1; negative = none (the host only accepts and delivers).
	Workers int
	// AckWait is how long a prompt taken by a host may go without an ack
	// or in-progress ack before JetStream gives it to another host.
	// 0 = 30 s. A running prompt sends in-progress acks every AckWait/3.
	AckWait time.Duration
	// OutMaxAge and OutMaxBytes bound the message stream. 0 = 10 min, 1 GiB.
	OutMaxAge   time.Duration
	OutMaxBytes int64
	// ConnectTimeout bounds the first connection. 0 = 5 s.
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// Node is one host's membership in the cluster.
type Node struct {
	opts   Options
	log    *slog.Logger
	srv    *server.Server // the embedded server, or nil
	nc     *nats.Conn
	url    string // the server's URL, without credentials
	js     jetstream.JetStream
	qkv    jetstream.KeyValue    // the cluster's queue
	hkv    jetstream.KeyValue    // the cluster's history
	files  jetstream.ObjectStore // uploads and outputs
	bodies jetstream.ObjectStore // prompts over max_payload
	id     string                // this node, in the files it shares
	dirs   map[string]string     // this host's folders by type (input, output, temp)

	mu       sync.Mutex
	attempts map[string]uint64   // prompt id -> delivery attempt running here
	queue    map[string]queueRec // the queue bucket, by key
	// doneKeys holds the keys whose history arrived: the two buckets reach a
	// host separately, and as in ComfyUI no host may show a prompt in both
	// /history and /queue, so a queue record that arrives after its history
	// is ignored. A key leaves with its queue record's delete or its history.
	doneKeys map[string]bool
	closers  []func()

	accepted, ran, redelivered, relayed atomic.Uint64
	published, chunks                   atomic.Uint64
	lastOutSeq, appliedOutSeq           atomic.Uint64
}

// Start connects to the cluster (running the embedded server first when
// Options.Embed is set) and makes its streams. A server that cannot be
// reached, or one without JetStream or older than MinServerVersion, is an
// error that says so.
func Start(ctx context.Context, opts Options) (*Node, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.AckWait <= 0 {
		opts.AckWait = 30 * time.Second
	}
	if opts.OutMaxAge <= 0 {
		opts.OutMaxAge = 10 * time.Minute
	}
	if opts.OutMaxBytes <= 0 {
		opts.OutMaxBytes = 1 << 30
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	if opts.Workers == 0 {
		opts.Workers = 1
	}
	n := &Node{id: nuid.Next(), opts: opts, log: opts.Logger, attempts: map[string]uint64{}, queue: map[string]queueRec{}, doneKeys: map[string]bool{}}
	url := opts.URL
	if opts.Embed != "" {
		srv, err := embed(opts.Embed, opts.StoreDir)
		if err != nil {
			return nil, err
		}
		n.srv = srv
		url = srv.ClientURL()
	}
	if url == "" {
		return nil, fmt.Errorf("%w: no NATS URL (--nats URL or --nats-embed ADDR)", ErrCluster)
	}
	nc, err := nats.Connect(url,
		nats.Name(opts.Name),
		nats.Timeout(opts.ConnectTimeout),
		nats.MaxReconnects(-1), // a host keeps its sockets and reconnects by itself
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectBufSize(-1), // while disconnected, publishing fails at once instead of buffering
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // closed by Close
			}
			n.log.Warn("cluster: NATS connection lost; prompts are refused with 503 until it is back", "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { n.log.Info("cluster: NATS reconnected", "url", c.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		n.close()
		return nil, fmt.Errorf("%w: cannot connect to NATS at %s: %v", ErrCluster, redact(url), err)
	}
	n.nc, n.url = nc, redact(url)
	if err := checkVersion(nc.ConnectedServerVersion()); err != nil {
		n.close()
		return nil, err
	}
	n.js, err = jetstream.New(nc)
	if err != nil {
		n.close()
		return nil, fmt.Errorf("%w: %v", ErrCluster, err)
	}
	if err := n.makeStreams(ctx); err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

// embed runs a nats-server with JetStream on addr, its store in dir.
func embed(addr, dir string) (*server.Server, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: --nats-embed %q: want host:port", ErrCluster, addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return nil, fmt.Errorf("%w: --nats-embed %q: bad port", ErrCluster, addr)
	}
	if p == 0 {
		p = server.RANDOM_PORT
	}
	if dir == "" {
		dir = "./nats"
	}
	srv, err := server.NewServer(&server.Options{Host: host, Port: p, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		return nil, fmt.Errorf("%w: embedded nats-server: %v", ErrCluster, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("%w: embedded nats-server on %s did not start within 10 s (port in use?)", ErrCluster, addr)
	}
	return srv, nil
}

// checkVersion refuses servers older than MinServerVersion.
func checkVersion(v string) error {
	if versionLess(v, MinServerVersion) {
		return fmt.Errorf("%w: nats-server %s is older than %s, the oldest nodecast supports", ErrCluster, v, MinServerVersion)
	}
	return nil
}

func versionLess(a, b string) bool {
	pa, pb := strings.Split(strings.TrimPrefix(a, "v"), "."), strings.Split(b, ".")
	for i := range 3 {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(strings.SplitN(pa[i], "-", 2)[0])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func redact(url string) string {
	if i := strings.Index(url, "@"); i >= 0 {
		if j := strings.Index(url, "://"); j >= 0 && j < i {
			return url[:j+3] + "***" + url[i:]
		}
	}
	return url
}

func (n *Node) makeStreams(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := n.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("%w: the NATS server has no JetStream (run nats-server with -js): %v", ErrCluster, err)
	}
	if _, err := n.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: PromptStream, Subjects: []string{PromptSubject},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
		Discard: jetstream.DiscardNew, MaxBytes: 1 << 30,
	}); err != nil {
		return fmt.Errorf("%w: stream %s: %v", ErrCluster, PromptStream, err)
	}
	if _, err := n.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: OutStream, Subjects: []string{OutSubjects},
		Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage,
		MaxAge: n.opts.OutMaxAge, MaxBytes: n.opts.OutMaxBytes, Discard: jetstream.DiscardOld,
	}); err != nil {
		return fmt.Errorf("%w: stream %s: %v", ErrCluster, OutStream, err)
	}
	return n.makeBuckets(ctx)
}

// Connected reports whether the NATS connection is up, and why not.
func (n *Node) Connected() error {
	if st := n.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("NATS connection to %s is %s (the host reconnects by itself)", n.url, strings.ToLower(st.String()))
	}
	return nil
}

// ServerURL is the URL the node connected to (the embedded server's too).
func (n *Node) ServerURL() string { return n.nc.ConnectedUrlRedacted() }

// Close stops consuming and disconnects (and stops the embedded server).
func (n *Node) Close() error {
	n.mu.Lock()
	cl := n.closers
	n.closers = nil
	n.mu.Unlock()
	for i := len(cl) - 1; i >= 0; i-- {
		cl[i]()
	}
	n.close()
	return nil
}

func (n *Node) close() {
	if n.nc != nil {
		n.nc.Drain()
		n.nc.Close()
	}
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
	}
}

func (n *Node) onClose(f func()) {
	n.mu.Lock()
	n.closers = append(n.closers, f)
	n.mu.Unlock()
}

// Stats are a node's counters, for metrics.
type Stats struct {
	Accepted    uint64 // prompts this host put in the queue
	Ran         uint64 // prompts this host took from the queue
	Redelivered uint64 // of those, deliveries after the first (another host died or stalled)
	Relayed     uint64 // messages this host received from the message stream and handed to its hub
	Published   uint64 // NATS messages this host published to the message stream
	Lag         uint64 // messages of the stream not yet handed to the hub
}

// Stats returns the counters.
func (n *Node) Stats() Stats {
	last, applied := n.lastOutSeq.Load(), n.appliedOutSeq.Load()
	lag := uint64(0)
	if last > applied {
		lag = last - applied
	}
	return Stats{Accepted: n.accepted.Load(), Ran: n.ran.Load(), Redelivered: n.redelivered.Load(),
		Relayed: n.relayed.Load(), Published: n.published.Load(), Lag: lag}
}
