package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodecast/nodecast/internal/testbin"
	"github.com/nodecast/nodecast/plugins"
)

// These tests run the real nodecast binary, built once without the race
// detector as a user builds it, with the customnode example as a plugin.
func TestMain(m *testing.M) { testbin.Main(m) }

// customnode is the example plugin the tests copy into plugin folders.
const customnode = "github.com/nodecast/nodecast/examples/customnode"

// pluginFolder returns a new folder holding the customnode plugin.
func pluginFolder(t *testing.T) string {
	t.Helper()
	return testbin.PluginDir(t, customnode, "customnode")
}

// nodecastCommand returns the binary's command with args, run in an empty
// folder (so the default ./plugins.d and ./input are the test's own) and
// with an environment that does not make it serve a pack. It runs in a
// process group of its own, killed with its plugins when ctx is done and
// when the test ends (testbin.Contain).
func nodecastCommand(ctx context.Context, t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, testbin.MustBuild(t, testbin.Nodecast), args...)
	testbin.Contain(t, cmd)
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, plugins.PackEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

// runNodecast runs the binary to its end and returns its output and exit code.
func runNodecast(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	// A hang guard, not a speed check: the longest run starts two plugins.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := nodecastCommand(ctx, t, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("nodecast %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// outputBuffer collects a running process's output and tells waiters when
// it grows.
type outputBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newOutputBuffer() *outputBuffer { return &outputBuffer{changed: make(chan struct{}, 1)} }

func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	select {
	case b.changed <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (b *outputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the output matches re and returns the first submatch,
// or fails after timeout or once exited is closed.
func (b *outputBuffer) waitFor(t *testing.T, re *regexp.Regexp, timeout time.Duration, exited <-chan struct{}) string {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		if m := re.FindStringSubmatch(b.String()); m != nil {
			return m[len(m)-1]
		}
		select {
		case <-b.changed:
		case <-exited:
			if m := re.FindStringSubmatch(b.String()); m != nil {
				return m[len(m)-1]
			}
			t.Fatalf("process exited before its output matched %s; output:\n%s", re, b.String())
		case <-timer.C:
			t.Fatalf("output did not match %s within %s; output:\n%s", re, timeout, b.String())
		}
	}
}
