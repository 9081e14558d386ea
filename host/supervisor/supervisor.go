package supervisor

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// Sentinel errors.
var (
	ErrUnknownClass = errors.New("supervisor: unknown node class")
	ErrTensorLost   = errors.New("supervisor: tensor lost with a restarted plugin")
	ErrBreakerOpen  = errors.New("supervisor: plugin crash loop, breaker open")
	ErrClosed       = errors.New("supervisor: closed")
)

// DuplicatePackError refuses a start with two packs of one name (a built-in
// pack and a plugin file, say): calls could not say which one they mean.
type DuplicatePackError struct {
	Name string
}

func (e *DuplicatePackError) Error() string {
	return fmt.Sprintf("supervisor: two packs named %q", e.Name)
}

// DuplicateClassError refuses a start in which two packs declare one node
// class: the registry maps a class to one pack.
type DuplicateClassError struct {
	Class  string
	First  string // the pack that registered it first
	Second string // the pack that declared it again
}

func (e *DuplicateClassError) Error() string {
	return fmt.Sprintf("supervisor: node class %q is served by both pack %s and pack %s", e.Class, e.First, e.Second)
}

// ChecksumFile, when present in the plugin folder, lists plugin checksums in
// sha256sum's format; a listed plugin is started only if its binary matches.
const ChecksumFile = "SHA256SUMS"

// PackSource says how to start one pack.
type PackSource struct {
	Name     string                    // unique; a plugin file's base name for folder plugins
	Path     string                    // the binary, for display; empty for self-executed packs
	Command  func() (*exec.Cmd, error) // a fresh command for every start
	Checksum []byte                    // sha256 of the binary; nil skips the check
}

// Options configures a Supervisor. The zero value starts nothing.
type Options struct {
	Packs     []PackSource // packs started first, in order (the built-in pack)
	PluginDir string       // every executable regular file in it is a pack; a missing folder is fine
	Env       []string     // extra environment for every plugin (KEY=VALUE)
	Logger    *slog.Logger // nil = slog.Default()
	// A plugin that needed MaxRestarts restarts within RestartWindow opens
	// its breaker: calls fail at once with ErrBreakerOpen for
	// BreakerCooldown, then the breaker is half-open: the next call starts
	// the plugin again and runs as the one probe (others still fail at
	// once). A probe whose plugin survives closes the breaker; one whose
	// plugin dies opens it again.
	MaxRestarts     int           // 0 = 3
	RestartWindow   time.Duration // 0 = 1 minute
	BreakerCooldown time.Duration // 0 = 10 s
	StartTimeout    time.Duration // 0 = 30 s
}

// Supervisor owns the plugin processes and the node registry.
type Supervisor struct {
	opts    Options
	log     *slog.Logger
	packs   []*pack
	byName  map[string]*pack
	classes map[string]Class

	mu     sync.Mutex
	closed bool
}

// pack is one plugin: its source and, while it runs, its process.
type pack struct {
	s   *Supervisor
	src PackSource

	mu       sync.Mutex
	proc     *plugins.Process
	starting *startCall // non-nil while a start of the process is under way
	gen      int
	restarts []time.Time
	breaker  breaker
}

// Start starts every pack, asks each for its node classes and builds the
// registry. Any failure stops all that was started and is returned: a host
// must not come up with half its nodes.
func Start(ctx context.Context, opts Options) (*Supervisor, error) {
	if opts.MaxRestarts == 0 {
		opts.MaxRestarts = 3
	}
	if opts.RestartWindow == 0 {
		opts.RestartWindow = time.Minute
	}
	if opts.BreakerCooldown == 0 {
		opts.BreakerCooldown = 10 * time.Second
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	s := &Supervisor{opts: opts, log: opts.Logger, byName: map[string]*pack{}, classes: map[string]Class{}}
	if s.log == nil {
		s.log = slog.Default()
	}
	srcs := append([]PackSource(nil), opts.Packs...)
	folder, err := folderPacks(opts.PluginDir)
	if err != nil {
		return nil, err
	}
	srcs = append(srcs, folder...)
	for _, src := range srcs {
		if _, dup := s.byName[src.Name]; dup {
			s.Close()
			return nil, &DuplicatePackError{Name: src.Name}
		}
		p := &pack{s: s, src: src}
		s.packs = append(s.packs, p)
		s.byName[src.Name] = p
		if err := s.register(ctx, p); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *Supervisor) register(ctx context.Context, p *pack) error {
	c, _, _, err := p.client(ctx)
	if err != nil {
		return err
	}
	name, specs, err := c.Describe(ctx)
	if err != nil {
		return fmt.Errorf("supervisor: pack %s: describe: %w", p.src.Name, err)
	}
	for _, spec := range specs {
		if prev, dup := s.classes[spec.ClassType]; dup {
			return &DuplicateClassError{Class: spec.ClassType, First: prev.Pack, Second: p.src.Name}
		}
		s.classes[spec.ClassType] = Class{Spec: spec, Pack: p.src.Name}
	}
	s.log.Info("plugin pack loaded", "pack", p.src.Name, "declared", name, "classes", len(specs), "path", p.src.Path)
	return nil
}

// folderPacks lists the plugin binaries in dir: executable regular files, by
// name. A missing folder gives none; a path that is not a folder is an error.
// When dir holds ChecksumFile, the binaries it lists carry their checksum.
func folderPacks(dir string) ([]PackSource, error) {
	if dir == "" {
		return nil, nil
	}
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("supervisor: plugin folder: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("supervisor: plugin folder %s is not a folder", dir)
	}
	sums, err := readChecksums(filepath.Join(dir, ChecksumFile))
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("supervisor: plugin folder: %w", err)
	}
	var out []PackSource
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
			continue
		}
		path, err := filepath.Abs(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, PackSource{
			Name:     e.Name(),
			Path:     path,
			Command:  func() (*exec.Cmd, error) { return exec.Command(path), nil },
			Checksum: sums[e.Name()],
		})
	}
	return out, nil
}

