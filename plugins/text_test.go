package plugins_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// partsOnly is an Emitter without progress text.
type partsOnly struct{}

func (partsOnly) EmitPart(context.Context, *protocol.ImagePart) error { return nil }
func (partsOnly) Progress(context.Context, int, int) error            { return nil }

// textRecorder is a TextEmitter that records what it is sent.
type textRecorder struct {
	partsOnly
	texts []string
}

func (r *textRecorder) ProgressText(_ context.Context, text string) error {
	r.texts = append(r.texts, text)
	return nil
}

// TestSendProgressText: text goes to a TextEmitter; text over the limit is
// refused with a LimitError naming the limit and the length before the
// emitter sees it; an Emitter without progress text says so.
func TestSendProgressText(t *testing.T) {
	ctx := context.Background()
	rec := &textRecorder{}
	call := &plugins.Call{NodeID: "4", Emitter: rec}
	if err := plugins.SendProgressText(ctx, call, "loading 1/2"); err != nil {
		t.Fatal(err)
	}
	err := plugins.SendProgressText(ctx, call, strings.Repeat("é", protocol.MaxProgressTextBytes/2+1))
	var le *protocol.LimitError
	if !errors.As(err, &le) || le.Limit != protocol.MaxProgressTextBytes || le.Value != protocol.MaxProgressTextBytes+2 {
		t.Errorf("over the limit: %v", err)
	}
	if err := plugins.SendProgressText(ctx, call, "bad \xff"); !errors.Is(err, protocol.ErrFrame) {
		t.Errorf("not UTF-8: %v", err)
	}
	if len(rec.texts) != 1 || rec.texts[0] != "loading 1/2" {
		t.Errorf("emitter got %q", rec.texts)
	}
	if err := plugins.SendProgressText(ctx, &plugins.Call{NodeID: "4", Emitter: partsOnly{}}, "x"); !errors.Is(err, plugins.ErrNoProgressText) {
		t.Errorf("without TextEmitter: %v", err)
	}
}
