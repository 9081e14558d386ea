package plugins

import (
	"errors"
	"fmt"
	"math"

	"github.com/nodecast/nodecast/protocol"
)

// ErrInput is wrapped by every *InputError.
var ErrInput = errors.New("plugins: bad input")

// InputError says that a node input is missing or of the wrong type.
type InputError struct {
	Node   string // node id in the prompt
	Input  string
	Reason string
}

func (e *InputError) Error() string {
	return fmt.Sprintf("plugins: %s input %q: %s", e.Node, e.Input, e.Reason)
}

func (e *InputError) Unwrap() error { return ErrInput }

func (c *Call) inputErr(name, format string, args ...any) error {
	return &InputError{Node: c.NodeID, Input: name, Reason: fmt.Sprintf(format, args...)}
}

// Tensor returns a required tensor input.
func (c *Call) Tensor(name string) (*protocol.Tensor, error) {
	v, ok := c.Inputs[name]
	if !ok || v == nil {
		return nil, c.inputErr(name, "missing")
	}
	t, ok := v.(*protocol.Tensor)
	if !ok {
		return nil, c.inputErr(name, "want a tensor, got %T", v)
	}
	return t, nil
}

// OptionalTensor returns a tensor input, or nil when it is absent.
func (c *Call) OptionalTensor(name string) (*protocol.Tensor, error) {
	if v, ok := c.Inputs[name]; !ok || v == nil {
		return nil, nil
	}
	return c.Tensor(name)
}

// String returns a string input, or def when it is absent.
func (c *Call) String(name, def string) (string, error) {
	v, ok := c.Inputs[name]
	if !ok || v == nil {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", c.inputErr(name, "want a string, got %T", v)
	}
	return s, nil
}

// Int returns an integer input, or def when it is absent. Whole floats are
// accepted, since JSON clients send numbers without a type.
func (c *Call) Int(name string, def int64) (int64, error) {
	v, ok := c.Inputs[name]
	if !ok || v == nil {
		return def, nil
	}
	switch n := v.(type) {
	case int64:
		return n, nil
	case int:
		return int64(n), nil
	case float64:
		if n != math.Trunc(n) || math.Abs(n) > 1<<53 {
			return 0, c.inputErr(name, "want an integer, got %v", n)
		}
		return int64(n), nil
	}
	return 0, c.inputErr(name, "want an integer, got %T", v)
}

// Float returns a number input, or def when it is absent.
func (c *Call) Float(name string, def float64) (float64, error) {
	v, ok := c.Inputs[name]
	if !ok || v == nil {
		return def, nil
	}
	switch n := v.(type) {
	case float64:
		return n, nil
	case int64:
		return float64(n), nil
	case int:
		return float64(n), nil
	}
	return 0, c.inputErr(name, "want a number, got %T", v)
}

// Bool returns a boolean input, or def when it is absent.
func (c *Call) Bool(name string, def bool) (bool, error) {
	v, ok := c.Inputs[name]
	if !ok || v == nil {
		return def, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, c.inputErr(name, "want a boolean, got %T", v)
	}
	return b, nil
}

// MessageLimitOrDefault returns the size every WebSocket message must stay
// strictly under: MessageLimit, or protocol.DefaultMessageLimit when it is 0.
func (l Limits) MessageLimitOrDefault() int {
	if l.MessageLimit <= 0 {
		return protocol.DefaultMessageLimit
	}
	return l.MessageLimit
}
