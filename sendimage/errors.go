package sendimage

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. The typed errors below wrap them, so callers can use
// errors.Is for the kind and errors.As for the details.
var (
	ErrUnknownEncoder = errors.New("sendimage: unknown encoder")
	ErrPixels         = errors.New("sendimage: bad pixels")
	ErrOption         = errors.New("sendimage: bad option")
)

// UnknownEncoderError names an encoder that is not registered, and the ones
// that are.
type UnknownEncoderError struct {
	Name  string
	Known []string // sorted
}

func (e *UnknownEncoderError) Error() string {
	return fmt.Sprintf("sendimage: unknown encoder %q (known: %s)", e.Name, strings.Join(e.Known, ", "))
}

func (e *UnknownEncoderError) Unwrap() error { return ErrUnknownEncoder }

// PixelsError says why a Pixels value cannot be encoded.
type PixelsError struct{ Reason string }

func (e *PixelsError) Error() string { return "sendimage: pixels: " + e.Reason }

func (e *PixelsError) Unwrap() error { return ErrPixels }

// OptionError says that an option of an encoder or of Send is out of range.
type OptionError struct {
	Owner  string // encoder name, or "send"
	Option string // field name, e.g. "Quality"
	Value  any
	Reason string
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("sendimage: %s option %s=%v: %s", e.Owner, e.Option, e.Value, e.Reason)
}

func (e *OptionError) Unwrap() error { return ErrOption }
