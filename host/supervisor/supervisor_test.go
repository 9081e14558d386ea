package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodecast/nodecast/host/supervisor"
	"github.com/nodecast/nodecast/internal/testbin"
	"github.com/nodecast/nodecast/internal/wait"
	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// The test binary doubles as two plugin packs, started as real subprocesses.
func TestMain(m *testing.M) {
	holdStartUntilGate()
	testbin.Main(m,
		plugins.Pack{Name: "alpha", Nodes: []plugins.Node{makeNode{}, crashNode{}, crashOnceNode{}, crashMidBatchNode{}, waitFileNode{}}},
		plugins.Pack{Name: "beta", Nodes: []plugins.Node{sumNode{}}},
		plugins.Pack{Name: "clash", Nodes: []plugins.Node{sumNode{}}},
	)
}

func selfPack(name string) supervisor.PackSource {
	return supervisor.PackSource{Name: name, Command: func() (*exec.Cmd, error) { return plugins.SelfPackCommand(name) }}
}

// makeNode makes a float32 IMAGE [1,h,w,3] filled with value.
type makeNode struct{}

func (makeNode) Spec() plugins.Spec {
	return plugins.Spec{ClassType: "test.Make", Inputs: []plugins.Input{
		{Name: "side", Type: plugins.TypeInt}, {Name: "value", Type: plugins.TypeFloat},
	}, Outputs: []plugins.Output{{Name: "IMAGE", Type: plugins.TypeImage}}}
}

func (makeNode) Run(_ context.Context, c *plugins.Call) (plugins.Result, error) {
	side, err := c.Int("side", 0)
	if err != nil {
		return plugins.Result{}, err
	}
	v, err := c.Float("value", 0)
	if err != nil {
		return plugins.Result{}, err
	}
	t := protocol.NewFloat32(1, int(side), int(side), 3)
	for i, f := 0, t.Float32s(); i < len(f); i++ {
		f[i] = float32(v)
	}
	return plugins.Result{Outputs: []any{t}}, nil
}

// sumNode adds up an IMAGE's elements: proof that the tensor arrived whole.
type sumNode struct{}

func (sumNode) Spec() plugins.Spec {
	return plugins.Spec{ClassType: "test.Sum", Inputs: []plugins.Input{{Name: "image", Type: plugins.TypeImage}},
		Outputs: []plugins.Output{{Name: "FLOAT", Type: plugins.TypeFloat}}}
}

func (sumNode) Run(_ context.Context, c *plugins.Call) (plugins.Result, error) {
	t, err := c.Tensor("image")
	if err != nil {
		return plugins.Result{}, err
	}
	var s float64
	for _, f := range t.Float32s() {
		s += float64(f)
	}
	return plugins.Result{Outputs: []any{s}}, nil
}

// crashNode kills its own process, as a plugin with a fatal bug would.
type crashNode struct{}

func (crashNode) Spec() plugins.Spec { return plugins.Spec{ClassType: "test.Crash"} }
func (crashNode) Run(context.Context, *plugins.Call) (plugins.Result, error) {
	os.Exit(3)
	return plugins.Result{}, nil
}

// waitFileNode returns once the file its input names exists: a call that
// lasts as long as a test wants.
type waitFileNode struct{}

func (waitFileNode) Spec() plugins.Spec {
	return plugins.Spec{ClassType: "test.WaitFile", Inputs: []plugins.Input{{Name: "path", Type: plugins.TypeString}}}
}

func (waitFileNode) Run(ctx context.Context, c *plugins.Call) (plugins.Result, error) {
	path, _ := c.String("path", "")
	exists := func() bool { _, err := os.Stat(path); return err == nil }
	if wait.Until(time.Hour, func() bool { return exists() || ctx.Err() != nil }) && exists() {
		return plugins.Result{}, nil
	}
	return plugins.Result{}, ctx.Err()
}

// crashOnceNode crashes the first time (marker file absent) and succeeds after.
type crashOnceNode struct{}

