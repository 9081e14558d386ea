package supervisor_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodecast/nodecast/host/metrics"
	"github.com/nodecast/nodecast/host/supervisor"
	"github.com/nodecast/nodecast/internal/wait"
	"github.com/nodecast/nodecast/plugins"
)

// startGateEnv names a file a test pack waits for before it serves: a
// plugin whose start lasts exactly as long as the test wants.
const startGateEnv = "NODECAST_TEST_START_GATE"

// holdStartUntilGate, in a plugin process started with startGateEnv, waits
// until the gate file exists.
func holdStartUntilGate() {
	gate := os.Getenv(startGateEnv)
	if gate == "" || os.Getenv(plugins.PackEnv) == "" {
		return
	}
	// The pid tells a test which process this start made.
	os.WriteFile(gate+".pid", []byte(strconv.Itoa(os.Getpid())), 0o644)
	wait.Until(hangGuard, func() bool { _, err := os.Stat(gate); return err == nil })
}

// closeGateAndRestart kills the pack's plugin with its gate closed and
// starts a call that restarts it, returning once the restart is under way.
// The call's outcome arrives on the channel.
func closeGateAndRestart(ctx context.Context, t *testing.T, s *supervisor.Supervisor, gate string, call supervisor.Call) <-chan error {
	t.Helper()
	if err := os.Remove(gate); err != nil {
		t.Fatal(err)
	}
	os.Remove(gate + ".pid")
	if err := syscall.Kill(s.Packs()[0].Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wait.For(t, hangGuard, "the kill to be noticed", func() bool { return s.Packs()[0].Pid == 0 })
	ran := make(chan error, 1)
	go func() {
		_, err := s.Run(ctx, call, plugins.RunHandlers{})
		ran <- err
	}()
	wait.For(t, hangGuard, "the restart to begin", func() bool { return s.Packs()[0].Starting })
	return ran
}

// hangGuard bounds waits that only a broken supervisor would exhaust.
const hangGuard = time.Minute

// TestReadersDoNotWaitForAStart restarts a plugin whose start is held at a
// gate, and meanwhile scrapes /metrics and calls Packs and Live: they answer
// while the start is still under way (it cannot end before the gate opens),
// and the call that started it succeeds once it does.
func TestReadersDoNotWaitForAStart(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	if err := os.WriteFile(gate, nil, 0o644); err != nil { // the first start passes
		t.Fatal(err)
	}
	s := start(t, supervisor.Options{Packs: []supervisor.PackSource{selfPack("alpha")},
		Env: []string{startGateEnv + "=" + gate}, StartTimeout: 2 * time.Minute})
	reg, err := metrics.NewRegistry(metrics.Sources{Supervisor: s})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(metrics.Handler(reg, nil))
	defer srv.Close()
	ctx := t.Context()
	make1 := supervisor.Call{ClassType: "test.Make", Inputs: map[string]any{"side": int64(1), "value": 0.5}}
	made, err := s.Run(ctx, make1, plugins.RunHandlers{})
	if err != nil {
		t.Fatal(err)
	}
	h := made.Outputs[0].(supervisor.Handle)

	// Close the gate and kill the plugin: the next call restarts it and
	// waits at the gate.
	ran := closeGateAndRestart(ctx, t, s, gate, make1)

	type reading struct {
		scrape string
		err    error
		packs  []supervisor.PackInfo
		live   bool
	}
	read := make(chan reading, 1)
	go func() {
		var r reading
		r.scrape, r.err = scrape(srv.URL)
		r.packs = s.Packs()
		r.live = s.Live(h)
		read <- r
	}()
	var r reading
	select {
	case r = <-read:
	case <-time.After(hangGuard):
		os.WriteFile(gate, nil, 0o644) // let the start end so cleanup can run
		t.Fatal("/metrics, Packs and Live blocked while the pack started")
	}
	select {
	case err := <-ran:
		t.Fatalf("the restart ended with its gate closed (err %v): the readers proved nothing", err)
	default:
	}
	if r.err != nil {
		t.Fatalf("scrape during the start: %v", r.err)
	}
	if !strings.Contains(r.scrape, `nodecast_plugin_up{pack="alpha"} 0`) || !strings.Contains(r.scrape, `nodecast_plugin_generation{pack="alpha"} 1`) {
		t.Errorf("scrape during the start lacks alpha down in generation 1:\n%s", r.scrape)
	}
	if p := r.packs[0]; !p.Starting || p.Pid != 0 || p.Generation != 1 {
		t.Errorf("Packs during the start: %+v, want starting, no pid, generation 1", p)
	}
	if r.live {
		t.Error("Live: a handle of the dead generation reported live")
	}

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-ran; err != nil {
		t.Fatalf("the call that restarted the pack: %v", err)
	}
	if p := s.Packs()[0]; p.Starting || p.Pid == 0 || p.Generation != 2 {
		t.Errorf("Packs after the start: %+v, want running generation 2", p)
	}
	body, err := scrape(srv.URL)
	if err != nil || !strings.Contains(body, `nodecast_plugin_up{pack="alpha"} 1`) || !strings.Contains(body, `nodecast_plugin_generation{pack="alpha"} 2`) {
		t.Errorf("scrape after the start (err %v) lacks alpha up in generation 2:\n%s", err, body)
	}
}

func scrape(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	return string(b), err
}

// TestCloseDuringAStart: Close while a restart is held at its gate waits
// for that start, which then kills the process it made; the call that
// started it fails with ErrClosed, and no plugin process is left.
func TestCloseDuringAStart(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := supervisor.Start(t.Context(), supervisor.Options{Packs: []supervisor.PackSource{selfPack("alpha")},
		Env: []string{startGateEnv + "=" + gate}, StartTimeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ran := closeGateAndRestart(t.Context(), t, s, gate, supervisor.Call{ClassType: "test.Make", Inputs: map[string]any{"side": int64(1), "value": 0.5}})
	var pid int
	wait.For(t, hangGuard, "the restarted plugin's pid", func() bool {
		b, _ := os.ReadFile(gate + ".pid")
		pid, _ = strconv.Atoi(string(b))
		return pid != 0
	})
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a start was under way")
	case err := <-ran:
		t.Fatalf("the call ended (%v) while its start was held at the gate", err)
	default:
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	<-closed
	// Checked as soon as Close returns: it must have waited for the start
	// and for the kill of what the start made.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("plugin process %d after Close: kill(0) = %v, want it gone (ESRCH)", pid, err)
	}
	if p := s.Packs()[0]; p.Pid != 0 || p.Starting {
		t.Errorf("Packs after Close: %+v", p)
	}
	if err := <-ran; !errors.Is(err, supervisor.ErrClosed) {
		t.Errorf("the call that started the pack: err = %v, want ErrClosed", err)
	}
}

// TestCancelledStarterDoesNotFailWaiters: the call that started a pack is
// cancelled while the start is held; a call that waited for that start is
// not failed by another caller's context: it starts the pack itself.
func TestCancelledStarterDoesNotFailWaiters(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, supervisor.Options{Packs: []supervisor.PackSource{selfPack("alpha")},
		Env: []string{startGateEnv + "=" + gate}, StartTimeout: 2 * time.Minute})
	make1 := supervisor.Call{ClassType: "test.Make", Inputs: map[string]any{"side": int64(1), "value": 0.5}}
	ctx, cancel := context.WithCancel(t.Context())
	starter := closeGateAndRestart(ctx, t, s, gate, make1)
	waiter := make(chan error, 1)
	go func() {
		_, err := s.Run(t.Context(), make1, plugins.RunHandlers{})
		waiter <- err
	}()
	cancel()
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-starter; !errors.Is(err, context.Canceled) {
		t.Errorf("the cancelled starter: err = %v, want context.Canceled", err)
	}
	if err := <-waiter; err != nil {
		t.Errorf("the other call: %v, want it to start the pack itself", err)
	}
	if p := s.Packs()[0]; p.Pid == 0 || p.Generation != 2 {
		t.Errorf("Packs: %+v, want running generation 2", p)
	}
}

// TestCommandErrorFailsStart: a pack whose command cannot be made fails the
// start with that error, not with an attempt to run some other binary.
func TestCommandErrorFailsStart(t *testing.T) {
	gone := errors.New("binary gone")
	_, err := supervisor.Start(context.Background(), supervisor.Options{Packs: []supervisor.PackSource{
		{Name: "gone", Command: func() (*exec.Cmd, error) { return nil, gone }},
	}})
	if !errors.Is(err, gone) || !strings.Contains(err.Error(), "pack gone") {
		t.Fatalf("err = %v, want the command's error for pack gone", err)
	}
}

func TestDuplicatePackRefused(t *testing.T) {
	_, err := supervisor.Start(context.Background(), supervisor.Options{Packs: []supervisor.PackSource{selfPack("beta"), selfPack("beta")}})
	var dup *supervisor.DuplicatePackError
	if !errors.As(err, &dup) || dup.Name != "beta" {
		t.Fatalf("err = %v, want a DuplicatePackError naming beta", err)
	}
}
