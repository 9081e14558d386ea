package sendimage

import (
	"bytes"
	"context"
	"image/png"
	"io"
	"testing"

	"github.com/nodecast/nodecast/protocol"
)

// benchEncode encodes a photo-like image and reports the compressed size
// as a fraction of the raw pixels.
func benchEncode(b *testing.B, enc func(io.Writer, *Pixels) error, p *Pixels) {
	var buf bytes.Buffer
	if err := enc(&buf, p); err != nil {
		b.Fatal(err)
	}
	ratio := float64(buf.Len()) / float64(len(p.Pix))
	b.SetBytes(int64(len(p.Pix)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		buf.Reset()
		if err := enc(&buf, p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(ratio, "ratio")
}

func BenchmarkEncode1024(b *testing.B) {
	p := cachedPhoto(1024, 1024, 3)
	for _, tc := range []struct {
		name string
		enc  string
		opts EncoderOptions
	}{
		{"png", "png", EncoderOptions{}},
		{"png-serial", "png", EncoderOptions{Workers: 1}},
		{"png-huffman", "png", EncoderOptions{Level: LevelHuffmanOnly}},
		{"png-level6", "png", EncoderOptions{Level: 6}},
		{"jpeg", "jpeg", EncoderOptions{}},
		{"bmp", "bmp", EncoderOptions{}},
		{"tiff", "tiff", EncoderOptions{}},
		{"png-compact-saveimage", "png", EncoderOptions{Level: LevelCompact}},
		{"webp-q90", "webp", EncoderOptions{}},
		{"webp-lossless", "webp-lossless", EncoderOptions{}},
		{"raw", "raw", EncoderOptions{}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := mustEncoder(b, tc.enc, tc.opts)
			benchEncode(b, func(w io.Writer, p *Pixels) error { return e.Encode(w, p) }, p)
		})
	}
	b.Run("stdlib-png-bestspeed", func(b *testing.B) {
		enc := &png.Encoder{CompressionLevel: png.BestSpeed}
		m := stdImage(p, true) // *image.RGBA: image/png's fastest input
		benchEncode(b, func(w io.Writer, _ *Pixels) error { return enc.Encode(w, m) }, p)
	})
}

func BenchmarkConvert(b *testing.B) {
	p := cachedPhoto(1024, 1024, 3)
	t := pixelsTensor(1, p)
	im, err := NewImages(t, ConvertOptions{})
	if err != nil {
		b.Fatal(err)
	}
	dst := &Pixels{}
	b.Run("Pixels", func(b *testing.B) {
		b.SetBytes(int64(len(t.Data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := im.Pixels(0, dst); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("NewImages", func(b *testing.B) { // the shape and NaN check
		b.SetBytes(int64(len(t.Data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := NewImages(t, ConvertOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("exact-kernel", func(b *testing.B) { // what values outside ±2^23 cost
		b.SetBytes(int64(len(t.Data)))
		f := t.Float32s()
		for b.Loop() {
			convertExact(dst.Pix, f)
		}
	})
}

// discard is an Emitter that drops everything.
type discard struct{ parts int }

func (d *discard) EmitPart(context.Context, *protocol.ImagePart) error { d.parts++; return nil }
func (d *discard) Progress(context.Context, int, int) error            { return nil }

func BenchmarkSend2048(b *testing.B) {
	t := pixelsTensor(1, cachedPhoto(2048, 2048, 3))
	for _, batch := range []int{1, 4} {
		tb := t
		if batch > 1 {
			data := bytes.Repeat(t.Data, batch)
			tb = &protocol.Tensor{DType: t.DType, Shape: []int{batch, 2048, 2048, 3}, Data: data}
		}
		b.Run("batch"+string(rune('0'+batch)), func(b *testing.B) {
			b.SetBytes(int64(batch) * 2048 * 2048 * 3)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Send(context.Background(), tb, SendOptions{Event: "bench"}, &discard{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
