//go:build unix

package testbin

import (
	"os/exec"
	"syscall"
	"testing"
)

// Contain makes cmd, once started, the leader of a process group of its own,
// and kills the whole group with SIGKILL when cmd's context is done (for
// exec.CommandContext) and when the test ends. A nodecast host's plugins
// are in that group: go-plugin leaves a plugin running when its host is
// killed, so killing only the host would leave the plugins running after
// the suite. Call it before cmd.Start; killing an exited group is harmless.
func Contain(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	kill := func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if cmd.Cancel != nil { // made by exec.CommandContext, whose Cancel kills cmd alone
		cmd.Cancel = kill
	}
	t.Cleanup(func() {
		if cmd.Process != nil {
			_ = kill()
		}
	})
}
