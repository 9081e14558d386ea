// Package hosttest is test support for the host's packages: pack sources
// that start the real nodecast binary. Binaries are built by internal/testbin.
package hosttest

import (
	"os/exec"
	"testing"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/internal/testbin"
	"github.com/nodecast/nodecast/plugins"
)

// BuiltinPack is the built-in pack served by a built nodecast binary, as
// `nodecast serve` starts it: its own binary in pack mode.
func BuiltinPack(t testing.TB) host.PackSource {
	t.Helper()
	bin := testbin.MustBuild(t, testbin.Nodecast)
	return host.PackSource{Name: "builtin", Path: bin, Command: func() (*exec.Cmd, error) {
		cmd := exec.Command(bin)
		cmd.Env = []string{plugins.PackEnv + "=builtin"} // the supervisor adds the host's environment
		return cmd, nil
	}}
}