func readChecksums(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	defer f.Close()
	sums := map[string][]byte{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		hexsum, name, ok := strings.Cut(line, " ")
		sum, err := hex.DecodeString(hexsum)
		if !ok || err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("supervisor: %s line %d: want \"<64 hex digits>  <file>\"", path, n)
		}
		sums[strings.TrimLeft(strings.TrimSpace(name), "*")] = sum
	}
	return sums, sc.Err()
}

// client returns the pack's running client, starting or restarting the
// process first when it is not running. probe is true for the one call a
// half-open breaker lets through: its caller must report the call's outcome
// with probeDone.
//
// p.mu is never held across plugins.Start (up to StartTimeout): the pack is
// marked starting instead, so Packs, Live and a /metrics scrape keep
// answering, and callers that need the client wait for that one start and
// share its outcome rather than starting the pack again.
func (p *pack) client(ctx context.Context) (c *plugins.PackClient, gen int, probe bool, err error) {
	p.mu.Lock()
	for {
		if err := p.breakerRefusal(time.Now()); err != nil {
			p.mu.Unlock()
			return nil, 0, false, err
		}
		st := p.starting
		if st == nil {
			break
		}
		p.mu.Unlock()
		select {
		case <-st.done:
		case <-ctx.Done():
			return nil, 0, false, fmt.Errorf("supervisor: waiting for pack %s to start: %w", p.src.Name, context.Cause(ctx))
		}
		if st.err != nil && !st.cancelled {
			return nil, 0, false, st.err
		}
		p.mu.Lock() // running now, or this caller starts it
	}
	defer p.mu.Unlock()
	if p.breaker.state == breakerHalfOpen {
		probe = true
		p.breaker.probing = true
	}
	if p.proc != nil && !p.proc.Exited() {
		return p.proc.Client(), p.gen, probe, nil
	}
	if p.s.isClosed() {
		p.breaker.probing = false
		return nil, 0, false, ErrClosed
	}
	if p.proc != nil && !probe { // it died: this start is a restart
		now := time.Now()
		p.restarts = slices.DeleteFunc(p.restarts, func(t time.Time) bool { return now.Sub(t) >= p.s.opts.RestartWindow })
		if len(p.restarts) >= p.s.opts.MaxRestarts {
			p.openBreaker(now, fmt.Sprintf("restarted %d times within %s", len(p.restarts), p.s.opts.RestartWindow))
			return nil, 0, false, p.breakerRefusal(now)
		}
		p.restarts = append(p.restarts, now)
		p.s.log.Warn("plugin exited, restarting", "pack", p.src.Name, "generation", p.gen)
	}
	st := &startCall{done: make(chan struct{})}
	p.starting = st
	old := p.proc
	p.mu.Unlock()

	proc, err := p.start(ctx, old)

	p.mu.Lock() // the deferred Unlock releases it
	p.starting = nil
	defer close(st.done)
	if err == nil && p.s.isClosed() { // Close ran during the start and could not see this process
		proc.Kill()
		err = ErrClosed
	}
	if err != nil {
		if probe {
			p.openBreaker(time.Now(), "the probe could not start it: "+err.Error())
		}
		st.err, st.cancelled = err, ctx.Err() != nil
		return nil, 0, false, err
	}
	p.proc = proc
	p.gen++
	return proc.Client(), p.gen, probe, nil
}

// startCall is one start of a pack's process under way; done is closed when
// it ended, and err is then its outcome.
type startCall struct {
	done chan struct{}
	err  error
	// cancelled: the starter's own context ended, which says nothing about
	// the pack, so a caller that waited starts it again itself.
	cancelled bool
}

