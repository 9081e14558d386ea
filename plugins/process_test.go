package plugins_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// selfCmd runs this test binary as the plugin serving testPack.
func selfCmd(name string) func() (*exec.Cmd, error) {
	return func() (*exec.Cmd, error) { return plugins.SelfPackCommand(name) }
}

func startSelf(tb testing.TB, logger *slog.Logger, checksum []byte) *plugins.Process {
	tb.Helper()
	p, err := plugins.Start(context.Background(), plugins.ProcessConfig{
		Cmd: selfCmd(testPackName), Checksum: checksum, Logger: logger,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Kill)
	return p
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError + 1}))
}

func ownChecksum(tb testing.TB) []byte {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return sum[:]
}

// TestProcess runs the test pack as a real subprocess and moves messages
// larger than gRPC's 4 MiB default both ways.
func TestProcess(t *testing.T) {
	rec := newLogRecorder()
	p := startSelf(t, slog.New(rec), ownChecksum(t))
	c := p.Client()
	ctx := t.Context()
	if p.Pid() <= 0 || p.Pid() == os.Getpid() || p.Exited() {
		t.Fatalf("pid %d, exited %v", p.Pid(), p.Exited())
	}

	pack, specs, err := c.Describe(ctx)
	if err != nil || pack != testPackName || len(specs) != len(testPack().Nodes) {
		t.Fatalf("Describe = %q, %d specs, %v", pack, len(specs), err)
	}

	t.Run("8 MiB tensor in and out", func(t *testing.T) {
		in := randomTensor(protocol.Float32, 2, 1024, 1024, 1)
		ref, err := c.PutTensor(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Run(ctx, plugins.RunRequest{ClassType: "test.Invert", Inputs: map[string]any{"image": ref}}, plugins.RunHandlers{})
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.GetTensor(ctx, res.Outputs[0].(plugins.TensorRef))
		if err != nil {
			t.Fatal(err)
		}
		want := protocol.NewFloat32(in.Shape...)
		dst := want.Float32s()
		for i, v := range in.Float32s() {
			dst[i] = 1 - v
		}
		if !bytes.Equal(out.Data, want.Data) {
			t.Error("inverted tensor differs")
		}
		if err := c.Release(ctx, ref.ID, res.Outputs[0].(plugins.TensorRef).ID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("5 MiB parts", func(t *testing.T) {
		const size = 5 << 20
		n := 0
		_, err := c.Run(ctx, plugins.RunRequest{ClassType: "test.Parts", NodeID: "4",
			Inputs: map[string]any{"count": 3, "size": size}},
			plugins.RunHandlers{Part: func(p *protocol.ImagePart) error {
				if p.Part != n || !bytes.Equal(p.Data, partData(n, size)) {
					t.Errorf("part %d: got part %d of %d bytes", n, p.Part, len(p.Data))
				}
				n++
				return nil
			}})
		if err != nil || n != 3 {
			t.Fatalf("%d parts, err %v", n, err)
		}
	})

	t.Run("5 MiB input", func(t *testing.T) {
		big := strings.Repeat("nodecast", 5<<20/8)
		res, err := c.Run(ctx, plugins.RunRequest{ClassType: "test.Echo", Inputs: map[string]any{"s": big}}, plugins.RunHandlers{})
		if err != nil {
			t.Fatal(err)
		}
		if s, _ := res.Outputs[0].(string); s != big {
			t.Errorf("echoed %d bytes, want %d", len(s), len(big))
		}
	})

	t.Run("plugin output is logged at info", func(t *testing.T) {
		if _, err := c.Run(ctx, plugins.RunRequest{ClassType: "test.Log"}, plugins.RunHandlers{}); err != nil {
			t.Fatal(err)
		}
		for _, line := range []string{"hello from the log package", "hello from stderr", "hello from stdout"} {
			if lv := rec.waitFor(t, line); lv != slog.LevelInfo {
				t.Errorf("%q logged at %v, want INFO", line, lv)
			}
		}
	})

	p.Kill()
	if !p.Exited() {
		t.Error("Exited() is false after Kill")
	}
	<-p.Done()
	_, _, err = c.Describe(ctx)
	if !errors.Is(err, plugins.ErrUnavailable) || !strings.Contains(err.Error(), "exited") {
		t.Errorf("Describe after Kill: err = %v, want ErrUnavailable saying the process exited", err)
	}
}

// TestProcessEnv checks that the plugin inherits the host's environment and
// that the command's own Env overrides it.
func TestProcessEnv(t *testing.T) {
	t.Setenv("NODECAST_TEST_INHERITED", "from host")
	t.Setenv("NODECAST_TEST_OVERRIDDEN", "from host")
	p, err := plugins.Start(t.Context(), plugins.ProcessConfig{Logger: quietLogger(), Cmd: func() (*exec.Cmd, error) {
		cmd, err := selfCmd(testPackName)()
		if err != nil {
			return nil, err
		}
		cmd.Env = append(cmd.Env, "NODECAST_TEST_OVERRIDDEN=from command")
		return cmd, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	for name, want := range map[string]string{
		"NODECAST_TEST_INHERITED":  "from host",
		"NODECAST_TEST_OVERRIDDEN": "from command",
	} {
		res, err := p.Client().Run(t.Context(), plugins.RunRequest{ClassType: "test.Env", Inputs: map[string]any{"name": name}}, plugins.RunHandlers{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Outputs[0] != want {
			t.Errorf("%s = %q in the plugin, want %q", name, res.Outputs[0], want)
		}
	}
}

// TestProcessKilled kills the plugin with SIGKILL in the middle of a run.
func TestProcessKilled(t *testing.T) {
	p := startSelf(t, quietLogger(), nil)
	c := p.Client()
	started := make(chan struct{})
	runErr := make(chan error, 1)
	go func() {
		_, err := c.Run(context.Background(), plugins.RunRequest{ClassType: "test.Block"},
			plugins.RunHandlers{Progress: func(int, int) { close(started) }})
		runErr <- err
	}()
	<-started
	proc, err := os.FindProcess(p.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if !p.Exited() {
		t.Error("Exited() is false after Done")
	}
	if err := <-runErr; !errors.Is(err, plugins.ErrUnavailable) {
		t.Errorf("run in flight: err = %v, want ErrUnavailable", err)
	}
	for name, call := range map[string]func() error{
		"Describe": func() error { _, _, err := c.Describe(t.Context()); return err },
		"Run": func() error {
			_, err := c.Run(t.Context(), plugins.RunRequest{ClassType: "test.Echo"}, plugins.RunHandlers{})
			return err
		},
		"PutTensor": func() error { _, err := c.PutTensor(t.Context(), protocol.NewFloat32(1)); return err },
		"GetTensor": func() error { _, err := c.GetTensor(t.Context(), plugins.TensorRef{ID: "x"}); return err },
		"Release":   func() error { return c.Release(t.Context(), "x") },
	} {
		err := call()
		var ce *plugins.CallError
		if !errors.As(err, &ce) || ce.Op != name || !errors.Is(err, plugins.ErrUnavailable) {
			t.Errorf("%s after the kill: err = %v, want a %s *CallError of ErrUnavailable", name, err, name)
		}
	}
	p.Kill() // after the process died on its own: returns at once
}

func TestProcessChecksum(t *testing.T) {
	good := ownChecksum(t)
	wrong := sha256.Sum256([]byte("some other binary"))
	_, err := plugins.Start(t.Context(), plugins.ProcessConfig{Cmd: selfCmd(testPackName), Checksum: wrong[:], Logger: quietLogger()})
	var ce *plugins.ChecksumError
	if !errors.As(err, &ce) || !errors.Is(err, plugins.ErrChecksum) {
		t.Fatalf("err = %v, want a *ChecksumError", err)
	}
	exe, _ := os.Executable()
	if ce.Path != exe || !bytes.Equal(ce.Got, good) || !bytes.Equal(ce.Want, wrong[:]) {
		t.Errorf("ChecksumError = %+v", ce)
	}
	if !strings.Contains(err.Error(), exe) {
		t.Errorf("error %q does not name the binary", err)
	}

	_, err = plugins.Start(t.Context(), plugins.ProcessConfig{Cmd: selfCmd(testPackName), Checksum: good[:16], Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "checksum is 16 bytes") {
		t.Errorf("short checksum: err = %v", err)
	}
}

func TestProcessStartErrors(t *testing.T) {
	t.Run("unknown built-in pack", func(t *testing.T) {
		rec := newLogRecorder()
		_, err := plugins.Start(t.Context(), plugins.ProcessConfig{Cmd: selfCmd("no-such-pack"), Logger: slog.New(rec)})
		if err == nil {
			t.Fatal("started a binary that has no such pack")
		}
		// go-plugin has read all of the plugin's stderr when Start fails.
		if lv, ok := rec.find(`NODECAST_SERVE_PACK="no-such-pack" names none of this binary's packs`); !ok || lv != slog.LevelError {
			t.Errorf("the plugin's reason was not logged at ERROR (found %v, level %v); error: %v", ok, lv, err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := plugins.Start(ctx, plugins.ProcessConfig{Cmd: selfCmd(testPackName), Logger: quietLogger()})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("no command", func(t *testing.T) {
		if _, err := plugins.Start(t.Context(), plugins.ProcessConfig{}); err == nil {
			t.Error("started without a command")
		}
		if _, err := plugins.Start(t.Context(), plugins.ProcessConfig{Cmd: func() (*exec.Cmd, error) { return nil, nil }}); err == nil {
			t.Error("started a nil command")
		}
		errNoBinary := errors.New("no such binary")
		_, err := plugins.Start(t.Context(), plugins.ProcessConfig{Cmd: func() (*exec.Cmd, error) { return nil, errNoBinary }})
		if !errors.Is(err, errNoBinary) {
			t.Errorf("command error: err = %v, want it wrapped", err)
		}
	})
}

// logRecorder is a slog.Handler that keeps messages and lets a test wait for one.
type logRecorder struct {
	mu      sync.Mutex
	changed chan struct{}
	msgs    []string
	levels  []slog.Level
}

func newLogRecorder() *logRecorder { return &logRecorder{changed: make(chan struct{})} }

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	r.levels = append(r.levels, rec.Level)
	close(r.changed)
	r.changed = make(chan struct{})
	return nil
}

func (r *logRecorder) find(substr string) (slog.Level, bool) {
	lv, ok, _ := r.lookup(substr)
	return lv, ok
}

func (r *logRecorder) lookup(substr string) (slog.Level, bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, m := range r.msgs {
		if strings.Contains(m, substr) {
			return r.levels[i], true, nil
		}
	}
	return 0, false, r.changed
}

// waitFor waits for a message containing substr. Plugin output arrives
// asynchronously; the deadline only turns a lost line into a failure.
func (r *logRecorder) waitFor(t *testing.T, substr string) slog.Level {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		lv, ok, changed := r.lookup(substr)
		if ok {
			return lv
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no log message containing %q", substr)
		}
	}
}