func (crashOnceNode) Spec() plugins.Spec {
	return plugins.Spec{ClassType: "test.CrashOnce", Inputs: []plugins.Input{{Name: "marker", Type: plugins.TypeString}},
		Outputs: []plugins.Output{{Name: "STRING", Type: plugins.TypeString}}}
}

func (crashOnceNode) Run(_ context.Context, c *plugins.Call) (plugins.Result, error) {
	marker, _ := c.String("marker", "")
	if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) {
		os.WriteFile(marker, nil, 0o644)
		os.Exit(3)
	}
	return plugins.Result{Outputs: []any{"survived"}}, nil
}

// crashMidBatchNode sends image 0 of a batch of 2, then crashes the first
// time (marker file absent), once the host has made the file seen to say
// image 0 reached it; on the retry it sends both images.
type crashMidBatchNode struct{}

func (crashMidBatchNode) Spec() plugins.Spec {
	return plugins.Spec{ClassType: "test.CrashMidBatch", OutputNode: true, Inputs: []plugins.Input{
		{Name: "marker", Type: plugins.TypeString}, {Name: "seen", Type: plugins.TypeString},
	}}
}

func (crashMidBatchNode) Run(ctx context.Context, c *plugins.Call) (plugins.Result, error) {
	marker, _ := c.String("marker", "")
	seen, _ := c.String("seen", "")
	_, statErr := os.Stat(marker)
	attempt := time.Now().UnixNano() // image ids differ between tries, as sendimage's random ones do
	for i := range 2 {
		for part := range 2 {
			p := &protocol.ImagePart{PartHeader: protocol.PartHeader{
				Event: "retry", Node: c.NodeID, ImageID: fmt.Sprintf("%d-%d", attempt, i),
				Index: i, Batch: 2, Part: part, Parts: 2,
			}}
			if err := c.Emitter.EmitPart(ctx, p); err != nil {
				return plugins.Result{}, err
			}
		}
		if i == 0 && errors.Is(statErr, os.ErrNotExist) {
			os.WriteFile(marker, nil, 0o644)
			wait.Until(time.Minute, func() bool { _, err := os.Stat(seen); return err == nil })
			os.Exit(3)
		}
	}
	return plugins.Result{}, nil
}

