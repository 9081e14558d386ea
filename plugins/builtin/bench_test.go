package builtin

import (
	"image"
	"testing"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// photoLike is a w×h RGBA image with smooth gradients and some noise.
func photoLike(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	seed := uint32(1)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			seed = seed*1664525 + 1013904223
			i := m.PixOffset(x, y)
			m.Pix[i] = uint8(x*255/w) ^ uint8(seed>>29)
			m.Pix[i+1] = uint8(y*255/h) ^ uint8(seed>>27&3)
			m.Pix[i+2] = uint8((x+y)*127/(w+h)) + uint8(seed>>30)
			m.Pix[i+3] = 0xff - uint8(seed>>31)
		}
	}
	return m
}

// BenchmarkLoadImageBase64 measures base64 decoding, PNG decoding and the
// conversion to IMAGE and MASK tensors; SetBytes counts the pixels' RGBA bytes.
func BenchmarkLoadImageBase64(b *testing.B) {
	const side = 1024
	input := b64(encodePNG(b, photoLike(side, side)))
	n := node(b, "ETN_LoadImageBase64")
	b.SetBytes(side * side * 4)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := runWith(b, n, map[string]any{"image": input}, plugins.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkImageBatchResize measures ImageBatch resizing a 2048² RGB image
// to 1024²; SetBytes counts the float32 bytes read.
func BenchmarkImageBatchResize(b *testing.B) {
	small := protocol.NewFloat32(1, 1024, 1024, 3)
	big := imageTensor(1, 2048, 2048, 3, func(i int) float32 { return float32(i%255) / 255 })
	n := node(b, "ImageBatch")
	b.SetBytes(int64(len(big.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := runWith(b, n, map[string]any{"image1": small, "image2": big}, plugins.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
