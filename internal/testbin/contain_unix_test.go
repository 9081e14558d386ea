//go:build unix

package testbin

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nodecast/nodecast/internal/wait"
)

// gone reports whether process pid has ended (exited, or a zombie that
// nobody reaped yet).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) state ...: the state follows the last ')'.
	rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
	return strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

// startWithChild starts a shell that starts a long sleep and prints its pid,
// as a host starts a plugin, and returns the sleep's pid.
func startWithChild(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestContainKillsTheGroup: when the test ends, the process a contained
// command started is killed with it, whether or not the command came from
// exec.CommandContext.
func TestContainKillsTheGroup(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	for _, name := range []string{"Command", "CommandContext"} {
		var child int
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", "sleep 600 & echo $!; wait")
			if name == "CommandContext" {
				cmd = exec.CommandContext(t.Context(), "sh", "-c", "sleep 600 & echo $!; wait")
			}
			Contain(t, cmd)
			child = startWithChild(t, cmd)
			go cmd.Wait()
			if gone(child) {
				t.Fatal("the child is gone before the test ended")
			}
		})
		wait.For(t, time.Minute, fmt.Sprintf("the child %d of a contained %s to be killed", child, name), func() bool { return gone(child) })
	}
}

// TestContainCancel: a contained CommandContext's cancellation kills the
// process it started too, not only the command.
func TestContainCancel(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "sh", "-c", "sleep 600 & echo $!; wait")
	Contain(t, cmd)
	cmd.WaitDelay = time.Minute // should Contain's kill fail, Wait still returns
	child := startWithChild(t, cmd)
	cancel()
	if err := cmd.Wait(); err == nil {
		t.Fatal("the cancelled command exited 0")
	}
	wait.For(t, time.Minute, "the child of a cancelled command to be killed", func() bool { return gone(child) })
}
