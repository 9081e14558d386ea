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
	levels := []Level{LevelDefault, LevelNone, LevelHuffmanOnly, 2, 6, LevelBest}
	for _, c := range []int{1, 3, 4} {
		for _, sz := range sizes {
			lvs := levels
			if sz[0]*sz[1] > 64*64 { // every level on small images; the common ones on large
				lvs = []Level{LevelDefault, LevelHuffmanOnly}
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
