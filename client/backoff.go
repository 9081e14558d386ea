package client

import (
	"math/rand/v2"
	"time"
)

// Backoff is how long to wait before the attempt-th reconnect (0 is the
// first): Min doubling (times Factor) up to Max, each delay randomized by
// ±Jitter of itself so that many clients do not reconnect in step.
type Backoff struct {
	Min    time.Duration // 0 = 100 ms
	Max    time.Duration // 0 = 10 s
	Factor float64       // 0 = 2
	Jitter float64       // 0..1; 0 = 0.2; negative = none
}

func (b Backoff) withDefaults() Backoff {
	if b.Min <= 0 {
		b.Min = 100 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 10 * time.Second
	}
	if b.Max < b.Min {
		b.Max = b.Min
	}
	if b.Factor < 1 {
		b.Factor = 2
	}
	if b.Jitter == 0 {
		b.Jitter = 0.2
	}
	return b
}

// Delay returns the wait before reconnect number attempt.
func (b Backoff) Delay(attempt int) time.Duration {
	b = b.withDefaults()
	d := float64(b.Min)
	for i := 0; i < attempt && d < float64(b.Max); i++ {
		d *= b.Factor
	}
	d = min(d, float64(b.Max))
	if b.Jitter > 0 {
		d += d * b.Jitter * (2*rand.Float64() - 1)
	}
	return time.Duration(max(d, 0))
}
