//go:build !unix

package testbin

import (
	"os/exec"
	"testing"
)

// Contain kills cmd when the test ends (on Unix, its whole process group).
func Contain(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	t.Cleanup(func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	})
}
