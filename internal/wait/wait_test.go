package wait

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestUntilSeesAChangeFromAnotherGoroutine(t *testing.T) {
	var done atomic.Bool
	go func() { time.Sleep(20 * time.Millisecond); done.Store(true) }()
	if !Until(time.Minute, done.Load) {
		t.Fatal("Until gave up on a condition that came true")
	}
}

func TestUntilGivesUp(t *testing.T) {
	calls := 0
	if Until(30*time.Millisecond, func() bool { calls++; return false }) {
		t.Fatal("Until reported a condition that never came true")
	}
	if calls < 2 {
		t.Fatalf("cond checked %d times, want it checked again after a pause", calls)
	}
}

// fakeTB records a Fatalf instead of stopping the test.
type fakeTB struct {
	testing.TB
	msg string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Fatalf(format string, args ...any) { f.msg = fmt.Sprintf(format, args...) }

func TestForFailsNamingWhat(t *testing.T) {
	f := &fakeTB{TB: t}
	For(f, 10*time.Millisecond, "the pack to restart", func() bool { return false })
	if !strings.Contains(f.msg, "waiting for the pack to restart") {
		t.Fatalf("For failed with %q, want it to name what it waited for", f.msg)
	}
}
