package sendimage

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"testing"
)

// diffPixels reports the first pixel where m differs from want, or "".
func diffPixels(want *Pixels, m image.Image) string {
	if got := m.Bounds(); got != want.Bounds() {
		return fmt.Sprintf("bounds %v, want %v", got, want.Bounds())
	}
	for y := 0; y < want.H; y++ {
		for x := 0; x < want.W; x++ {
			w := color.NRGBAModel.Convert(want.At(x, y)).(color.NRGBA)
			g := color.NRGBAModel.Convert(m.At(x, y)).(color.NRGBA)
			if w != g {
				return fmt.Sprintf("pixel (%d,%d) = %v, want %v", x, y, g, w)
			}
		}
	}
	return ""
}

func mustEncoder(t testing.TB, name string, opts EncoderOptions) Encoder {
	t.Helper()
	e, err := NewEncoder(name, opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestPNGRoundTrip(t *testing.T) {
	sizes := [][2]int{{1, 1}, {3, 7}, {7, 3}, {1, 4097}, {4097, 1}, {64, 64}, {129, 67}}
	levels := []Level{LevelDefault, LevelFast, LevelNone, LevelHuffmanOnly, LevelCompact, 2, 6, LevelBest}
	for _, c := range []int{1, 3, 4} {
		for _, sz := range sizes {
			lvs := levels
			if sz[0]*sz[1] > 64*64 { // every level on small images; the common ones on large
				lvs = []Level{LevelDefault, LevelFast, LevelHuffmanOnly}
			}
			for _, lv := range lvs {
				for _, workers := range []int{1, 3} {
					name := fmt.Sprintf("c%d/%dx%d/level%d/workers%d", c, sz[0], sz[1], lv, workers)
					t.Run(name, func(t *testing.T) {
						p := cachedPhoto(sz[0], sz[1], c)
						e := mustEncoder(t, "png", EncoderOptions{Level: lv, Workers: workers}).(*pngEncoder)
						e.minStripe = 1 // cut even tiny images into stripes
						var buf bytes.Buffer
						if err := e.Encode(&buf, p); err != nil {
							t.Fatal(err)
						}
						m, err := png.Decode(&buf)
						if err != nil {
							t.Fatal(err)
						}
						if d := diffPixels(p, m); d != "" {
							t.Fatal(d)
						}
						wantModel := map[int]color.Model{1: color.GrayModel, 3: color.RGBAModel, 4: color.NRGBAModel}[c]
						if m.ColorModel() != wantModel {
							t.Errorf("decoded colour model %v, want %v", m.ColorModel(), wantModel)
						}
					})
				}
			}
		}
	}
}

// TestDefaultLevelPicksTheSmaller checks LevelDefault's choice on the two
// kinds of image where level 1 and Huffman-only part ways: noisy photo-like
// pixels (Huffman-only is far smaller) and flat, screenshot-like ones
// (level 1 is far smaller). Either way it must be within a few percent of the
// better of the two.
func TestDefaultLevelPicksTheSmaller(t *testing.T) {
	noisy := NewPixels(512, 512, 3)
	rng := uint32(7)
	for y := 0; y < 512; y++ {
		for x := 0; x < 512; x++ {
			for c := 0; c < 3; c++ {
				rng = rng*1664525 + 1013904223
				noise := int(rng>>29) - 4 // -4..3, a sigma-2-like grain
				v := (x+y)/4 + 40*c + noise
				noisy.Pix[(y*512+x)*3+c] = byte(max(0, min(255, v)))
			}
		}
	}
	flat := NewPixels(512, 512, 3)
	for y := 0; y < 512; y++ {
		for x := 0; x < 512; x++ {
			if (x/64+y/64)%2 == 0 {
				copy(flat.Pix[(y*512+x)*3:], []byte{30, 60, 90})
			}
		}
	}
	size := func(p *Pixels, lv Level) int {
		var buf bytes.Buffer
		if err := mustEncoder(t, "png", EncoderOptions{Level: lv, Workers: 1}).Encode(&buf, p); err != nil {
			t.Fatal(err)
		}
		return buf.Len()
	}
	for name, p := range map[string]*Pixels{"noisy": noisy, "flat": flat} {
		auto, fast, huff := size(p, LevelDefault), size(p, LevelFast), size(p, LevelHuffmanOnly)
		best := min(fast, huff)
		t.Logf("%s: default %d, level 1 %d, Huffman-only %d", name, auto, fast, huff)
		if float64(auto) > 1.03*float64(best) {
			t.Errorf("%s: default level made %d bytes; level 1 %d, Huffman-only %d", name, auto, fast, huff)
		}
	}
}
