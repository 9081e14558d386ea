// Package testbin builds the project's binaries for tests, once per test
// process and without the race detector: heavy image work then runs at
// full speed in a real subprocess, while the test's own side, where the
// concurrency under test is, still runs under -race.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/plugins"
)

// Nodecast is the package of the nodecast binary.
const Nodecast = "github.com/nodecast/nodecast/host/cmd/nodecast"

var (
	mu    sync.Mutex
	dir   string
	built = map[string]string{} // package -> binary
)

// Build builds pkg once per process into a temporary folder and returns the
// binary's path. Call Cleanup from TestMain after m.Run.
func Build(pkg string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if bin, ok := built[pkg]; ok {
		return bin, nil
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "nodecast-test-bin")
		if err != nil {
			return "", err
		}
		dir = d
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("testbin: the go command is needed to build %s: %w", pkg, err)
	}
	bin := filepath.Join(dir, path.Base(pkg))
	if out, err := exec.Command(goTool, "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("testbin: go build %s: %v\n%s", pkg, err, out)
	}
	built[pkg] = bin
	return bin, nil
}

// MustBuild is Build that fails t on error.
func MustBuild(t testing.TB, pkg string) string {
	t.Helper()
	bin, err := Build(pkg)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// BuiltinPack is the built-in pack served by a built nodecast binary, as
// `nodecast serve` starts it: its own binary in pack mode.
func BuiltinPack(t testing.TB) host.PackSource {
	t.Helper()
	bin := MustBuild(t, Nodecast)
	return host.PackSource{Name: "builtin", Path: bin, Command: func() (*exec.Cmd, error) {
		cmd := exec.Command(bin)
		cmd.Env = []string{plugins.PackEnv + "=builtin"} // the supervisor adds the host's environment
		return cmd, nil
	}}
}

// Cleanup removes every binary built so far.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
		dir, built = "", map[string]string{}
	}
}
