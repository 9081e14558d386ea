package builtin

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/png"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// fakeEmitter records what a node emits. Part data is copied, since a
// sender may reuse its buffers once EmitPart returns.
type fakeEmitter struct {
	mu       sync.Mutex
	parts    []protocol.ImagePart
	progress [][2]int
}

func (e *fakeEmitter) EmitPart(ctx context.Context, p *protocol.ImagePart) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := *p
	c.Data = append([]byte(nil), p.Data...)
	e.parts = append(e.parts, c)
	return nil
}

func (e *fakeEmitter) Progress(ctx context.Context, value, max int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.progress = append(e.progress, [2]int{value, max})
	return nil
}

// node returns the node of the default pack with the given class type.
func node(t testing.TB, class string) plugins.Node {
	t.Helper()
	return nodeOf(t, Pack(), class)
}

func nodeOf(t testing.TB, p plugins.Pack, class string) plugins.Node {
	t.Helper()
	for _, n := range p.Nodes {
		if n.Spec().ClassType == class {
			return n
		}
	}
	t.Fatalf("no node class %q in pack %q", class, p.Name)
	return nil
}

// run calls class's Run with inputs and a fresh fake emitter.
func run(t testing.TB, class string, inputs map[string]any) (plugins.Result, *fakeEmitter, error) {
	t.Helper()
	return runWith(t, node(t, class), inputs, plugins.Limits{})
}

func runWith(t testing.TB, n plugins.Node, inputs map[string]any, lim plugins.Limits) (plugins.Result, *fakeEmitter, error) {
	t.Helper()
	em := &fakeEmitter{}
	call := &plugins.Call{NodeID: "7", PromptID: "prompt-1", Inputs: inputs, Limits: lim, Emitter: em}
	res, err := n.Run(context.Background(), call)
	return res, em, err
}

// mustRun is run that fails the test on error.
func mustRun(t testing.TB, class string, inputs map[string]any) plugins.Result {
	t.Helper()
	res, _, err := run(t, class, inputs)
	if err != nil {
		t.Fatalf("%s: %v", class, err)
	}
	return res
}

func encodePNG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pngHeaderOnly returns a PNG signature and IHDR chunk claiming a w×h RGBA
// image, with no pixel data: decoding it fails, reading its header does not.
func pngHeaderOnly(w, h uint32) []byte {
	b := []byte("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0) // 8-bit RGBA, deflate, no filter, no interlace
	b = binary.BigEndian.AppendUint32(b, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b = append(b, chunk...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(chunk))
}

func tensorOut(t testing.TB, res plugins.Result, i int) *protocol.Tensor {
	t.Helper()
	if len(res.Outputs) <= i {
		t.Fatalf("result has %d outputs, want output %d", len(res.Outputs), i)
	}
	tt, ok := res.Outputs[i].(*protocol.Tensor)
	if !ok {
		t.Fatalf("output %d is %T, want *protocol.Tensor", i, res.Outputs[i])
	}
	if err := tt.Validate(); err != nil {
		t.Fatalf("output %d: %v", i, err)
	}
	return tt
}

func wantShape(t testing.TB, tt *protocol.Tensor, shape ...int) {
	t.Helper()
	if !slices.Equal(tt.Shape, shape) {
		t.Fatalf("shape %v, want %v", tt.Shape, shape)
	}
}

// wantFloats compares element by element, exactly.
func wantFloats(t testing.TB, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] && !(math.IsNaN(float64(got[i])) && math.IsNaN(float64(want[i]))) {
			t.Fatalf("%s: element %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}

// u8 is a byte as ComfyUI's loaders turn it into a float.
func u8(v uint8) float32 { return float32(v) / 255 }

// imageTensor builds an IMAGE tensor [b,h,w,c] whose element i is f(i).
func imageTensor(b, h, w, c int, f func(i int) float32) *protocol.Tensor {
	d := make([]float32, b*h*w*c)
	for i := range d {
		d[i] = f(i)
	}
	return protocol.FromFloat32(d, b, h, w, c)
}
