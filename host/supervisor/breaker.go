package supervisor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nodecast/nodecast/plugins"
)

// Breaker states, as PackInfo shows them.
const (
	BreakerClosed   = "closed"    // calls run; crashes are counted
	BreakerOpen     = "open"      // calls fail at once with ErrBreakerOpen
	BreakerHalfOpen = "half_open" // the next call is the one probe
)

type breakerState int

const (
	breakerClosed breakerState = iota
	breakerOpen
	breakerHalfOpen
)

func (s breakerState) String() string {
	return [...]string{BreakerClosed, BreakerOpen, BreakerHalfOpen}[s]
}

// breaker is a pack's crash-loop breaker. The pack's mu guards it.
type breaker struct {
	state     breakerState
	openUntil time.Time // while open: when the next call may probe
	reason    string    // why it opened last
	probing   bool      // half-open: the probe call is running
	trips     uint64    // times it opened
}

// BreakerInfo is a pack's breaker for /metrics and /system_stats.
type BreakerInfo struct {
	State     string    // BreakerClosed, BreakerOpen or BreakerHalfOpen
	OpenUntil time.Time // while open: when one probe call will be let through
	Reason    string    // why it opened last; "" when it never did
	Trips     uint64    // times it opened since the host started
}

// BreakerError is a call refused by an open breaker. It wraps ErrBreakerOpen.
type BreakerError struct {
	Pack      string
	State     string
	Reason    string
	OpenUntil time.Time // zero while the probe runs
}

func (e *BreakerError) Error() string {
	if e.State == BreakerHalfOpen {
		return fmt.Sprintf("supervisor: pack %s: crash-loop breaker half-open (%s): one probe call is running; try again when it ends",
			e.Pack, e.Reason)
	}
	return fmt.Sprintf("supervisor: pack %s: crash-loop breaker open (%s): calls fail until %s, then one probe call may restart it "+
		"(limits.breaker_restarts, breaker_window, breaker_cooldown)", e.Pack, e.Reason, e.OpenUntil.Format(time.RFC3339))
}

func (e *BreakerError) Unwrap() error { return ErrBreakerOpen }

// ExceptionType is how clients see it in execution_error.
func (e *BreakerError) ExceptionType() string { return "nodecast.BreakerOpen" }

// openBreaker opens the breaker for the cooldown. Callers hold p.mu.
func (p *pack) openBreaker(now time.Time, reason string) {
	b := &p.breaker
	b.state, b.probing, b.reason = breakerOpen, false, reason
	b.openUntil = now.Add(p.s.opts.BreakerCooldown)
	b.trips++
	p.s.log.Error("plugin crash loop: breaker open", "pack", p.src.Name, "reason", reason,
		"cooldown", p.s.opts.BreakerCooldown, "probe_after", b.openUntil.Format(time.RFC3339))
}

// breakerRefusal returns the error for a call the breaker refuses, moving
// an open breaker whose cooldown has passed to half-open. Callers hold p.mu.
func (p *pack) breakerRefusal(now time.Time) error {
	b := &p.breaker
	switch {
	case b.state == breakerOpen && !now.Before(b.openUntil):
		b.state = breakerHalfOpen
		p.s.log.Warn("plugin breaker half-open: the next call probes", "pack", p.src.Name)
		return nil
	case b.state == breakerOpen:
		return &BreakerError{Pack: p.src.Name, State: BreakerOpen, Reason: b.reason, OpenUntil: b.openUntil}
	case b.state == breakerHalfOpen && b.probing:
		return &BreakerError{Pack: p.src.Name, State: BreakerHalfOpen, Reason: b.reason}
	}
	return nil
}

// probeDone ends the probe call: a plugin that served it (whatever the
// node's own outcome) closes the breaker, one that died opens it again. A
// probe cancelled by its caller says nothing: the next call probes.
func (p *pack) probeDone(ctx context.Context, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := &p.breaker
	if b.state != breakerHalfOpen {
		return
	}
	b.probing = false
	switch {
	case err != nil && ctx.Err() != nil:
	case errors.Is(err, plugins.ErrUnavailable) || (p.proc != nil && p.proc.Exited()):
		p.openBreaker(time.Now(), "the probe call's plugin died too")
	default:
		b.state = breakerClosed
		p.restarts = nil
		p.s.log.Info("plugin breaker closed: the probe call worked", "pack", p.src.Name)
	}
}

// breakerInfo describes the breaker. Callers hold p.mu.
func (p *pack) breakerInfo(now time.Time) BreakerInfo {
	b := p.breaker
	info := BreakerInfo{State: b.state.String(), Reason: b.reason, Trips: b.trips}
	if b.state == breakerOpen {
		if !now.Before(b.openUntil) {
			info.State = BreakerHalfOpen
		} else {
			info.OpenUntil = b.openUntil
		}
	}
	return info
}
