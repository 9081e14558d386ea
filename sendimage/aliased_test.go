package sendimage

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"io"
	"sync/atomic"
	"testing"

	"github.com/nodecast/nodecast/protocol"
)

// countingPNG is the png encoder, counting the images it encodes.
type countingPNG struct {
	Encoder
	n *atomic.Int64
}

func (c countingPNG) Encode(w io.Writer, m image.Image) error {
	c.n.Add(1)
	return c.Encoder.Encode(w, m)
}

func countingRegistry(n *atomic.Int64) *Registry {
	r := NewRegistry()
	r.Register("png", func(o EncoderOptions) (Encoder, error) {
		e, err := newPNGEncoder(o)
		return countingPNG{e, n}, err
	})
	return r
}

// viewOf makes a view tensor [len(items),H,W,C] whose items are the given
// slices, as RepeatImageBatch and ImageBatch build them.
func viewOf(dtype protocol.DType, p *Pixels, items ...[]byte) *protocol.Tensor {
	return &protocol.Tensor{DType: dtype, Shape: []int{len(items), p.H, p.W, p.C}, Items: items}
}

// TestSendEncodesSameMemoryOnce checks that images of a batch that are the
// same memory (a repeated view) are encoded once and sent with the same
// bytes and sha256 under their own image ids; that distinct images are each
// encoded; and that a view made Writable (copy on write) no longer shares.
func TestSendEncodesSameMemoryOnce(t *testing.T) {
	a, b := photoLike(96, 64, 3, 11), photoLike(96, 64, 3, 12)
	fa := pixelsTensor(1, a).Data // float32 bytes of a, and of b
	fb := pixelsTensor(1, b).Data
	ua := append([]byte(nil), a.Pix...)
	same := func(dtype protocol.DType, x []byte, n int) *protocol.Tensor {
		items := make([][]byte, n)
		for i := range items {
			items[i] = x
		}
		return viewOf(dtype, a, items...)
	}
	writable := same(protocol.Float32, append([]byte(nil), fa...), 3)
	writable.Writable()
	cases := []struct {
		name    string
		tensor  *protocol.Tensor
		want    []*Pixels
		encodes int64
	}{
		{"float32 view of one image x4", same(protocol.Float32, fa, 4), []*Pixels{a, a, a, a}, 1},
		{"uint8 view of one image x3", same(protocol.Uint8, ua, 3), []*Pixels{a, a, a}, 1},
		{"unorm8 view of one image x2", same(protocol.Unorm8, ua, 2), []*Pixels{a, a}, 1},
		{"a b a b", viewOf(protocol.Float32, a, fa, fb, fa, fb), []*Pixels{a, b, a, b}, 2},
		{"a b: distinct images", viewOf(protocol.Float32, a, fa, fb), []*Pixels{a, b}, 2},
		{"same bytes, other memory", viewOf(protocol.Float32, a, fa, append([]byte(nil), fa...)), []*Pixels{a, a}, 2},
		{"view made Writable", writable, []*Pixels{a, a, a}, 3},
		{"owned float32 batch", pixelsTensor(3, a), []*Pixels{a, a, a}, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			rec := &recorder{}
			sent, err := Send(context.Background(), tc.tensor,
				SendOptions{Event: "e", Registry: countingRegistry(&n)}, rec)
			if err != nil {
				t.Fatal(err)
			}
			if got := n.Load(); got != tc.encodes {
				t.Errorf("encoded %d times, want %d", got, tc.encodes)
			}
			imgs := reassemble(t, rec.parts, protocol.DefaultMessageLimit, false)
			if len(imgs) != len(tc.want) || len(sent) != len(tc.want) {
				t.Fatalf("%d images reassembled, %d sent, want %d", len(imgs), len(sent), len(tc.want))
			}
			ids := map[string]bool{}
			for i, img := range imgs {
				if img.Index != i || img.SHA256 != sent[i].SHA256 {
					t.Errorf("image %d: index %d sha %s, sent sha %s", i, img.Index, img.SHA256, sent[i].SHA256)
				}
				ids[img.ImageID] = true
				m, err := png.Decode(bytes.NewReader(img.Data))
				if err != nil {
					t.Fatalf("image %d: %v", i, err)
				}
				if d := diffPixels(tc.want[i], m); d != "" {
					t.Errorf("image %d: %s", i, d)
				}
			}
			if len(ids) != len(imgs) {
				t.Errorf("%d distinct image ids for %d images", len(ids), len(imgs))
			}
		})
	}
}