func start(t *testing.T, opts supervisor.Options) *supervisor.Supervisor {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := supervisor.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestTensorMovesBetweenPacks makes a 6 MiB tensor in one plugin and consumes
// it in another: the supervisor moves it, above gRPC's 4 MiB message limit.
func TestTensorMovesBetweenPacks(t *testing.T) {
	s := start(t, supervisor.Options{Packs: []supervisor.PackSource{selfPack("alpha"), selfPack("beta")}})
	ctx := context.Background()
	if c, ok := s.Class("test.Sum"); !ok || c.Pack != "beta" {
		t.Fatalf("test.Sum registered as %+v, %v", c, ok)
	}
	made, err := s.Run(ctx, supervisor.Call{ClassType: "test.Make", NodeID: "1", Inputs: map[string]any{"side": int64(724), "value": 0.5}}, plugins.RunHandlers{})
	if err != nil {
		t.Fatal(err)
	}
	h, ok := made.Outputs[0].(supervisor.Handle)
	if !ok || h.Pack != "alpha" {
		t.Fatalf("output %#v, want a handle into alpha", made.Outputs[0])
	}
	sum, err := s.Run(ctx, supervisor.Call{ClassType: "test.Sum", NodeID: "2", Inputs: map[string]any{"image": h}}, plugins.RunHandlers{})
	if err != nil {
		t.Fatal(err)
	}
	if want := 0.5 * 724 * 724 * 3; sum.Outputs[0] != want {
		t.Fatalf("sum %v, want %v", sum.Outputs[0], want)
	}
	got, err := s.Fetch(ctx, h)
	if err != nil || len(got.Data) != 724*724*3*4 {
		t.Fatalf("fetch: %v, %d bytes", err, len(got.Data))
	}
	s.Release(ctx, h)
	if _, err := s.Fetch(ctx, h); err == nil {
		t.Fatal("fetch after release succeeded")
	}
}

func TestDuplicateClassRefused(t *testing.T) {
	_, err := supervisor.Start(context.Background(), supervisor.Options{Packs: []supervisor.PackSource{selfPack("beta"), selfPack("clash")}})
	var dup *supervisor.DuplicateClassError
	if !errors.As(err, &dup) || dup.Class != "test.Sum" || dup.First != "beta" || dup.Second != "clash" {
		t.Fatalf("err = %v, want a DuplicateClassError for test.Sum from beta and clash", err)
	}
}

func TestUnknownClass(t *testing.T) {
	s := start(t, supervisor.Options{Packs: []supervisor.PackSource{selfPack("beta")}})
	_, err := s.Run(context.Background(), supervisor.Call{ClassType: "Nope"}, plugins.RunHandlers{})
	if !errors.Is(err, supervisor.ErrUnknownClass) {
		t.Fatalf("err = %v", err)
	}
}

// TestCrashDuringCallIsRetriedOnce: a plugin that dies mid-call is restarted
// and the call retried once; it succeeds when the second try does.
func TestCrashDuringCallIsRetriedOnce(t *testing.T) {
	s := start(t, supervisor.Options{Packs: []supervisor.PackSource{selfPack("alpha")}})
	marker := filepath.Join(t.TempDir(), "crashed")
	res, err := s.Run(context.Background(), supervisor.Call{ClassType: "test.CrashOnce", Inputs: map[string]any{"marker": marker}}, plugins.RunHandlers{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outputs[0] != "survived" {
		t.Fatalf("outputs %v", res.Outputs)
	}
	if p := s.Packs()[0]; p.Generation != 2 {
		t.Fatalf("generation %d, want 2 after one restart", p.Generation)
	}
}

// TestRetrySendsOnlyUnfinishedImages: image 0 was handed on whole before the
// crash, so the retry passes on image 1 only: clients see each image once.
func TestRetrySendsOnlyUnfinishedImages(t *testing.T) {
	s := start(t, supervisor.Options{Packs: []supervisor.PackSource{selfPack("alpha")}})
	dir := t.TempDir()
	marker, seen := filepath.Join(dir, "crashed"), filepath.Join(dir, "seen")
	var got []int
	_, err := s.Run(context.Background(), supervisor.Call{ClassType: "test.CrashMidBatch", NodeID: "7", Inputs: map[string]any{"marker": marker, "seen": seen}},
		plugins.RunHandlers{Part: func(p *protocol.ImagePart) error {
			if p.Part == p.Parts-1 {
				got = append(got, p.Index)
				if p.Index == 0 { // the plugin may crash now: image 0 is whole here
					return os.WriteFile(seen, nil, 0o644)
				}
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[0 1]" {
		t.Fatalf("images handed on %v, want [0 1]: each once", got)
	}
}

// TestCrashLoopOpensBreaker: a plugin that keeps dying is restarted at most
// MaxRestarts times in the window; then calls fail fast with ErrBreakerOpen.
func TestCrashLoopOpensBreaker(t *testing.T) {
	s := start(t, supervisor.Options{Packs: []supervisor.PackSource{selfPack("alpha")}, MaxRestarts: 2, RestartWindow: time.Hour})
	ctx := context.Background()
	var err error
	for i := 0; i < 4 && !errors.Is(err, supervisor.ErrBreakerOpen); i++ {
		_, err = s.Run(ctx, supervisor.Call{ClassType: "test.Crash"}, plugins.RunHandlers{})
		if err == nil {
			t.Fatal("crashing node succeeded")
		}
	}
	if !errors.Is(err, supervisor.ErrBreakerOpen) || !strings.Contains(err.Error(), "restarted 2 times") {
		t.Fatalf("err = %v, want the breaker open", err)
	}
	// Other classes of the pack fail fast too, while the breaker is open.
	_, err = s.Run(ctx, supervisor.Call{ClassType: "test.Make", Inputs: map[string]any{"side": int64(1), "value": 0.0}}, plugins.RunHandlers{})
	if !errors.Is(err, supervisor.ErrBreakerOpen) {
		t.Fatalf("err = %v, want the breaker open", err)
	}
}

// TestTensorLostWithRestartedPlugin: a handle into a plugin that died is a
// clear error, not a wrong tensor.
func TestTensorLostWithRestartedPlugin(t *testing.T) {
	s := start(t, supervisor.Options{Packs: []supervisor.PackSource{selfPack("alpha"), selfPack("beta")}})
	ctx := context.Background()
	made, err := s.Run(ctx, supervisor.Call{ClassType: "test.Make", Inputs: map[string]any{"side": int64(8), "value": 1.0}}, plugins.RunHandlers{})
	if err != nil {
		t.Fatal(err)
	}
	pid := s.Packs()[0].Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 30*time.Second, "the supervisor to notice the kill", func() bool { return s.Packs()[0].Pid == 0 })
	_, err = s.Fetch(ctx, made.Outputs[0].(supervisor.Handle))
	if !errors.Is(err, supervisor.ErrTensorLost) {
		t.Fatalf("err = %v, want ErrTensorLost", err)
	}
}

func TestPluginFolder(t *testing.T) {
	dir := t.TempDir()
	// Not executable, or not a file: ignored.
	os.WriteFile(filepath.Join(dir, "README"), []byte("plugins live here"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "betapack")
	// A wrapper script so the folder plugin is this test binary serving "beta".
	script := "#!/bin/sh\n" + plugins.PackEnv + "=beta exec " + exe + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	srcs, err := supervisor.FolderPacks(dir)
	if err != nil || len(srcs) != 1 || srcs[0].Name != "betapack" {
		t.Fatalf("FolderPacks = %+v, %v", srcs, err)
	}
	s := start(t, supervisor.Options{PluginDir: dir})
	if c, ok := s.Class("test.Sum"); !ok || c.Pack != "betapack" {
		t.Fatalf("class %+v %v", c, ok)
	}
	if srcs, err := supervisor.FolderPacks(filepath.Join(dir, "missing")); err != nil || srcs != nil {
		t.Fatalf("missing folder: %v %v", srcs, err)
	}
	if _, err := supervisor.FolderPacks(bin); err == nil || !strings.Contains(err.Error(), "is not a folder") {
		t.Fatalf("file as folder: %v", err)
	}
	// A malformed checksum file is refused with its line.
	os.WriteFile(filepath.Join(dir, supervisor.ChecksumFile), []byte("nothex  betapack\n"), 0o644)
	if _, err := supervisor.FolderPacks(dir); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("bad checksum file: %v", err)
	}
}

// waitBreaker polls the pack's breaker until it is in state.
func waitBreaker(t *testing.T, s *supervisor.Supervisor, state string) supervisor.BreakerInfo {
	t.Helper()
	var b supervisor.BreakerInfo
	if !wait.Until(time.Minute, func() bool { b = s.Packs()[0].Breaker; return b.State == state }) {
		t.Fatalf("breaker %+v, want %s", b, state)
	}
	return b
}

// TestBreakerHalfOpenProbe: after its cooldown an open breaker lets one
// probe call through; a probe whose plugin dies opens it again, one that
// works closes it and traffic comes back.
func TestBreakerHalfOpenProbe(t *testing.T) {
	s := start(t, supervisor.Options{Packs: []supervisor.PackSource{selfPack("alpha")},
		MaxRestarts: 1, RestartWindow: time.Hour, BreakerCooldown: 200 * time.Millisecond})
	ctx := context.Background()
	crash := supervisor.Call{ClassType: "test.Crash"}
	make1 := supervisor.Call{ClassType: "test.Make", Inputs: map[string]any{"side": int64(1), "value": 0.5}}
	var err error
	for i := 0; i < 3 && !errors.Is(err, supervisor.ErrBreakerOpen); i++ {
		_, err = s.Run(ctx, crash, plugins.RunHandlers{})
	}
	var be *supervisor.BreakerError
	if !errors.As(err, &be) || be.State != supervisor.BreakerOpen || be.Pack != "alpha" ||
		!strings.Contains(err.Error(), "restarted 1 times within 1h0m0s") || !strings.Contains(err.Error(), "one probe call") {
		t.Fatalf("err = %v, want the breaker open", err)
	}
	if b := s.Packs()[0].Breaker; b.State != supervisor.BreakerOpen || b.Trips != 1 || b.OpenUntil.IsZero() {
		t.Fatalf("breaker %+v", b)
	}
	waitBreaker(t, s, supervisor.BreakerHalfOpen)
	// The probe's plugin dies: open again (Run's one retry is refused).
	if _, err := s.Run(ctx, crash, plugins.RunHandlers{}); !errors.Is(err, supervisor.ErrBreakerOpen) || !strings.Contains(err.Error(), "probe call's plugin died") {
		t.Fatalf("probe: %v, want the breaker open again", err)
	}
	if b := s.Packs()[0].Breaker; b.State != supervisor.BreakerOpen || b.Trips != 2 || !strings.Contains(b.Reason, "probe") {
		t.Fatalf("after a failed probe: %+v", b)
	}
	if _, err := s.Run(ctx, make1, plugins.RunHandlers{}); !errors.Is(err, supervisor.ErrBreakerOpen) {
		t.Fatalf("call while open again: %v", err)
	}
	waitBreaker(t, s, supervisor.BreakerHalfOpen)
	gen := s.Packs()[0].Generation
	if _, err := s.Run(ctx, make1, plugins.RunHandlers{}); err != nil {
		t.Fatalf("probe that works: %v", err)
	}
	if p := s.Packs()[0]; p.Breaker.State != supervisor.BreakerClosed || p.Generation != gen+1 || p.Restarts != 0 {
		t.Fatalf("after a probe that worked: %+v", p)
	}
	for range 3 {
		if _, err := s.Run(ctx, make1, plugins.RunHandlers{}); err != nil {
			t.Fatalf("traffic after the breaker closed: %v", err)
		}
	}
}

// TestBreakerHalfOpenLetsOneCallThrough: while the probe call runs, other
// calls to the pack fail at once with a half-open BreakerError.
func TestBreakerHalfOpenLetsOneCallThrough(t *testing.T) {
	s := start(t, supervisor.Options{Packs: []supervisor.PackSource{selfPack("alpha")},
		MaxRestarts: 1, RestartWindow: time.Hour, BreakerCooldown: 100 * time.Millisecond})
	ctx := context.Background()
	var err error
	for i := 0; i < 3 && !errors.Is(err, supervisor.ErrBreakerOpen); i++ {
		_, err = s.Run(ctx, supervisor.Call{ClassType: "test.Crash"}, plugins.RunHandlers{})
	}
	if !errors.Is(err, supervisor.ErrBreakerOpen) {
		t.Fatalf("err = %v, want the breaker open", err)
	}
	waitBreaker(t, s, supervisor.BreakerHalfOpen)
	release := filepath.Join(t.TempDir(), "release")
	probe := make(chan error, 1)
	go func() {
		_, err := s.Run(ctx, supervisor.Call{ClassType: "test.WaitFile", Inputs: map[string]any{"path": release}}, plugins.RunHandlers{})
		probe <- err
	}()
	// The probe has started the plugin and holds the one call.
	wait.For(t, time.Minute, "the probe to start the plugin", func() bool { return s.Packs()[0].Pid != 0 })
	_, err = s.Run(ctx, supervisor.Call{ClassType: "test.Make", Inputs: map[string]any{"side": int64(1), "value": 0.0}}, plugins.RunHandlers{})
	var be *supervisor.BreakerError
	if !errors.As(err, &be) || be.State != supervisor.BreakerHalfOpen || !strings.Contains(err.Error(), "one probe call is running") {
		t.Fatalf("call during the probe: %v, want a half-open refusal", err)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-probe; err != nil {
		t.Fatalf("probe: %v", err)
	}
	if b := s.Packs()[0].Breaker; b.State != supervisor.BreakerClosed {
		t.Fatalf("after the probe: %+v", b)
	}
}
