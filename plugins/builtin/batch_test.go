package builtin

import (
	"bytes"
	"encoding/base64"
	"errors"
	"image"
	"runtime/metrics"
	"slices"
	"testing"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

func TestEmptyImage(t *testing.T) {
	res := mustRun(t, "EmptyImage", map[string]any{"width": int64(3), "height": int64(2), "batch_size": int64(2), "color": int64(0x336699)})
	img := tensorOut(t, res, 0)
	wantShape(t, img, 2, 2, 3, 3)
	// Python divides in float64, torch.full stores float32.
	c := []float64{0x33, 0x66, 0x99}
	px := []float32{float32(c[0] / 255), float32(c[1] / 255), float32(c[2] / 255)}
	var want []float32
	for range 2 * 2 * 3 {
		want = append(want, px...)
	}
	wantFloats(t, "pixels", img.Float32s(), want)

	t.Run("defaults", func(t *testing.T) {
		img := tensorOut(t, mustRun(t, "EmptyImage", map[string]any{}), 0)
		wantShape(t, img, 1, 512, 512, 3)
		if slices.ContainsFunc(img.Float32s(), func(v float32) bool { return v != 0 }) {
			t.Fatal("default colour is not black")
		}
	})
	t.Run("JSON numbers", func(t *testing.T) {
		img := tensorOut(t, mustRun(t, "EmptyImage", map[string]any{"width": 2.0, "height": 1.0, "color": float64(0xff0000)}), 0)
		wantFloats(t, "pixels", img.Float32s(), []float32{1, 0, 0, 1, 0, 0})
	})

	for _, c := range []struct {
		name   string
		inputs map[string]any
		limits plugins.Limits
		want   error
	}{
		{"zero width", map[string]any{"width": int64(0)}, plugins.Limits{}, plugins.ErrInput},
		{"over max resolution", map[string]any{"height": int64(16385)}, plugins.Limits{}, plugins.ErrInput},
		{"colour out of range", map[string]any{"color": int64(0x1000000)}, plugins.Limits{}, plugins.ErrInput},
		{"fractional", map[string]any{"width": 2.5}, plugins.Limits{}, plugins.ErrInput},
		{"string", map[string]any{"width": "512"}, plugins.Limits{}, plugins.ErrInput},
		{"over the image limit", map[string]any{"width": int64(100), "height": int64(100)},
			plugins.Limits{Image: protocol.ImageLimits{MaxPixels: 9999}}, protocol.ErrLimit},
		{"over the batch limit", map[string]any{"width": int64(16384), "height": int64(16384), "batch_size": int64(4096)},
			plugins.Limits{}, protocol.ErrLimit},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := runWith(t, node(t, "EmptyImage"), c.inputs, c.limits)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestRepeatImageBatch(t *testing.T) {
	in := imageTensor(2, 1, 2, 3, func(i int) float32 { return float32(i) / 12 })
	res := mustRun(t, "RepeatImageBatch", map[string]any{"image": in, "amount": int64(3)})
	out := tensorOut(t, res, 0)
	wantShape(t, out, 6, 1, 2, 3)
	src := in.Float32s()
	wantFloats(t, "batch", out.Float32s(), slices.Concat(src, src, src)) // [a b a b a b], as torch's repeat

	t.Run("uint8 stays uint8", func(t *testing.T) {
		u := protocol.FromUint8([]byte{1, 2, 3, 4, 5, 6}, 1, 1, 2, 3)
		out := tensorOut(t, mustRun(t, "RepeatImageBatch", map[string]any{"image": u, "amount": int64(2)}), 0)
		if out.DType != protocol.Uint8 || !slices.Equal(out.Bytes(), []byte{1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6}) {
			t.Fatalf("got %s %v", out.DType, out.Bytes())
		}
	})
	for _, c := range []struct {
		name   string
		inputs map[string]any
		want   error
	}{
		{"missing image", map[string]any{"amount": int64(2)}, plugins.ErrInput},
		{"image is not a tensor", map[string]any{"image": "x"}, plugins.ErrInput},
		{"amount 0", map[string]any{"image": in, "amount": int64(0)}, plugins.ErrInput},
		{"amount over 4096", map[string]any{"image": in, "amount": int64(4097)}, plugins.ErrInput},
		{"lying shape", map[string]any{"image": &protocol.Tensor{DType: protocol.Float32, Shape: []int{1, 2, 2, 3}, Data: make([]byte, 8)}}, protocol.ErrShape},
		{"over the batch limit", map[string]any{"image": imageTensor(1, 4, 4, 3, func(int) float32 { return 0 }), "amount": int64(7)}, protocol.ErrLimit},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := NewPack(Options{MaxBatchPixels: 100})
			_, _, err := runWith(t, nodeOf(t, p, "RepeatImageBatch"), c.inputs, plugins.Limits{})
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestImageBatch(t *testing.T) {
	t.Run("same size", func(t *testing.T) {
		a := imageTensor(1, 2, 2, 3, func(i int) float32 { return float32(i) })
		b := imageTensor(2, 2, 2, 3, func(i int) float32 { return -float32(i) })
		out := tensorOut(t, mustRun(t, "ImageBatch", map[string]any{"image1": a, "image2": b}), 0)
		wantShape(t, out, 3, 2, 2, 3)
		wantFloats(t, "batch", out.Float32s(), slices.Concat(a.Float32s(), b.Float32s()))
	})
	t.Run("image2 downscaled", func(t *testing.T) {
		// torch bilinear, align_corners=False, 4 -> 2: each output pixel reads
		// source coordinate 0.5 or 2.5, the mean of a 2×2 block.
		a := imageTensor(1, 2, 2, 1, func(int) float32 { return 0 })
		b := imageTensor(1, 4, 4, 1, func(i int) float32 { return float32(i) })
		out := tensorOut(t, mustRun(t, "ImageBatch", map[string]any{"image1": a, "image2": b}), 0)
		wantShape(t, out, 2, 2, 2, 1)
		wantFloats(t, "resized", out.Float32s()[4:], []float32{2.5, 4.5, 10.5, 12.5})
	})
	t.Run("image2 centre-cropped then resized", func(t *testing.T) {
		// 6×4 to 2×2: the aspect 1.5 > 1 crops round((6 - 6/1.5)/2) = 1
		// column each side, leaving columns 1..4, then 4 -> 2 as above.
		a := imageTensor(1, 2, 2, 1, func(int) float32 { return 0 })
		b := imageTensor(1, 4, 6, 1, func(i int) float32 { return float32(i) })
		out := tensorOut(t, mustRun(t, "ImageBatch", map[string]any{"image1": a, "image2": b}), 0)
		// Rows of b: 0..5, 6..11, 12..17, 18..23; crop columns 1..4.
		// Output (0,0) = mean of 1,2,7,8 = 4.5; (0,1) = mean of 3,4,9,10 = 6.5.
		wantFloats(t, "resized", out.Float32s()[4:], []float32{4.5, 6.5, 16.5, 18.5})
	})
	t.Run("image2 upscaled", func(t *testing.T) {
		// 2 -> 4 in one dimension: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to index 1).
		a := imageTensor(1, 1, 4, 1, func(int) float32 { return 0 })
		b := protocol.FromFloat32([]float32{0, 1}, 1, 1, 2, 1)
		out := tensorOut(t, mustRun(t, "ImageBatch", map[string]any{"image1": a, "image2": b}), 0)
		wantFloats(t, "resized", out.Float32s()[4:], []float32{0, 0.25, 0.75, 1})
	})
	t.Run("RGB and RGBA", func(t *testing.T) {
		rgb := protocol.FromFloat32([]float32{0.1, 0.2, 0.3}, 1, 1, 1, 3)
		rgba := protocol.FromFloat32([]float32{0.4, 0.5, 0.6, 0.7}, 1, 1, 1, 4)
		out := tensorOut(t, mustRun(t, "ImageBatch", map[string]any{"image1": rgb, "image2": rgba}), 0)
		wantShape(t, out, 2, 1, 1, 4)
		wantFloats(t, "padded", out.Float32s(), []float32{0.1, 0.2, 0.3, 1, 0.4, 0.5, 0.6, 0.7})
		out = tensorOut(t, mustRun(t, "ImageBatch", map[string]any{"image1": rgba, "image2": rgb}), 0)
		wantFloats(t, "padded", out.Float32s(), []float32{0.4, 0.5, 0.6, 0.7, 0.1, 0.2, 0.3, 1})
	})
	t.Run("uint8 input", func(t *testing.T) {
		f := protocol.FromFloat32([]float32{0, 1, 0.5}, 1, 1, 1, 3)
		u := protocol.FromUint8([]byte{255, 0, 51}, 1, 1, 1, 3)
		out := tensorOut(t, mustRun(t, "ImageBatch", map[string]any{"image1": f, "image2": u}), 0)
		wantFloats(t, "batch", out.Float32s(), []float32{0, 1, 0.5, 1, 0, u8(51)})
	})
	t.Run("channel mismatch", func(t *testing.T) {
		gray := protocol.FromFloat32([]float32{0.5}, 1, 1, 1, 1)
		rgb := protocol.FromFloat32([]float32{0.1, 0.2, 0.3}, 1, 1, 1, 3)
		_, _, err := run(t, "ImageBatch", map[string]any{"image1": rgb, "image2": gray})
		var be *BatchError
		if !errors.As(err, &be) || be.Got != "1 channels" || be.Want != "3 channels" {
			t.Fatalf("err = %v, want a BatchError naming 1 and 3 channels", err)
		}
	})
	t.Run("missing image2", func(t *testing.T) {
		rgb := protocol.FromFloat32([]float32{0.1, 0.2, 0.3}, 1, 1, 1, 3)
		_, _, err := run(t, "ImageBatch", map[string]any{"image1": rgb})
		if !errors.Is(err, plugins.ErrInput) {
			t.Fatalf("err = %v, want ErrInput", err)
		}
	})
}

// TestTensorBudgetCheckedBeforeAllocating: each node that makes a tensor
// refuses one over the prompt's budget with a *plugins.BudgetError, having
// allocated next to nothing.
func TestTensorBudgetCheckedBeforeAllocating(t *testing.T) {
	img := imageTensor(4, 256, 256, 3, func(i int) float32 { return 0.5 })
	pngData := encodePNG(t, image.NewNRGBA(image.Rect(0, 0, 1024, 1024)))
	lim := plugins.Limits{TensorBudget: 64 << 20, TensorHeld: 60 << 20}
	for _, c := range []struct {
		class  string
		inputs map[string]any
		need   int64
	}{
		{"EmptyImage", map[string]any{"width": int64(1024), "height": int64(1024), "batch_size": int64(4)}, 4 * 1024 * 1024 * 12},
		// RepeatImageBatch and ImageBatch of alike images make views, which
		// cost no bytes (TestBatchViewsShareMemory); mixing RGB with RGBA
		// converts: output, plus image1 padded with alpha.
		{"ImageBatch", map[string]any{"image1": img, "image2": imageTensor(4, 256, 256, 4, func(i int) float32 { return 0.5 })}, 12 * 256 * 256 * 16},
		{"ETN_LoadImageBase64", map[string]any{"image": base64.StdEncoding.EncodeToString(pngData)}, 1024 * 1024 * 20},
	} {
		t.Run(c.class, func(t *testing.T) {
			before := allocated()
			_, _, err := runWith(t, node(t, c.class), c.inputs, lim)
			grew := allocated() - before
			var be *plugins.BudgetError
			if !errors.As(err, &be) || be.Need != c.need || be.Held != lim.TensorHeld || be.Budget != lim.TensorBudget {
				t.Fatalf("err = %v, want a budget error for %d bytes", err, c.need)
			}
			if grew > uint64(c.need/4) {
				t.Errorf("allocated %d bytes before refusing %d", grew, c.need)
			}
		})
	}
}

func allocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestBatchViewsShareMemory: RepeatImageBatch and ImageBatch of alike images
// build views of their inputs' memory, allocate next to nothing even over the
// budget, and read back the same pixels as copies would; Writable copies once.
func TestBatchViewsShareMemory(t *testing.T) {
	a := protocol.FromUnorm8(bytes.Repeat([]byte{1, 2, 3}, 512*512), 1, 512, 512, 3)
	b := protocol.FromUnorm8(bytes.Repeat([]byte{9, 8, 7}, 512*512), 1, 512, 512, 3)
	lim := plugins.Limits{TensorBudget: 1 << 20, TensorHeld: 1 << 20} // nothing left
	before := allocated()
	res, _, err := runWith(t, node(t, "RepeatImageBatch"), map[string]any{"image": a, "amount": int64(64)}, lim)
	if err != nil {
		t.Fatal(err)
	}
	rep := tensorOut(t, res, 0)
	res, _, err = runWith(t, node(t, "ImageBatch"), map[string]any{"image1": rep, "image2": b}, lim)
	if err != nil {
		t.Fatal(err)
	}
	if grew := allocated() - before; grew > 64<<10 {
		t.Errorf("views allocated %d bytes", grew)
	}
	out := tensorOut(t, res, 0)
	wantShape(t, out, 65, 512, 512, 3)
	if !out.IsView() || out.OwnBytes() != 0 || out.ByteLen() != 65*len(a.Data) {
		t.Fatalf("view %v, own %d, bytes %d", out.IsView(), out.OwnBytes(), out.ByteLen())
	}
	if &out.Item(63)[0] != &a.Data[0] || &out.Item(64)[0] != &b.Data[0] {
		t.Fatal("items do not share their inputs' memory")
	}
	if err := out.Validate(); err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Repeat(a.Data, 64), b.Data...)
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatal("the view's bytes differ from the copied batch")
	}
	w := out.Writable()
	w[0] = 200
	if a.Data[0] != 1 || out.IsView() || out.Item(0)[0] != 200 {
		t.Fatal("Writable did not copy before the write")
	}
}
