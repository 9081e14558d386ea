package sendimage

import (
	"bytes"
	"image/png"
	"testing"
)

// FuzzPNG encodes arbitrary pixels with every level, serially and in tiny
// stripes, and checks that image/png decodes exactly those pixels.
func FuzzPNG(f *testing.F) {
	f.Add([]byte{0}, uint16(1), uint8(1), int8(0))
	f.Add([]byte("hello, world, in pixels"), uint16(3), uint8(3), int8(-2))
	f.Add(photoLike(17, 9, 4, 1).Pix, uint16(17), uint8(4), int8(9))
	f.Add(bytes.Repeat([]byte{1, 2, 3}, 3000), uint16(1000), uint8(3), int8(-1))
	f.Fuzz(func(t *testing.T, pix []byte, width uint16, c uint8, level int8) {
		c = []uint8{1, 3, 4}[c%3]
		w := int(width%2048) + 1
		h := len(pix) / (w * int(c))
		if h == 0 {
			return
		}
		p := &Pixels{W: w, H: h, C: int(c), Pix: pix[:w*h*int(c)]}
		lv := Level((int(level)%12+12)%12 - 2) // -2..9
		for _, workers := range []int{1, 3} {
			e := mustEncoder(t, "png", EncoderOptions{Level: lv, Workers: workers}).(*pngEncoder)
			e.minStripe = 64
			var buf bytes.Buffer
			if err := e.Encode(&buf, p); err != nil {
				t.Fatal(err)
			}
			m, err := png.Decode(&buf)
			if err != nil {
				t.Fatalf("%dx%dx%d level %d workers %d: %v", w, h, c, lv, workers, err)
			}
			if d := diffPixels(p, m); d != "" {
				t.Fatalf("%dx%dx%d level %d workers %d: %s", w, h, c, lv, workers, d)
			}
		}
	})
}

// FuzzConvert checks the conversion of arbitrary float bits against the
// reference, whichever kernel the block takes.
func FuzzConvert(f *testing.F) {
	f.Add([]byte{0, 0, 0x80, 0x3f, 0, 0, 0xc0, 0x7f})
	f.Add(bytes.Repeat([]byte{0xcd, 0xcc, 0x4c, 0x3f}, 40))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := len(b) / 4
		src := make([]float32, n)
		copy(float32Bytes(src), b)
		dst := make([]byte, n)
		ConvertFloats(dst, src)
		for i, x := range src {
			if want := comfyByte(x); dst[i] != want {
				t.Fatalf("element %d (%v) = %d, want %d", i, x, dst[i], want)
			}
		}
	})
}
