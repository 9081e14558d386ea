package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// recorder is an Emitter that keeps what a node emits.
type recorder struct {
	parts    []*protocol.ImagePart
	progress [][2]int
}

func (r *recorder) EmitPart(_ context.Context, p *protocol.ImagePart) error {
	c := *p
	c.Data = append([]byte(nil), p.Data...)
	r.parts = append(r.parts, &c)
	return nil
}

func (r *recorder) Progress(_ context.Context, value, max int) error {
	r.progress = append(r.progress, [2]int{value, max})
	return nil
}

// gradientBatch returns a float32 IMAGE [n,h,w,c] whose values cover 0..1
// and step outside it, so conversion clips and truncates.
func gradientBatch(n, h, w, c int) *protocol.Tensor {
	t := protocol.NewFloat32(n, h, w, c)
	v := t.Float32s()
	for i := range v {
		v[i] = float32(i%300)/280 - 0.02
	}
	return t
}

// expectedRGBA converts image i of an IMAGE tensor as ComfyUI does, written
// out here independently of sendimage: uint8(clip(255*x, 0, 255)), truncating,
// then widened to RGBA as a QOI decoder gives it.
func expectedRGBA(t *protocol.Tensor, i int) []byte {
	h, w, c := t.Shape[1], t.Shape[2], t.Shape[3]
	v := t.Float32s()[i*h*w*c : (i+1)*h*w*c]
	out := make([]byte, 0, h*w*4)
	for p := 0; p < h*w; p++ {
		px := [4]byte{0, 0, 0, 255}
		for k := range c {
			y := 255 * v[p*c+k]
			y = min(max(y, 0), 255)
			px[k] = byte(y)
		}
		out = append(out, px[:]...)
	}
	return out
}

// TestSendImageQOIInProcess runs the node with a recording Emitter, without
// a host: parts reassemble into QOI images of the right pixels.
func TestSendImageQOIInProcess(t *testing.T) {
	images := gradientBatch(3, 10, 13, 4)
	rec := &recorder{}
	res, err := sendImageQOI{}.Run(context.Background(), &plugins.Call{
		NodeID: "7", PromptID: "p1", Emitter: rec,
		Inputs: map[string]any{"images": images, "event": "qoi.test", "part_size": int64(64)},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := protocol.NewReassembler(protocol.ReassemblerOptions{})
	var got []*protocol.Image
	for _, p := range rec.parts {
		if p.Event != "qoi.test" || p.MIME != "image/qoi" || p.Wire != protocol.WireParts || p.Node != "7" || p.PromptID != "p1" {
			t.Fatalf("part %+v", p.PartHeader)
		}
		img, err := r.Add(p)
		if err != nil {
			t.Fatal(err)
		}
		if img != nil {
			got = append(got, img)
		}
	}
	if len(got) != 3 || len(rec.parts) <= 3 {
		t.Fatalf("%d images from %d parts, want 3 images in more parts", len(got), len(rec.parts))
	}
	for i, img := range got {
		_, _, ch, rgba, err := decodeQOI(img.Data)
		if err != nil {
			t.Fatal(err)
		}
		if ch != 4 || string(rgba) != string(expectedRGBA(images, i)) {
			t.Fatalf("image %d: channels %d, pixels differ from the tensor's", i, ch)
		}
	}
	if want := [][2]int{{1, 3}, {2, 3}, {3, 3}}; fmt.Sprint(rec.progress) != fmt.Sprint(want) {
		t.Fatalf("progress %v, want %v", rec.progress, want)
	}
	ui, _ := res.UI["images"].([]any)
	if len(ui) != 3 || ui[1].(map[string]any)["sha256"] != got[1].SHA256 {
		t.Fatalf("ui %v", res.UI)
	}
}

// TestSendImageQOIRefuses checks that bad inputs fail before any part is
// emitted.
func TestSendImageQOIRefuses(t *testing.T) {
	good := gradientBatch(1, 4, 4, 3)
	tests := []struct {
		name   string
		inputs map[string]any
		want   error
	}{
		{"no images", map[string]any{}, plugins.ErrInput},
		{"reserved event", map[string]any{"images": good, "event": "executed"}, protocol.ErrEventName},
		{"bad event", map[string]any{"images": good, "event": "a b"}, protocol.ErrEventName},
		{"negative part size", map[string]any{"images": good, "part_size": int64(-1)}, plugins.ErrInput},
		{"part size a string", map[string]any{"images": good, "part_size": "big"}, plugins.ErrInput},
		{"two channels", map[string]any{"images": protocol.NewFloat32(1, 4, 4, 2)}, protocol.ErrShape},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			_, err := sendImageQOI{}.Run(context.Background(), &plugins.Call{NodeID: "1", Emitter: rec, Inputs: tt.inputs})
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if len(rec.parts) != 0 {
				t.Fatalf("%d parts emitted before the error", len(rec.parts))
			}
		})
	}
}

// TestPackValid checks the pack as the host will see it.
func TestPackValid(t *testing.T) {
	p := newPack()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	s := p.Nodes[0].Spec()
	if s.ClassType != ClassType || !s.OutputNode || s.Category == "" || s.DisplayName == "" || len(s.Outputs) != 0 {
		t.Fatalf("spec %+v", s)
	}
}
