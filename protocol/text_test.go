package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestTextFrame checks the type 3 frame byte for byte against what ComfyUI's
// server.py send_progress_text and encode_bytes build:
// struct.pack(">I", 3) + struct.pack(">I", len(node_id)) + node_id + text.
func TestTextFrame(t *testing.T) {
	got := AppendTextFrame(nil, "12", "step 3/20 ✓")
	want := append([]byte{0, 0, 0, 3, 0, 0, 0, 2, '1', '2'}, "step 3/20 ✓"...)
	if !bytes.Equal(got, want) {
		t.Fatalf("frame % x, want % x", got, want)
	}
	id, text, err := ParseTextFrame(got)
	if err != nil || id != "12" || text != "step 3/20 ✓" {
		t.Errorf("parse: %q %q %v", id, text, err)
	}
	if typ, _ := FrameType(got); typ != BinaryText {
		t.Errorf("FrameType %d", typ)
	}
	for _, bad := range [][]byte{{0, 0, 0, 3}, {0, 0, 0, 1, 0, 0, 0, 0}, {0, 0, 0, 3, 0, 0, 0, 9, 'x'}} {
		if _, _, err := ParseTextFrame(bad); !errors.Is(err, ErrFrame) {
			t.Errorf("% x: %v, want a frame error", bad, err)
		}
	}
}

func TestCheckProgressText(t *testing.T) {
	if err := CheckProgressText("7", strings.Repeat("a", MaxProgressTextBytes)); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	err := CheckProgressText("7", strings.Repeat("a", MaxProgressTextBytes+1))
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != MaxProgressTextBytes || le.Value != MaxProgressTextBytes+1 ||
		!strings.Contains(err.Error(), "65536") || !strings.Contains(err.Error(), "65537") {
		t.Errorf("over the limit: %v, want a LimitError naming 65536 and 65537", err)
	}
	if err := CheckProgressText("7", "\xff"); !errors.Is(err, ErrFrame) {
		t.Errorf("not UTF-8: %v", err)
	}
}
