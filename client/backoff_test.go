package client

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond, Jitter: -1}
	want := []time.Duration{10, 20, 40, 80, 100, 100}
	for i, w := range want {
		if got := b.Delay(i); got != w*time.Millisecond {
			t.Errorf("attempt %d: %v, want %v", i, got, w*time.Millisecond)
		}
	}
	j := Backoff{Min: 100 * time.Millisecond, Jitter: 0.5}
	for range 100 {
		if d := j.Delay(0); d < 50*time.Millisecond || d > 150*time.Millisecond {
			t.Fatalf("jittered delay %v outside 50..150 ms", d)
		}
	}
	if d := (Backoff{}).Delay(1000); d > 12*time.Second {
		t.Errorf("default delay after many attempts %v, want at most 10 s plus jitter", d)
	}
}
