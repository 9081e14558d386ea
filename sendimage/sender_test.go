package sendimage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/nodecast/nodecast/protocol"
)

// recorder is an in-memory Emitter that keeps every part and progress call.
type recorder struct {
	mu       sync.Mutex
	parts    []protocol.ImagePart
	progress [][2]int
	failAt   int // EmitPart fails on this call (1-based); 0 never
	calls    int
}

var errEmit = errors.New("test: emit refused")

func (r *recorder) EmitPart(_ context.Context, p *protocol.ImagePart) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.calls == r.failAt {
		return errEmit
	}
	r.parts = append(r.parts, *p)
	return nil
}

func (r *recorder) Progress(_ context.Context, value, max int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progress = append(r.progress, [2]int{value, max})
	return nil
}

// pixelsTensor turns Pixels into a float32 IMAGE tensor [n,H,W,C] that
// converts back to exactly these pixels (v/255 truncates back to v).
func pixelsTensor(n int, ps ...*Pixels) *protocol.Tensor {
	p0 := ps[0]
	sz := len(p0.Pix)
	f := make([]float32, n*sz)
	for i := range n {
		p := ps[i%len(ps)]
		for j, v := range p.Pix {
			f[i*sz+j] = (float32(v) + 0.5) / 255
		}
	}
	return protocol.FromFloat32(f, n, p0.H, p0.W, p0.C)
}

// reassemble feeds every recorded part, framed as it would travel, to a
// Reassembler, and checks each message against limit.
func reassemble(t *testing.T, parts []protocol.ImagePart, limit int, b64 bool) []*protocol.Image {
	t.Helper()
	r := protocol.NewReassembler(protocol.ReassemblerOptions{})
	var out []*protocol.Image
	for i := range parts {
		p := &parts[i]
		var img *protocol.Image
		var err error
		if b64 {
			msg, err := protocol.MarshalB64Part(p)
			if err != nil {
				t.Fatal(err)
			}
			if len(msg) >= limit {
				t.Fatalf("base64 message of part %d is %d bytes, limit %d", p.Part, len(msg), limit)
			}
			var raw protocol.RawMessage
			if err := json.Unmarshal(msg, &raw); err != nil {
				t.Fatal(err)
			}
			img, err = r.AddB64(raw.Type, raw.Data)
			if err != nil {
				t.Fatal(err)
			}
		} else {
			frame, err := protocol.AppendPartFrame(nil, &p.PartHeader, p.Data)
			if err != nil {
				t.Fatal(err)
			}
			if len(frame) >= limit {
				t.Fatalf("PART frame of part %d is %d bytes, limit %d", p.Part, len(frame), limit)
			}
			img, err = r.AddFrame(frame)
			if err != nil {
				t.Fatal(err)
			}
		}
		_ = err
		if img != nil {
			out = append(out, img)
		}
	}
	if pend := r.Pending(); len(pend) > 0 {
		t.Fatalf("incomplete images: %v", pend[0].Err())
	}
	return out
}

