package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/plugins/builtin"
)

// TestMain lets this test binary serve the built-in pack when a host starts
// it as a plugin subprocess (host.SelfPack), exactly as the nodecast binary
// does.
func TestMain(m *testing.M) {
	if plugins.ServeSelfPack(builtin.Pack()) {
		os.Exit(0)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// nodecastBinary builds host/cmd/nodecast once per test binary, without the
// race detector, and returns its path. Heavy image work runs in it: the
// race detector makes encoding about 30 times slower, and the host's side,
// where the concurrency is, still runs under it.
func nodecastBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "nodecast-e2e-bin")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "nodecast")
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("the go command is needed to build nodecast: %w", err)
			return
		}
		out, err := exec.Command(goTool, "build", "-o", binPath, "github.com/nodecast/nodecast/host/cmd/nodecast").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build nodecast: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// builtPack is the built-in pack served by the nodecast binary built without
// -race, as `nodecast serve` starts it (its own binary in pack mode).
func builtPack(t *testing.T) host.PackSource {
	bin := nodecastBinary(t)
	return host.PackSource{Name: builtin.PackName, Path: bin, Command: func() (*exec.Cmd, error) {
		cmd := exec.Command(bin)
		cmd.Env = []string{plugins.PackEnv + "=" + builtin.PackName} // the supervisor adds the host's environment
		return cmd, nil
	}}
}
