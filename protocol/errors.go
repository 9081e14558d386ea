package protocol

import (
	"errors"
	"fmt"
)

// Sentinel errors. Typed errors below wrap them, so callers can use errors.Is
// for the kind and errors.As for the details.
var (
	ErrLimit     = errors.New("protocol: over limit")
	ErrShape     = errors.New("protocol: bad tensor shape")
	ErrDType     = errors.New("protocol: unknown dtype")
	ErrNonFinite = errors.New("protocol: non-finite value")
	ErrEventName = errors.New("protocol: bad event name")
	ErrFrame     = errors.New("protocol: malformed frame")
	ErrPart      = errors.New("protocol: bad image part")
)

// LimitError says that a value is over a limit; What names the quantity.
type LimitError struct {
	What  string
	Value int64
	Limit int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("protocol: %s %d exceeds limit %d", e.What, e.Value, e.Limit)
}

func (e *LimitError) Unwrap() error { return ErrLimit }

// ShapeError says that a tensor's shape is unusable or disagrees with its data.
type ShapeError struct {
	Shape  []int
	Reason string
}

func (e *ShapeError) Error() string {
	return fmt.Sprintf("protocol: tensor shape %v: %s", e.Shape, e.Reason)
}

func (e *ShapeError) Unwrap() error { return ErrShape }

// DTypeError names a dtype this version does not know.
type DTypeError struct{ DType DType }

func (e *DTypeError) Error() string {
	return fmt.Sprintf("protocol: unknown dtype %q (want %q or %q)", string(e.DType), Float32, Uint8)
}

func (e *DTypeError) Unwrap() error { return ErrDType }

// NonFiniteError reports the first NaN or ±Inf in a float tensor.
type NonFiniteError struct {
	Index int // element index into the flat data
	Value float32
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("protocol: non-finite value %v at element %d (values must be finite, 0..1)", e.Value, e.Index)
}

func (e *NonFiniteError) Unwrap() error { return ErrNonFinite }

// EventNameError explains why an event name was refused.
type EventNameError struct {
	Name   string
	Reason string
}

func (e *EventNameError) Error() string {
	return fmt.Sprintf("protocol: event name %q: %s", e.Name, e.Reason)
}

func (e *EventNameError) Unwrap() error { return ErrEventName }

// FrameError explains why a binary frame or JSON part could not be parsed.
type FrameError struct {
	Kind   string // "type 1", "type 4", "PART", "base64 part"
	Reason string
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("protocol: %s frame: %s", e.Kind, e.Reason)
}

func (e *FrameError) Unwrap() error { return ErrFrame }

// frameReason is the Reason of err's *FrameError, or err's text when it has
// none, so a caller re-wrapping a check's error never assumes its type.
func frameReason(err error) string {
	if fe, ok := errors.AsType[*FrameError](err); ok {
		return fe.Reason
	}
	return err.Error()
}