func TestSendReassembles(t *testing.T) {
	const limit = 16 << 10 // small, so that images need many parts
	a, b := photoLike(120, 90, 3, 1), photoLike(120, 90, 3, 2)
	cases := []struct {
		name     string
		opts     SendOptions
		tensor   *protocol.Tensor
		want     []*Pixels
		minParts int
	}{
		{"png batch of 3, auto part size", SendOptions{}, pixelsTensor(3, a, b), []*Pixels{a, b, a}, 2},
		{"one image, part size 3000", SendOptions{PartSize: 3000}, pixelsTensor(1, b), []*Pixels{b}, 5},
		{"part size rounded to 3", SendOptions{PartSize: 1001}, pixelsTensor(1, a), []*Pixels{a}, 15},
		{"b64parts wire, label", SendOptions{Wire: protocol.WireB64Parts, Label: "my label \"quoted\""}, pixelsTensor(2, a, b), []*Pixels{a, b}, 2},
		{"gray", SendOptions{}, pixelsTensor(1, photoLike(99, 77, 1, 3)), []*Pixels{photoLike(99, 77, 1, 3)}, 1},
		{"rgba", SendOptions{}, pixelsTensor(2, photoLike(64, 65, 4, 4)), []*Pixels{photoLike(64, 65, 4, 4), photoLike(64, 65, 4, 4)}, 1},
		{"uint8 tensor", SendOptions{}, protocol.FromUint8(append(append([]byte(nil), a.Pix...), b.Pix...), 2, 90, 120, 3), []*Pixels{a, b}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Event, opts.PromptID, opts.Node, opts.MessageLimit = "my.event", "prompt-1", "7", limit
			rec := &recorder{}
			sent, err := Send(context.Background(), tc.tensor, opts, rec)
			if err != nil {
				t.Fatal(err)
			}
			if len(sent) != len(tc.want) {
				t.Fatalf("sent %d images, want %d", len(sent), len(tc.want))
			}
			if len(rec.parts) < tc.minParts {
				t.Errorf("%d parts, want at least %d", len(rec.parts), tc.minParts)
			}
			for k, pr := range rec.progress {
				if pr != [2]int{k + 1, len(tc.want)} {
					t.Errorf("progress call %d = %v, want [%d %d]", k, pr, k+1, len(tc.want))
				}
			}
			if len(rec.progress) != len(tc.want) {
				t.Errorf("%d progress calls, want %d", len(rec.progress), len(tc.want))
			}
			wantWire := opts.Wire
			if wantWire == "" {
				wantWire = protocol.WireParts
			}
			wantLabel := opts.Label
			if wantLabel == "" {
				wantLabel = opts.Node
			}
			for k, p := range rec.parts {
				if k > 0 { // images in batch order, parts in order within each image
					prev := rec.parts[k-1]
					if p.Index < prev.Index || (p.Index == prev.Index && p.Part != prev.Part+1) || (p.Index != prev.Index && p.Part != 0) {
						t.Fatalf("part %d/%d of image %d after part %d of image %d", p.Part, p.Parts, p.Index, prev.Part, prev.Index)
					}
				}
				if p.Wire != wantWire || p.Label != wantLabel || p.Event != "my.event" || p.PromptID != "prompt-1" || p.Node != "7" || p.MIME != "image/png" || p.Batch != len(tc.want) {
					t.Fatalf("part header %+v, wire %q, label %q", p.PartHeader, p.Wire, p.Label)
				}
				if opts.PartSize > 0 && len(p.Data) > opts.PartSize {
					t.Fatalf("part of %d bytes, part size %d", len(p.Data), opts.PartSize)
				}
			}
			for _, b64 := range []bool{false, true} {
				imgs := reassemble(t, rec.parts, limit, b64)
				if len(imgs) != len(tc.want) {
					t.Fatalf("reassembled %d images, want %d", len(imgs), len(tc.want))
				}
				for _, img := range imgs {
					s := sent[img.Index]
					if img.ImageID != s.ImageID || img.SHA256 != s.SHA256 || img.Size != s.Size || s.Width != tc.want[0].W || s.Height != tc.want[0].H {
						t.Errorf("image %d: reassembled %s/%s/%d, sent %+v", img.Index, img.ImageID, img.SHA256, img.Size, s)
					}
					m, err := png.Decode(bytes.NewReader(img.Data))
					if err != nil {
						t.Fatal(err)
					}
					if d := diffPixels(tc.want[img.Index], m); d != "" {
						t.Fatalf("image %d: %s", img.Index, d)
					}
				}
			}
			ids := map[string]bool{}
			for _, s := range sent {
				if len(s.ImageID) != 32 || ids[s.ImageID] {
					t.Errorf("image id %q: want 32 hex digits, unique", s.ImageID)
				}
				ids[s.ImageID] = true
			}
		})
	}
}

func TestSendJPEG(t *testing.T) {
	p := photoLike(64, 48, 3, 5)
	rec := &recorder{}
	sent, err := Send(context.Background(), pixelsTensor(1, p), SendOptions{Event: "ev", Encoder: "jpeg"}, rec)
	if err != nil {
		t.Fatal(err)
	}
	if sent[0].MIME != "image/jpeg" || rec.parts[0].MIME != "image/jpeg" || !bytes.HasPrefix(rec.parts[0].Data, []byte{0xff, 0xd8}) {
		t.Fatalf("sent %+v, first bytes % x", sent[0], rec.parts[0].Data[:4])
	}
}

