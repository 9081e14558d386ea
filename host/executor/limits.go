package executor

import (
	"fmt"
	"unicode/utf8"
)

// Defaults of the memory bounds in Options.
const (
	// DefaultHistoryBytes bounds the finished prompts kept for /history.
	DefaultHistoryBytes = 256 << 20
	// DefaultHistoryValueBytes: longer inputs are kept as placeholders. It
	// keeps file names, seeds and texts; it drops base64 images.
	DefaultHistoryValueBytes = 64 << 10
	// DefaultPromptTensorBytes is one prompt's tensor budget: 4 GiB leaves a
	// 24 GiB machine room for the garbage collector's slack, the host and a
	// second pack, and holds 80 images of 2048×2048 as float32 RGB.
	DefaultPromptTensorBytes = 4 << 30
	// maxQuotedValue bounds each value an execution_error quotes in
	// current_inputs and current_outputs, so the message stays far below
	// the WebSocket message limit whatever the prompt carried.
	maxQuotedValue = 1024
	// placeholderHead is how much of an elided value its placeholder shows.
	placeholderHead = 64
)

// elideValues returns v with every string longer than limit replaced by a
// placeholder, copying only the maps and lists on the way to one; v itself
// is never changed. The placeholder stays a string where the string was, so
// clients that read a prompt from /history or /queue find the shape they
// expect.
func elideValues[T any](v T, limit int) T {
	out, changed := elide(any(v), limit)
	if !changed {
		return v
	}
	return out.(T)
}

func elide(v any, limit int) (any, bool) {
	switch x := v.(type) {
	case string:
		if len(x) > limit {
			return placeholder(x), true
		}
	case map[string]any:
		var out map[string]any
		for k, e := range x {
			if ne, ok := elide(e, limit); ok {
				if out == nil {
					out = make(map[string]any, len(x))
					for k2, e2 := range x {
						out[k2] = e2
					}
				}
				out[k] = ne
			}
		}
		if out != nil {
			return out, true
		}
	case []any:
		var out []any
		for i, e := range x {
			if ne, ok := elide(e, limit); ok {
				if out == nil {
					out = append([]any(nil), x...)
				}
				out[i] = ne
			}
		}
		if out != nil {
			return out, true
		}
	}
	return v, false
}

// placeholder stands for a value too long to keep or quote.
func placeholder(s string) string {
	return fmt.Sprintf("<nodecast: %d-byte value elided; it began %q>", len(s), head(s, placeholderHead))
}

// head returns at most n bytes of s, cut at a rune boundary.
func head(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// shortened returns s, or its first bytes and a note saying how long it was
// when it is longer than n: what execution_error quotes of an input.
func shortened(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s... (shortened by nodecast: %d bytes in all)", head(s, n), len(s))
}
