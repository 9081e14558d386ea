package plugins

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/nodecast/nodecast/plugins/internal/hclogslog"
)

// ProcessConfig says how to start a plugin process. Only Cmd is required.
type ProcessConfig struct {
	// Cmd returns a new, unstarted command each time it is called: an
	// exec.Cmd runs once, and every restart needs its own. An error (the
	// binary cannot be found, say) fails Start with it. The plugin
	// inherits the host's environment; entries of the command's Env
	// override it (go-plugin alone would let the host's win).
	Cmd func() (*exec.Cmd, error)
	// Checksum is the SHA-256 the binary at Cmd().Path must have; nil skips
	// the check. A mismatch refuses to start with a *ChecksumError.
	Checksum []byte
	// Logger receives go-plugin's messages (its debug chatter at Debug) and
	// the plugin's stdout and stderr lines (at Info, or at the level of a
	// JSON hclog line). Nil means slog.Default().
	Logger *slog.Logger
	// StartTimeout bounds the wait for the plugin's handshake. 0 means 1 minute.
	StartTimeout time.Duration
}

// Process is a running plugin process and the pack it serves. It does not
// restart itself: a host that wants a plugin back starts a new Process.
type Process struct {
	client *plugin.Client
	pack   *PackClient
	path   string
	pid    int
	flush  []*hclogslog.LineWriter
}

// Start launches a plugin process with AutoMTLS and gRPC only, and connects to
// it. When ctx is cancelled while the plugin starts, Start waits for the
// handshake to end (at most StartTimeout), kills the process and returns the
// context's error, so no process outlives a cancelled Start. After Start
// returns, ctx is not used.
func Start(ctx context.Context, cfg ProcessConfig) (*Process, error) {
	if cfg.Cmd == nil {
		return nil, errors.New("plugins: Start: ProcessConfig.Cmd is nil")
	}
	cmd, err := cfg.Cmd()
	if err != nil {
		return nil, fmt.Errorf("plugins: Start: command: %w", err)
	}
	if cmd == nil {
		return nil, errors.New("plugins: Start: ProcessConfig.Cmd returned nil")
	}
	if cmd.Process != nil {
		return nil, fmt.Errorf("plugins: Start %s: ProcessConfig.Cmd returned a command already started", cmd.Path)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	// Later entries win in exec.Cmd, so the command's own come last;
	// go-plugin appends its handshake variables after them.
	cmd.Env = append(os.Environ(), cmd.Env...)
	base := filepath.Base(cmd.Path)
	stdout := hclogslog.NewLineWriter(logger, slog.LevelInfo, "plugin", base, "stream", "stdout")
	stderr := hclogslog.NewLineWriter(logger, slog.LevelInfo, "plugin", base, "stream", "stderr")
	ccfg := &plugin.ClientConfig{
		HandshakeConfig:  handshake,
		Plugins:          pluginMap,
		Cmd:              cmd,
		SkipHostEnv:      true, // already in cmd.Env, before the command's own
		StartTimeout:     cfg.StartTimeout,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hclogslog.New(logger, hclogslog.Options{Promote: base}),
		// Raised explicitly rather than trusting go-plugin's default to stay large.
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes))},
		// What the plugin writes to os.Stdout and os.Stderr after Serve
		// started arrives over go-plugin's stdio stream, not the pipes.
		SyncStdout: stdout,
		SyncStderr: stderr,
	}
	if cfg.Checksum != nil {
		if len(cfg.Checksum) != sha256.Size {
			return nil, fmt.Errorf("plugins: Start %s: checksum is %d bytes, a sha256 is %d", cmd.Path, len(cfg.Checksum), sha256.Size)
		}
		// A fresh hash each start: SecureConfig.Check never resets it.
		ccfg.SecureConfig = &plugin.SecureConfig{Checksum: cfg.Checksum, Hash: sha256.New()}
	}
	client := plugin.NewClient(ccfg)

	type started struct {
		pack *PackClient
		err  error
	}
	ch := make(chan started, 1)
	go func() {
		rpc, err := client.Client()
		if err != nil {
			ch <- started{err: err}
			return
		}
		raw, err := rpc.Dispense(pluginName)
		if err != nil {
			ch <- started{err: err}
			return
		}
		pc, ok := raw.(*PackClient)
		if !ok {
			ch <- started{err: fmt.Errorf("dispensed %T, want *PackClient", raw)}
			return
		}
		ch <- started{pack: pc}
	}()
	var s started
	select {
	case s = <-ch:
	case <-ctx.Done():
		// go-plugin cannot abandon a handshake, so wait it out (StartTimeout
		// bounds it) rather than leave a process behind.
		<-ch
		client.Kill()
		return nil, fmt.Errorf("plugins: Start %s: %w", cmd.Path, context.Cause(ctx))
	}
	if s.err != nil {
		client.Kill()
		if errors.Is(s.err, plugin.ErrChecksumsDoNotMatch) {
			return nil, &ChecksumError{Path: cmd.Path, Want: cfg.Checksum, Got: fileSHA256(cmd.Path)}
		}
		return nil, fmt.Errorf("plugins: Start %s: %w", cmd.Path, s.err)
	}
	return &Process{client: client, pack: s.pack, path: cmd.Path, pid: cmd.Process.Pid,
		flush: []*hclogslog.LineWriter{stdout, stderr}}, nil
}

func fileSHA256(path string) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil
	}
	return h.Sum(nil)
}

// Client returns the pack the process serves. Its calls fail with
// ErrUnavailable once the process has exited.
func (p *Process) Client() *PackClient { return p.pack }

// Exited reports whether the process has exited. It becomes true before Done
// is closed, and stays true.
func (p *Process) Exited() bool { return p.client.Exited() }

// Done is closed once the process has exited and its output has been read.
func (p *Process) Done() <-chan struct{} { return p.pack.done.Done() }

// Kill asks the plugin to exit, waits up to 2 seconds (go-plugin's grace
// period), then kills it. It returns once the process has exited; calling it
// again does nothing.
func (p *Process) Kill() {
	p.client.Kill()
	for _, w := range p.flush {
		w.Flush()
	}
}

// Pid is the process id of the plugin.
func (p *Process) Pid() int { return p.pid }

// Path is the plugin binary that was started.
func (p *Process) Path() string { return p.path }
