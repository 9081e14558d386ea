// Package testbin is the test support for subprocesses, for every package of
// the module (examples included, which host/internal would shut out): it
// builds the module's binaries once per test process, without the race
// detector, so heavy image work runs at full speed in a real subprocess while
// the test's own side, where the concurrency under test is, runs under
// -race. Its Main is the TestMain of a test binary that doubles as plugin
// packs, and Contain keeps the processes a subprocess starts (a host's
// plugins) from outliving the test.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"

	"github.com/nodecast/nodecast/plugins"
)

// Nodecast is the package of the nodecast binary.
const Nodecast = "github.com/nodecast/nodecast/host/cmd/nodecast"

var (
	mu    sync.Mutex
	dir   string
	built = map[string]string{} // package -> binary
)

// Main is the whole TestMain of a package whose test binary doubles as
// plugin packs: started by a host as one of packs (plugins.PackEnv set), it
// serves that pack and exits; otherwise it runs the tests, removes what
// Build built and exits with the tests' status.
func Main(m *testing.M, packs ...plugins.Pack) {
	if plugins.ServeSelfPack(packs...) {
		os.Exit(0)
	}
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// Build builds pkg once per process into a temporary folder and returns the
// binary's path. Call Cleanup (Main does) after the tests.
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

// PluginDir builds pkg (once, see Build) and returns a new folder, removed
// with the test, that holds a copy of its binary named name: a plugin folder
// as a user makes one.
func PluginDir(t testing.TB, pkg, name string) string {
	t.Helper()
	bin, err := os.ReadFile(MustBuild(t, pkg))
	if err != nil {
		t.Fatal(err)
	}
	folder := filepath.Join(t.TempDir(), "plugins.d")
	if err := os.Mkdir(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(folder, name), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return folder
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
