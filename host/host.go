package host

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nodecast/nodecast/host/api"
	"github.com/nodecast/nodecast/host/cluster"
	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/host/hub"
	"github.com/nodecast/nodecast/host/metrics"
	"github.com/nodecast/nodecast/host/supervisor"
	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configures a Host. The zero value serves no nodes (pass the
// built-in pack in Packs) on the default limits.
type Options struct {
	// Packs are started first, in order: typically SelfPack("builtin"), the
	// built-in pack served by this very binary.
	Packs []PackSource
	// PluginDir holds plugin binaries, one pack each; "" or a missing folder
	// loads none.
	PluginDir string
	// InputDir is ComfyUI's input folder, where uploads land and LoadImage
	// reads; "" = "./input". It is created when missing.
	InputDir string
	// OutputDir is ComfyUI's output folder, where SaveImage writes and
	// /view?type=output reads; "" = "./output". Created when missing.
	OutputDir string
	// TempDir is ComfyUI's temp folder, where PreviewImage writes; "" =
	// "./temp". Created when missing and emptied at start, as ComfyUI does,
	// unless KeepTempDir is set. New refuses to empty the input or output
	// folder, the root, the home folder or the system's temp folder.
	TempDir     string
	KeepTempDir bool
	// MessageLimit bounds every WebSocket message to parts-aware clients; 0 =
	// protocol.DefaultMessageLimit (4,194,304 bytes).
	MessageLimit int
	// ImageLimits bounds images that nodes accept and make.
	ImageLimits protocol.ImageLimits
	// MaxBodyBytes bounds every HTTP request body; 0 = 512 MiB, so batches
	// of base64 images fit.
	MaxBodyBytes int64
	// Workflows are the configured workflows a prompt may name instead of
	// sending a graph (see ConfigOptions).
	Workflows map[string]executor.Workflow
	// Defaults are the host's values for sender inputs (event, encoder, wire,
	// part_size ...) where neither the node nor its workflow sets one.
	Defaults map[string]any
	// Hub configures the WebSocket side; its MessageLimit and Logger default
	// to the fields above.
	Hub hub.Options
	// Logger receives the host's logs; nil = slog.Default().
	Logger *slog.Logger

	// Listen is the address Handler is served on ("127.0.0.1:8188"). When
	// its host is a loopback address, every route (/ws included) accepts
	// only loopback Host values unless Hub.AllowedHosts lists others: the
	// guard against DNS rebinding. "" = not known, no Host rule beyond
	// Hub.AllowedHosts.
	Listen string
	// HistoryBytes bounds the finished prompts kept for /history, in bytes
	// of JSON; 0 = executor.DefaultHistoryBytes.
	HistoryBytes int64
	// HistoryValueBytes: longer prompt inputs are kept in /history and
	// shown in /queue as placeholders; 0 = executor.DefaultHistoryValueBytes.
	HistoryValueBytes int
	// PromptTensorBytes is one prompt's tensor budget, checked by nodes
	// before they allocate; 0 = executor.DefaultPromptTensorBytes, negative
	// = none.
	PromptTensorBytes int64
	// BreakerRestarts, BreakerWindow and BreakerCooldown configure each
	// pack's crash-loop breaker (supervisor.Options MaxRestarts,
	// RestartWindow, BreakerCooldown); 0 = 3 restarts, 1 minute, 10 s.
	BreakerRestarts int
	BreakerWindow   time.Duration
	BreakerCooldown time.Duration
	// CacheBytes bounds ComfyUI's output cache between prompts; 0 = no
	// cache (an embedding program opts in; nodecast serve's config turns it
	// on). POST /free empties it.
	CacheBytes int64
	// SensitiveKeys are extra_data keys kept secret besides ComfyUI's two
	// (executor.DefaultSensitiveKeys).
	SensitiveKeys []string

	// Cluster, when set, joins the hosts that share a NATS JetStream
	// (host/cluster): prompts go through its work queue and every
	// executor message reaches the host that holds the client's socket.
	Cluster *cluster.Options

	// CORSOrigin is ComfyUI's --enable-cors-header: "*" or one browser
	// origin. Set, the HTTP API answers with ComfyUI's Access-Control-*
	// headers and preflights, and the origin is accepted by the CSRF and
	// Origin checks of the API and of /ws. "" = off: browser requests from
	// another site (Sec-Fetch-Site: cross-site) get 403, as in ComfyUI.
	CORSOrigin string
}

// PackSource says how to start one node pack's plugin process.
type PackSource = supervisor.PackSource

// Host is a running nodecast runtime.
type Host struct {
	opts    Options
	log     *slog.Logger
	sup     *supervisor.Supervisor
	hub     *hub.Hub
	exec    *executor.Executor
	limits  plugins.Limits
	api     http.Handler
	metrics *prometheus.Registry
	ownDir  string // the host's own folder for uploads in flight, removed by Close
	node    *cluster.Node
}

// SelfPack is the pack source that runs pack name from this very binary: the
// binary's main must call plugins.ServeSelfPack first thing, so that the
// plugin subprocess serves the pack instead of starting another host.
func SelfPack(name string) PackSource {
	return PackSource{
		Name:    name,
		Command: func() (*exec.Cmd, error) { return plugins.SelfPackCommand(name) },
	}
}

// New starts every plugin and builds the host. Close it to stop the plugins.
func New(ctx context.Context, opts Options) (*Host, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.MessageLimit == 0 {
		opts.MessageLimit = protocol.DefaultMessageLimit
	}
	if opts.InputDir == "" {
		opts.InputDir = "input"
	}
	inputDir, err := filepath.Abs(opts.InputDir)
	if err != nil {
		return nil, fmt.Errorf("host: input folder: %w", err)
	}
	if err := os.MkdirAll(inputDir, 0o755); err != nil {
		return nil, fmt.Errorf("host: input folder: %w", err)
	}
	opts.InputDir = inputDir
	if opts.MaxBodyBytes > plugins.MaxInputBytes {
		return nil, fmt.Errorf("host: MaxBodyBytes %d exceeds limit %d, the largest input a node call carries", opts.MaxBodyBytes, int64(plugins.MaxInputBytes))
	}
	var node *cluster.Node
	if opts.Cluster != nil {
		copts := *opts.Cluster
		if copts.Logger == nil {
			copts.Logger = log
		}
		if node, err = cluster.Start(ctx, copts); err != nil {
			return nil, fmt.Errorf("host: %w", err)
		}
	}
	served := false
	defer func() {
		if node != nil && !served { // New failed after joining
			node.Close()
		}
	}()
	outputDir, tempDir, err := outputFolders(&opts)
	if err != nil {
		return nil, err
	}
	// The host's own folder for uploads in flight, never one shared with
	// other hosts or users.
	ownDir, err := os.MkdirTemp("", "nodecast-")
	if err != nil {
		return nil, fmt.Errorf("host: staging folder: %w", err)
	}
	folderEnv := []string{plugins.OutputDirEnv + "=" + outputDir, plugins.TempDirEnv + "=" + tempDir}
	sup, err := supervisor.Start(ctx, supervisor.Options{
		Packs:           opts.Packs,
		PluginDir:       opts.PluginDir,
		Env:             append([]string{plugins.InputDirEnv + "=" + inputDir}, folderEnv...),
		Logger:          log,
		MaxRestarts:     opts.BreakerRestarts,
		RestartWindow:   opts.BreakerWindow,
		BreakerCooldown: opts.BreakerCooldown,
	})
	if err != nil {
		_ = os.RemoveAll(ownDir)
		return nil, err
	}
	if opts.CORSOrigin != "" {
		if err := api.CheckCORSOrigin(opts.CORSOrigin); err != nil {
			sup.Close()
			_ = os.RemoveAll(ownDir)
			return nil, fmt.Errorf("host: %w", err)
		}
	}
	hopts := opts.Hub
	if hopts.CORSOrigin == "" {
		hopts.CORSOrigin = opts.CORSOrigin
	}
	if hopts.MessageLimit == 0 {
		hopts.MessageLimit = opts.MessageLimit
	}
	hopts.ServerFlags = serverFlags(opts, hopts)
	if hopts.Logger == nil {
		hopts.Logger = log
	}
	h := &Host{
		opts: opts, log: log, sup: sup, ownDir: ownDir,
		limits: plugins.Limits{MessageLimit: opts.MessageLimit, Image: opts.ImageLimits},
	}
	if hopts.QueueRemaining == nil {
		hopts.QueueRemaining = func() int { return h.exec.QueueRemaining() }
	}
	if node != nil && hopts.Sessions.Log == nil {
		// Resume windows in JetStream, so a client resumes on any host.
		age, global := hopts.Sessions.WindowAge, hopts.Sessions.WindowGlobal
		if age == 0 {
			age = hub.DefaultWindowAge
		}
		if global == 0 {
			global = hub.DefaultWindowGlobal
		}
		w, err := node.Window(max(age, 0), max(global, 0))
		if err != nil {
			sup.Close()
			_ = os.RemoveAll(ownDir)
			return nil, fmt.Errorf("host: %w", err)
		}
		hopts.Sessions.Log = w
	}
	h.hub = hub.New(hopts)
	var bc executor.Broadcaster = h.hub
	var cl executor.Cluster
	workers := 0
	if node != nil {
		h.node, bc, cl, workers = node, node.Broadcaster(), node, max(opts.Cluster.Workers, 1)
	}
	h.exec, err = executor.New(executor.Options{
		Cluster:     cl,
		Workers:     workers,
		Runner:      sup,
		Broadcaster: bc,
		InputDir:    inputDir,
		Limits:      h.limits,
		Workflows:   opts.Workflows,
		Defaults:    opts.Defaults,
		Logger:      log,

		MaxHistoryBytes:   opts.HistoryBytes,
		HistoryValueBytes: opts.HistoryValueBytes,
		PromptTensorBytes: opts.PromptTensorBytes,
		CacheBytes:        opts.CacheBytes,
		SensitiveKeys:     opts.SensitiveKeys,
	})
	if err != nil {
		sup.Close()
		_ = os.RemoveAll(ownDir)
		return nil, err
	}
	h.metrics, err = metrics.NewRegistry(metrics.Sources{Hub: h.hub, Executor: h.exec, Supervisor: sup})
	if err != nil {
		h.exec.Close()
		h.hub.Close()
		sup.Close()
		_ = os.RemoveAll(ownDir)
		return nil, err
	}
	if node != nil {
		for _, c := range node.Collectors() {
			h.metrics.MustRegister(c)
		}
	}
	h.api = api.New(api.Options{
		Executor:     h.exec,
		Classes:      sup.Classes,
		WS:           h.hub,
		InputDir:     inputDir,
		OutputDir:    outputDir,
		TempDir:      tempDir,
		MaxBodyBytes: opts.MaxBodyBytes,
		Limits:       opts.ImageLimits,
		MessageLimit: opts.MessageLimit,
		Features:     h.hub.ServerFlags(),
		Metrics:      metrics.Handler(h.metrics, log),
		Logger:       log,

		LoopbackOnly:   listensOnLoopback(opts.Listen),
		AllowedHosts:   opts.Hub.AllowedHosts,
		AllowedOrigins: opts.Hub.AllowedOrigins,
		StagingDir:     filepath.Join(ownDir, "uploads"),
		Packs:          sup.Packs,
		CORSOrigin:     opts.CORSOrigin,
	})
	served = true
	if node != nil {
		h.api = node.ShareUploads(h.api)
		if err := node.Serve(ctx, h.exec, h.hub, map[string]string{"input": inputDir, "output": outputDir, "temp": tempDir}); err != nil {
			h.Close()
			return nil, fmt.Errorf("host: %w", err)
		}
	}
	return h, nil
}

// serverFlags are the feature flags the host honours, built once so that
// the WebSocket's feature_flags answer and GET /features are the same
// dictionary: ComfyUI's supports_preview_metadata (type 4 frames) and
// max_upload_size, and nodecast's supports_image_parts and
// max_message_size. Flags an embedder put in opts.Hub.ServerFlags are kept.
func serverFlags(opts Options, hopts hub.Options) map[string]any {
	maxUpload := opts.MaxBodyBytes
	if maxUpload <= 0 {
		maxUpload = api.DefaultMaxBodyBytes
	}
	flags := map[string]any{
		protocol.FlagPreviewMetadata: true,
		protocol.FlagImageParts:      true,
		protocol.FlagMaxUploadSize:   maxUpload,
		protocol.FlagMaxMessageSize:  hopts.MessageLimit,
	}
	for k, v := range hopts.ServerFlags {
		flags[k] = v
	}
	return flags
}

// Handler serves ComfyUI's HTTP and WebSocket API.
func (h *Host) Handler() http.Handler { return h.api }

// Metrics is the host's own Prometheus registry, served at GET /metrics: the
// hub's, executor's and plugins' metrics and the Go runtime and process
// collectors. Embedders may register their collectors on it.
func (h *Host) Metrics() *prometheus.Registry { return h.metrics }

// Executor queues and runs prompts: Submit and Wait are the Go side of
// POST /prompt.
func (h *Host) Executor() *executor.Executor { return h.exec }

// Hub is the broadcaster shared by every node.
func (h *Host) Hub() *hub.Hub { return h.hub }

// Classes lists every node class with the pack that serves it, sorted.
func (h *Host) Classes() []supervisor.Class { return h.sup.Classes() }

// Packs lists the plugin packs and their processes.
func (h *Host) Packs() []supervisor.PackInfo { return h.sup.Packs() }

// Close disconnects every client and stops every plugin.
func (h *Host) Close() error {
	if h.node != nil {
		h.node.Close() // first: a prompt stopped by the shutdown goes back to the queue
	}
	h.exec.Close()
	h.hub.Close()
	err := h.sup.Close()
	_ = os.RemoveAll(h.ownDir)
	return err
}

// listensOnLoopback reports whether addr's host is a loopback address or
// name ("127.0.0.1:8188", "[::1]:0", "localhost:8188").
func listensOnLoopback(addr string) bool {
	if addr == "" {
		return false
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