func TestSendRefusesBeforeEmitting(t *testing.T) {
	good := pixelsTensor(2, photoLike(8, 8, 3, 1))
	withNaN := pixelsTensor(3, photoLike(8, 8, 3, 1))
	withNaN.Float32s()[2*8*8*3+17] = float32(math.NaN()) // in the last image: nothing may go out first
	oversize := protocol.NewFloat32(1, 1, 20000, 3)
	custom := NewRegistry()
	custom.Register("other", newBMPEncoder)

	cases := []struct {
		name   string
		tensor *protocol.Tensor
		opts   SendOptions
		check  func(error) bool
	}{
		{"empty event", good, SendOptions{}, isA[*protocol.EventNameError]},
		{"event with space", good, SendOptions{Event: "a b"}, isA[*protocol.EventNameError]},
		{"reserved event", good, SendOptions{Event: "executed"}, isA[*protocol.EventNameError]},
		{"unknown encoder", good, SendOptions{Event: "e", Encoder: "gif"}, func(err error) bool {
			var u *UnknownEncoderError
			return errors.As(err, &u) && errors.Is(err, ErrUnknownEncoder) && strings.Join(u.Known, ",") == "bmp,jpeg,png,raw,tiff,webp,webp-lossless"
		}},
		{"png missing from a custom registry", good, SendOptions{Event: "e", Registry: custom}, isA[*UnknownEncoderError]},
		{"bad jpeg quality", good, SendOptions{Event: "e", Encoder: "jpeg", EncoderOptions: EncoderOptions{Quality: 101}}, isA[*OptionError]},
		{"bad png level", good, SendOptions{Event: "e", EncoderOptions: EncoderOptions{Level: 10}}, isA[*OptionError]},
		{"bad wire", good, SendOptions{Event: "e", Wire: "carrier-pigeon"}, isA[*protocol.FrameError]},
		{"negative part size", good, SendOptions{Event: "e", PartSize: -3}, isA[*OptionError]},
		{"negative limit", good, SendOptions{Event: "e", MessageLimit: -1}, isA[*OptionError]},
		{"part size over limit", good, SendOptions{Event: "e", PartSize: 4 << 20}, func(err error) bool {
			var l *protocol.LimitError
			return errors.As(err, &l) && l.What == "part size" && l.Value == 4<<20 && l.Limit < protocol.DefaultMessageLimit
		}},
		{"limit too small for any part", good, SendOptions{Event: "e", MessageLimit: 100}, isA[*protocol.LimitError]},
		{"NaN", withNaN, SendOptions{Event: "e"}, func(err error) bool {
			var nf *protocol.NonFiniteError
			return errors.As(err, &nf) && nf.Index == 2*8*8*3+17 && math.IsNaN(float64(nf.Value))
		}},
		{"oversize", oversize, SendOptions{Event: "e"}, func(err error) bool {
			var l *protocol.LimitError
			return errors.As(err, &l) && l.What == "image width" && l.Value == 20000
		}},
		{"limits option", good, SendOptions{Event: "e", Limits: protocol.ImageLimits{MaxPixels: 63}}, isA[*protocol.LimitError]},
		{"bad shape", protocol.NewFloat32(2, 8, 8), SendOptions{Event: "e"}, isA[*protocol.ShapeError]},
		{"five channels", protocol.NewFloat32(1, 8, 8, 5), SendOptions{Event: "e"}, isA[*protocol.ShapeError]},
		{"lying data length", &protocol.Tensor{DType: protocol.Float32, Shape: []int{1, 8, 8, 3}, Data: make([]byte, 10)}, SendOptions{Event: "e"}, isA[*protocol.ShapeError]},
		{"unknown dtype", &protocol.Tensor{DType: "float16", Shape: []int{1, 8, 8, 3}, Data: make([]byte, 384)}, SendOptions{Event: "e"}, isA[*protocol.DTypeError]},
		{"nil tensor", nil, SendOptions{Event: "e"}, isA[*protocol.ShapeError]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			sent, err := Send(context.Background(), tc.tensor, tc.opts, rec)
			if err == nil || !tc.check(err) {
				t.Fatalf("error %T %v", err, err)
			}
			if len(sent) != 0 || len(rec.parts) != 0 || len(rec.progress) != 0 {
				t.Fatalf("emitted %d parts and %d progress calls before refusing", len(rec.parts), len(rec.progress))
			}
		})
	}
}

func isA[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}

func TestSendAllowNonFinite(t *testing.T) {
	f := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0.5}
	tensor := protocol.FromFloat32(f, 1, 1, 4, 1)
	rec := &recorder{}
	if _, err := Send(context.Background(), tensor, SendOptions{Event: "e", AllowNonFinite: true}, rec); err != nil {
		t.Fatal(err)
	}
	m, err := png.Decode(bytes.NewReader(rec.parts[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	if d := diffPixels(&Pixels{W: 4, H: 1, C: 1, Pix: []byte{0, 255, 0, 127}}, m); d != "" {
		t.Fatal(d)
	}
}

func TestSendStopsOnEmitError(t *testing.T) {
	rec := &recorder{failAt: 2}
	sent, err := Send(context.Background(), pixelsTensor(4, photoLike(16, 16, 3, 1)), SendOptions{Event: "e"}, rec)
	if !errors.Is(err, errEmit) {
		t.Fatalf("error %v, want %v", err, errEmit)
	}
	if len(sent) != 1 || len(rec.parts) != 1 {
		t.Fatalf("sent %d images and %d parts, want 1 and 1", len(sent), len(rec.parts))
	}
}

func TestSendCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := &recorder{}
	_, err := Send(ctx, pixelsTensor(3, photoLike(16, 16, 3, 1)), SendOptions{Event: "e"}, rec)
	if !errors.Is(err, context.Canceled) || len(rec.parts) != 0 {
		t.Fatalf("error %v, %d parts", err, len(rec.parts))
	}
}

// cancelAfter cancels its context after the first part.
type cancelAfter struct {
	recorder
	cancel context.CancelFunc
}

func (c *cancelAfter) EmitPart(ctx context.Context, p *protocol.ImagePart) error {
	c.cancel()
	return c.recorder.EmitPart(ctx, p)
}

func TestSendCancelledMidway(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	em := &cancelAfter{cancel: cancel}
	sent, err := Send(ctx, pixelsTensor(5, photoLike(16, 16, 3, 1)), SendOptions{Event: "e", MessageLimit: 1024}, em)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
	if len(em.parts) != 1 || len(sent) != 0 {
		t.Fatalf("%d parts, %d images sent after cancel", len(em.parts), len(sent))
	}
}
