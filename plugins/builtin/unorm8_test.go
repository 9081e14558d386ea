package builtin

import (
	"image"
	"image/color"
	"testing"

	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/sendimage"
)

// TestLoadImageStaysEightBit: an 8-bit PNG loads as a Unorm8 IMAGE holding
// the file's bytes, and every one of the 256 values reaches the sender as the
// pixel ComfyUI's float path makes of it: uint8(clip(255*float32(v/255))).
func TestLoadImageStaysEightBit(t *testing.T) {
	dir := inputDir(t)
	m := image.NewNRGBA(image.Rect(0, 0, 256, 1))
	for x := 0; x < 256; x++ {
		m.SetNRGBA(x, 0, color.NRGBA{uint8(x), uint8(255 - x), uint8(x * 7), uint8(x)})
	}
	writeFile(t, dir, "all.png", encodePNG(t, m))
	res := mustRun(t, "LoadImage", map[string]any{"image": "all.png"})
	img, mask := tensorOut(t, res, 0), tensorOut(t, res, 1)
	if img.DType != protocol.Unorm8 {
		t.Fatalf("IMAGE dtype %s, want unorm8", img.DType)
	}
	wantShape(t, img, 1, 1, 256, 3)
	floats := img.Float32s()
	wantFloats(t, "image", floats, expectRGB(m))
	if again := img.Float32s(); &again[0] != &floats[0] {
		t.Fatal("Float32s converted the Unorm8 tensor a second time")
	}
	// The sender's pixels equal those of the float32 tensor it stands for.
	viaBytes, err := sendimage.ToPixels(img, 0, sendimage.ConvertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	viaFloats, err := sendimage.ToPixels(protocol.FromFloat32(append([]float32(nil), floats...), 1, 1, 256, 3), 0, sendimage.ConvertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range viaFloats.Pix {
		if viaBytes.Pix[i] != viaFloats.Pix[i] {
			t.Fatalf("element %d: unorm8 sends %d, the float path %d", i, viaBytes.Pix[i], viaFloats.Pix[i])
		}
	}
	// MASK = 1 - alpha, in float32 as ComfyUI computes it, for all 256 alphas.
	if mask.DType != protocol.Float32 {
		t.Fatalf("MASK dtype %s, want float32", mask.DType)
	}
	for a, got := range mask.Float32s() {
		if want := 1 - float32(a)/255; got != want {
			t.Fatalf("mask at alpha %d = %v, want %v", a, got, want)
		}
	}
}

// TestUnorm8FloatPathTable checks the 256-entry table against ComfyUI's
// float path, computed element by element by the float32 converter.
func TestUnorm8FloatPathTable(t *testing.T) {
	all := make([]byte, 256*3)
	floats := make([]float32, len(all))
	for i := range all {
		all[i] = byte(i / 3)
		floats[i] = float32(float64(i/3) / 255.0) // x/255.0 in float64, then float32, as numpy's true divide rounds
	}
	want := make([]byte, len(floats))
	sendimage.ConvertFloats(want, floats)
	got, err := sendimage.ToPixels(protocol.FromUnorm8(all, 1, 1, 256, 3), 0, sendimage.ConvertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got.Pix[i] != want[i] {
			t.Fatalf("value %d: sent %d, ComfyUI's float path gives %d", i/3, got.Pix[i], want[i])
		}
		if protocol.Unorm8Float[i/3] != floats[i] {
			t.Fatalf("value %d: Unorm8Float %v, float32(v/255.0) %v", i/3, protocol.Unorm8Float[i/3], floats[i])
		}
	}
}

// TestImageBatchTakesFloatsOnce: a float node given Unorm8 inputs computes on
// the cached float32 form, and its output equals ComfyUI's.
func TestImageBatchTakesFloatsOnce(t *testing.T) {
	a := protocol.FromUnorm8([]byte{0, 1, 2, 253, 254, 255}, 1, 1, 2, 3)
	b := protocol.FromUnorm8([]byte{10, 20, 30, 40, 50, 60}, 1, 1, 2, 3)
	out := tensorOut(t, mustRun(t, "ImageBatch", map[string]any{"image1": a, "image2": b}), 0)
	want := append(append([]float32(nil), a.Float32s()...), b.Float32s()...)
	wantFloats(t, "batch", out.Float32s(), want)
}