// start launches a new process for the pack after cleaning up old, the
// exited one (nil on the first start). Callers do not hold p.mu.
func (p *pack) start(ctx context.Context, old *plugins.Process) (*plugins.Process, error) {
	if old != nil {
		old.Kill()
	}
	sctx, cancel := context.WithTimeout(ctx, p.s.opts.StartTimeout)
	defer cancel()
	proc, err := plugins.Start(sctx, plugins.ProcessConfig{
		Cmd: func() (*exec.Cmd, error) {
			cmd, err := p.src.Command()
			if err != nil {
				return nil, err
			}
			// plugins.Start puts the host's environment first; Options.Env wins over both.
			cmd.Env = append(cmd.Env, p.s.opts.Env...)
			return cmd, nil
		},
		Checksum:     p.src.Checksum,
		Logger:       p.s.log.With("pack", p.src.Name),
		StartTimeout: p.s.opts.StartTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("supervisor: start pack %s: %w", p.src.Name, err)
	}
	return proc, nil
}

func (s *Supervisor) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Class returns the class registered under name.
func (s *Supervisor) Class(name string) (Class, bool) {
	c, ok := s.classes[name]
	return c, ok
}

// Classes returns every registered class, sorted by class type.
func (s *Supervisor) Classes() []Class {
	return slices.SortedFunc(maps.Values(s.classes), func(a, b Class) int {
		return strings.Compare(a.Spec.ClassType, b.Spec.ClassType)
	})
}

// PackInfo describes a pack for listings and tests.
type PackInfo struct {
	Name       string
	Path       string
	Pid        int // 0 when not running
	Generation int
	Restarts   int  // within the breaker window
	Starting   bool // a start of its process is under way
	Breaker    BreakerInfo
}

// Packs returns the packs in start order.
func (s *Supervisor) Packs() []PackInfo {
	out := make([]PackInfo, 0, len(s.packs))
	for _, p := range s.packs {
		p.mu.Lock()
		info := PackInfo{Name: p.src.Name, Path: p.src.Path, Generation: p.gen, Restarts: len(p.restarts),
			Starting: p.starting != nil, Breaker: p.breakerInfo(time.Now())}
		if p.proc != nil && !p.proc.Exited() {
			info.Pid = p.proc.Pid()
		}
		p.mu.Unlock()
		out = append(out, info)
	}
	return out
}

// Run runs one node in the pack that serves its class, moving tensor inputs
// into that pack first when they live elsewhere. A plugin that died during the
// call is restarted and the call retried once, when its inputs survive; the
// retry hands on only the images the first try did not finish, so clients
// get each image of the batch once. When its inputs died with the plugin the
// error is returned (errors.Is plugins.ErrUnavailable or ErrTensorLost): only
// the caller can make them again (Live tells which), and retry with an
// ImageTracker of its own.
func (s *Supervisor) Run(ctx context.Context, call Call, h plugins.RunHandlers) (Result, error) {
	cls, ok := s.classes[call.ClassType]
	if !ok {
		return Result{}, fmt.Errorf("%w: %q", ErrUnknownClass, call.ClassType)
	}
	p := s.byName[cls.Pack]
	var sent ImageTracker
	res, err := s.runOnce(ctx, p, call, sent.Handlers(h, false))
	if err != nil && ctx.Err() == nil && errors.Is(err, plugins.ErrUnavailable) && p.waitExit(exitNoticeTimeout) && survivesRestart(p, call) {
		s.log.Warn("plugin died during a call, retrying once", "pack", p.src.Name, "class", call.ClassType,
			"node", call.NodeID, "images_done", sent.Done(), "err", err)
		res, err = s.runOnce(ctx, p, call, sent.Handlers(h, true))
	}
	return res, err
}

// survivesRestart reports whether every tensor input of call survives the
// death of p: tensors held by the host or by another pack do, tensors that
// lived in p do not, so such a call is not retried.
func survivesRestart(p *pack, call Call) bool {
	for _, v := range call.Inputs {
		if h, ok := v.(Handle); ok && h.Pack == p.src.Name {
			return false
		}
	}
	return true
}

// exitNoticeTimeout bounds the wait for go-plugin to notice that a plugin
// whose connection broke has exited: the broken call returns first.
const exitNoticeTimeout = 5 * time.Second

// waitExit reports whether the pack's process has exited, waiting up to
// timeout for the exit to be noticed.
func (p *pack) waitExit(timeout time.Duration) bool {
	p.mu.Lock()
	proc := p.proc
	p.mu.Unlock()
	if proc == nil {
		return true
	}
	select {
	case <-proc.Done():
		return true
	case <-time.After(timeout):
		return proc.Exited()
	}
}

func (s *Supervisor) runOnce(ctx context.Context, p *pack, call Call, h plugins.RunHandlers) (res Result, err error) {
	c, gen, probe, err := p.client(ctx)
	if err != nil {
		return Result{}, err
	}
	if probe {
		defer func() { p.probeDone(ctx, err) }()
	}
	inputs := make(map[string]any, len(call.Inputs))
	var temps []string // tensors put into p for this call only
	defer func() {
		if len(temps) > 0 {
			_ = c.Release(context.WithoutCancel(ctx), temps...)
		}
	}()
	for name, v := range call.Inputs {
		switch v := v.(type) {
		case Handle:
			if v.Pack == p.src.Name {
				if v.Gen != gen {
					return Result{}, fmt.Errorf("%w: input %q of node %s was made by pack %s generation %d, now %d",
						ErrTensorLost, name, call.NodeID, v.Pack, v.Gen, gen)
				}
				inputs[name] = v.Ref
				continue
			}
			t, err := s.Fetch(ctx, v)
			if err != nil {
				return Result{}, fmt.Errorf("supervisor: input %q of node %s: %w", name, call.NodeID, err)
			}
			ref, err := c.PutTensor(ctx, t)
			if err != nil {
				return Result{}, fmt.Errorf("supervisor: input %q of node %s: %w", name, call.NodeID, err)
			}
			temps = append(temps, ref.ID)
			inputs[name] = ref
		case *protocol.Tensor:
			ref, err := c.PutTensor(ctx, v)
			if err != nil {
				return Result{}, fmt.Errorf("supervisor: input %q of node %s: %w", name, call.NodeID, err)
			}
			temps = append(temps, ref.ID)
			inputs[name] = ref
		default:
			inputs[name] = v
		}
	}
	rr, err := c.Run(ctx, plugins.RunRequest{
		ClassType: call.ClassType, NodeID: call.NodeID, PromptID: call.PromptID,
		Inputs: inputs, Limits: call.Limits,
	}, h)
	if err != nil {
		return Result{}, err
	}
	out := Result{UI: rr.UI, Outputs: make([]any, len(rr.Outputs))}
	for i, v := range rr.Outputs {
		if ref, ok := v.(plugins.TensorRef); ok {
			out.Outputs[i] = Handle{Pack: p.src.Name, Gen: gen, Ref: ref}
		} else {
			out.Outputs[i] = v
		}
	}
	return out, nil
}

// Fetch copies a tensor out of the plugin that holds it.
func (s *Supervisor) Fetch(ctx context.Context, h Handle) (_ *protocol.Tensor, err error) {
	p, ok := s.byName[h.Pack]
	if !ok {
		return nil, fmt.Errorf("supervisor: no pack %q", h.Pack)
	}
	c, gen, probe, err := p.client(ctx)
	if err != nil {
		return nil, err
	}
	if probe {
		defer func() { p.probeDone(ctx, err) }()
	}
	if gen != h.Gen {
		return nil, fmt.Errorf("%w: pack %s generation %d, now %d", ErrTensorLost, h.Pack, h.Gen, gen)
	}
	return c.GetTensor(ctx, h.Ref)
}

// Live reports whether h's tensor can still be held: the pack that made it
// runs, in the generation that made it. It never starts or restarts a
// process, so a caller can tell which tensors a dead plugin took with it
// before it runs anything again.
func (s *Supervisor) Live(h Handle) bool {
	p, ok := s.byName[h.Pack]
	if !ok {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc != nil && !p.proc.Exited() && p.gen == h.Gen
}

// Release lets the plugins forget tensors. Handles of dead generations are
// already gone and skipped.
func (s *Supervisor) Release(ctx context.Context, hs ...Handle) {
	byPack := map[*pack][]string{}
	for _, h := range hs {
		if s.Live(h) {
			p := s.byName[h.Pack]
			byPack[p] = append(byPack[p], h.Ref.ID)
		}
	}
	for p, ids := range byPack {
		p.mu.Lock()
		proc := p.proc
		p.mu.Unlock()
		if err := proc.Client().Release(ctx, ids...); err != nil {
			s.log.Debug("release tensors", "pack", p.src.Name, "err", err)
		}
	}
}

// Close kills every plugin process. A start under way ends first (at most
// StartTimeout) and kills the process it started.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range s.packs {
		p.mu.Lock()
		proc, st := p.proc, p.starting
		p.mu.Unlock()
		if st != nil {
			wg.Add(1)
			go func() { defer wg.Done(); <-st.done }()
		}
		if proc != nil {
			wg.Add(1)
			go func() { defer wg.Done(); proc.Kill() }()
		}
	}
	wg.Wait()
	return nil
}
