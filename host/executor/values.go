package executor

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/nodecast/nodecast/plugins"
)

// This file holds the value side of validation: converting a prompt's
// literals to the Go types nodes receive, and formatting values as Python's
// str() does, so that error messages read as ComfyUI's. validate.go holds
// the graph side.

// tensorTypes cannot be given as literal values: they only come from links.
var tensorTypes = map[string]bool{plugins.TypeImage: true, plugins.TypeMask: true}

// convertValue converts a literal to the Go type a node receives: int64 for
// INT, float64 for FLOAT, string for STRING and COMBO, bool for BOOLEAN; other
// types pass through as decoded JSON.
func convertValue(typ string, val any) (any, error) {
	switch typ {
	case plugins.TypeInt:
		switch x := val.(type) {
		case string:
			n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("invalid literal for int(): %q", x)
			}
			return n, nil
		case bool:
			return nil, fmt.Errorf("a boolean is not an integer")
		}
		n, ok := wholeNumber(val)
		if !ok {
			return nil, fmt.Errorf("not an integer")
		}
		return n, nil
	case plugins.TypeFloat:
		if s, ok := val.(string); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("could not convert string to float: %q", s)
			}
			return f, nil
		}
		f, ok := asFloat(val)
		if !ok {
			return nil, fmt.Errorf("not a number")
		}
		return f, nil
	case plugins.TypeString:
		switch x := val.(type) {
		case string:
			return x, nil
		case bool, nil, map[string]any:
			return nil, fmt.Errorf("not a string")
		}
		if _, ok := asFloat(val); ok {
			return pyStr(val), nil
		}
		return nil, fmt.Errorf("not a string")
	case plugins.TypeBoolean:
		switch x := val.(type) {
		case bool:
			return x, nil
		case string:
			switch strings.ToLower(strings.TrimSpace(x)) {
			case "true", "1":
				return true, nil
			case "false", "0":
				return false, nil
			}
			return nil, fmt.Errorf("not a boolean: %q", x)
		}
		if f, ok := asFloat(val); ok {
			return f != 0, nil
		}
		return nil, fmt.Errorf("not a boolean")
	case plugins.TypeCombo:
		if s, ok := val.(string); ok {
			return s, nil
		}
		return nil, fmt.Errorf("a choice must be a string")
	}
	if tensorTypes[typ] {
		return nil, fmt.Errorf("an %s input must be linked to a node's output", typ)
	}
	return val, nil
}

// wholeNumber returns val as an int64 when it is an integral number.
func wholeNumber(val any) (int64, bool) {
	switch x := val.(type) {
	case int:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, true
		}
		f, err := x.Float64()
		if err != nil {
			return 0, false
		}
		return wholeNumber(f)
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<63-1024 || math.IsNaN(x) {
			return 0, false
		}
		return int64(x), true
	case float32:
		return wholeNumber(float64(x))
	}
	return 0, false
}

// asFloat returns val as a float64 when it is a finite number.
func asFloat(val any) (float64, bool) {
	var f float64
	switch x := val.(type) {
	case int:
		f = float64(x)
	case int32:
		f = float64(x)
	case int64:
		f = float64(x)
	case float32:
		f = float64(x)
	case float64:
		f = x
	case json.Number:
		v, err := x.Float64()
		if err != nil {
			return 0, false
		}
		f = v
	default:
		return 0, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

func isTrue(v any) bool {
	b, ok := v.(bool)
	return ok && b
}

// pyStr formats a value as Python's str() would, for messages that match ComfyUI's.
func pyStr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case string:
		return x
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e16 {
			return strconv.FormatFloat(x, 'f', 1, 64)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case json.Number:
		return x.String()
	}
	if n, ok := wholeNumber(v); ok {
		return strconv.FormatInt(n, 10)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// pyList formats strings as Python's str(list) would.
func pyList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = "'" + s + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
