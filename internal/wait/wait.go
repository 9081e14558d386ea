// Package wait is the one poller of the module's tests: it waits for a
// condition that some other goroutine or process makes true. Its timeout
// only keeps a broken test from hanging; no test may assert how long a wait
// took (the machines that run them are noisy).
package wait

import (
	"testing"
	"time"
)

// maxPause bounds the pause between two checks; the first checks come
// quicker, since most conditions are met within milliseconds.
const maxPause = 50 * time.Millisecond

// Until checks cond until it returns true, and reports whether it did before
// timeout passed. It is for code without a testing.TB, such as a test binary
// serving as a plugin subprocess.
func Until(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for pause := time.Millisecond; ; pause = min(2*pause, maxPause) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
	}
}

// For checks cond until it returns true; when timeout passes first, it fails
// t with "timed out after TIMEOUT waiting for WHAT". cond may call t.Fatal.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Until(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}
