package sendimage

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
	xwebp "golang.org/x/image/webp"

	"github.com/nodecast/nodecast/protocol"
)

func TestEncodersRoundTrip(t *testing.T) {
	decoders := map[string]func(io.Reader) (image.Image, error){
		"png": png.Decode, "jpeg": jpeg.Decode, "bmp": bmp.Decode, "tiff": tiff.Decode,
		"webp": decodeLossyWebP, "webp-lossless": xwebp.Decode, "raw": decodePNM,
	}
	meta := map[string][2]string{
		"png": {"image/png", ".png"}, "jpeg": {"image/jpeg", ".jpg"},
		"bmp": {"image/bmp", ".bmp"}, "tiff": {"image/tiff", ".tiff"},
		"webp": {"image/webp", ".webp"}, "webp-lossless": {"image/webp", ".webp"},
		"raw": {"image/x-portable-anymap", ".pnm"},
	}
	for _, name := range Names() {
		for _, c := range []int{1, 3, 4} {
			t.Run(name+"/"+string(rune('0'+c)), func(t *testing.T) {
				e := mustEncoder(t, name, EncoderOptions{})
				if e.Name() != name || e.MIME() != meta[name][0] || e.Extension() != meta[name][1] {
					t.Errorf("Name, MIME, Extension = %q, %q, %q", e.Name(), e.MIME(), e.Extension())
				}
				want := photoLike(37, 23, c, 7)
				var buf bytes.Buffer
				if err := e.Encode(&buf, want); err != nil {
					t.Fatal(err)
				}
				m, err := decoders[name](&buf)
				if err != nil {
					t.Fatal(err)
				}
				switch name {
				case "jpeg": // lossy, and without alpha
					if d := meanAbsDiff(want, m); d > 6 { // 4:2:0 chroma on a noisy image
						t.Errorf("mean absolute difference %.2f at quality 95", d)
					}
					if _, gray := m.(*image.Gray); gray != (c == 1) {
						t.Errorf("decoded %T from %d channels", m, c)
					}
				case "webp": // lossy: 4:2:0 chroma, alpha kept; the noise is what it loses
					if d := meanAbsDiff(want, m); d > 6 {
						t.Errorf("mean absolute difference %.2f at quality 90", d)
					}
					if c == 4 {
						if d := meanAlphaDiff(want, m); d > 2 {
							t.Errorf("alpha mean absolute difference %.2f", d)
						}
					}
				case "bmp":
					if c == 4 { // x/image/bmp ignores the alpha of a BITMAPINFOHEADER file, as most readers do
						want = FromImage(stdImage(want, true)) // the same colours, opaque
					}
					fallthrough
				default:
					if d := diffPixels(want, m); d != "" {
						t.Fatal(d)
					}
				}
			})
		}
	}
}

// meanAbsDiff is the mean absolute difference of the RGB channels.
func meanAbsDiff(want *Pixels, m image.Image) float64 {
	var sum float64
	for y := 0; y < want.H; y++ {
		for x := 0; x < want.W; x++ {
			a := color.NRGBAModel.Convert(want.At(x, y)).(color.NRGBA)
			b := color.NRGBAModel.Convert(m.At(x, y)).(color.NRGBA)
			for _, d := range []int{int(a.R) - int(b.R), int(a.G) - int(b.G), int(a.B) - int(b.B)} {
				sum += float64(max(d, -d))
			}
		}
	}
	return sum / float64(3*want.W*want.H)
}

// meanAlphaDiff is the mean absolute difference of the alpha channels.
func meanAlphaDiff(want *Pixels, m image.Image) float64 {
	var sum float64
	for y := 0; y < want.H; y++ {
		for x := 0; x < want.W; x++ {
			a := color.NRGBAModel.Convert(want.At(x, y)).(color.NRGBA)
			b := color.NRGBAModel.Convert(m.At(x, y)).(color.NRGBA)
			sum += float64(max(int(a.A)-int(b.A), int(b.A)-int(a.A)))
		}
	}
	return sum / float64(want.W*want.H)
}

// countingWriter counts the bytes written to it.
type countingWriter struct{ n int }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

func TestEncodersRefuseBeforeWriting(t *testing.T) {
	for _, name := range Names() {
		e := mustEncoder(t, name, EncoderOptions{})
		for _, tc := range []struct {
			what string
			m    image.Image
			want error
		}{
			{"nil", nil, ErrPixels},
			{"empty", image.NewGray(image.Rect(0, 0, 0, 4)), ErrPixels},
			{"short pix", &Pixels{W: 4, H: 4, C: 3, Pix: make([]byte, 47)}, ErrPixels},
			{"two channels", &Pixels{W: 1, H: 1, C: 2, Pix: make([]byte, 2)}, ErrPixels},
		} {
			var w countingWriter
			if err := e.Encode(&w, tc.m); !errors.Is(err, tc.want) || w.n != 0 {
				t.Errorf("%s %s: error %v after %d bytes", name, tc.what, err, w.n)
			}
		}
	}
	var w countingWriter
	wide := &Pixels{W: 1 << 16, H: 1, C: 1, Pix: make([]byte, 1<<16)}
	var l *protocol.LimitError
	if err := mustEncoder(t, "jpeg", EncoderOptions{}).Encode(&w, wide); !errors.As(err, &l) || l.Value != 1<<16 || w.n != 0 {
		t.Errorf("jpeg 65536 wide: %v after %d bytes", err, w.n)
	}
}

func TestEncoderOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts EncoderOptions
		ok   bool
	}{
		{"png", EncoderOptions{Level: LevelHuffmanOnly}, true},
		{"png", EncoderOptions{Level: LevelCompact}, true},
		{"png", EncoderOptions{Level: -4}, false},
		{"png", EncoderOptions{Level: 10}, false},
		{"png", EncoderOptions{Workers: -1}, false},
		{"jpeg", EncoderOptions{Quality: 1}, true},
		{"jpeg", EncoderOptions{Quality: 100}, true},
		{"jpeg", EncoderOptions{Quality: -1}, false},
		{"jpeg", EncoderOptions{Quality: 101}, false},
		{"tiff", EncoderOptions{Level: LevelNone}, true},
		{"tiff", EncoderOptions{Level: 11}, false},
		{"bmp", EncoderOptions{Quality: 1000, Level: 99}, true}, // nothing applies
	} {
		_, err := NewEncoder(tc.name, tc.opts)
		var oe *OptionError
		if tc.ok != (err == nil) || (!tc.ok && (!errors.As(err, &oe) || !errors.Is(err, ErrOption))) {
			t.Errorf("%s %+v: error %v", tc.name, tc.opts, err)
		}
	}
	// Quality changes the output; the zero value is 95.
	p := photoLike(64, 64, 3, 1)
	size := func(q int) int {
		var buf bytes.Buffer
		if err := mustEncoder(t, "jpeg", EncoderOptions{Quality: q}).Encode(&buf, p); err != nil {
			t.Fatal(err)
		}
		return buf.Len()
	}
	if size(0) != size(95) || size(10) >= size(95) {
		t.Errorf("jpeg sizes: default %d, 95 %d, 10 %d", size(0), size(95), size(10))
	}
}

// TestPNGGenericImages encodes standard library images that take the
// generic path or a zero-copy view, subimages included.
func TestPNGGenericImages(t *testing.T) {
	rgba := image.NewRGBA(image.Rect(0, 0, 9, 5))
	for i := range rgba.Pix {
		rgba.Pix[i] = uint8(i * 7)
		if i%4 == 3 {
			rgba.Pix[i] = 255
		}
	}
	rgba.Set(2, 2, color.NRGBA{200, 100, 50, 128})
	ycc := image.NewYCbCr(image.Rect(0, 0, 16, 8), image.YCbCrSubsampleRatio420)
	for i := range ycc.Y {
		ycc.Y[i] = uint8(i)
	}
	nrgba := stdImage(photoLike(30, 20, 4, 3), false).(*image.NRGBA)
	gray := stdImage(photoLike(30, 20, 1, 3), false).(*image.Gray)
	for _, tc := range []struct {
		name string
		m    image.Image
	}{
		{"rgba", rgba}, {"ycbcr", ycc}, {"nrgba", nrgba}, {"nrgba subimage", nrgba.SubImage(image.Rect(3, 4, 17, 19))},
		{"gray subimage", gray.SubImage(image.Rect(5, 1, 6, 20))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := mustEncoder(t, "png", EncoderOptions{}).Encode(&buf, tc.m); err != nil {
				t.Fatal(err)
			}
			m, err := png.Decode(&buf)
			if err != nil {
				t.Fatal(err)
			}
			b := tc.m.Bounds()
			for y := b.Min.Y; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					want := color.NRGBAModel.Convert(tc.m.At(x, y))
					if got := color.NRGBAModel.Convert(m.At(x-b.Min.X, y-b.Min.Y)); got != want {
						t.Fatalf("(%d,%d) = %v, want %v", x, y, got, want)
					}
				}
			}
		})
	}
}

// failWriter fails after n bytes.
type failWriter struct{ n int }

var errWrite = errors.New("test: write failed")

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, errWrite
	}
	f.n -= len(p)
	return len(p), nil
}

func TestPNGWriteErrors(t *testing.T) {
	p := photoLike(300, 300, 3, 1)
	for _, workers := range []int{1, 2} {
		for _, n := range []int{0, 10, 40, 1000, 100_000} {
			e := mustEncoder(t, "png", EncoderOptions{Workers: workers}).(*pngEncoder)
			e.minStripe = 1000
			if err := e.Encode(&failWriter{n: n}, p); !errors.Is(err, errWrite) {
				t.Errorf("workers %d, failing after %d bytes: %v", workers, n, err)
			}
		}
	}
}

func TestZlibHeader(t *testing.T) {
	for level := -2; level <= 9; level++ {
		h := zlibHeader(level)
		if h[0] != 0x78 || (uint(h[0])<<8|uint(h[1]))%31 != 0 || h[1]&0x20 != 0 {
			t.Errorf("level %d: header % x", level, h)
		}
	}
}

func TestAdler32Combine(t *testing.T) {
	data := photoLike(200, 200, 3, 1).Pix
	for _, cut := range []int{0, 1, 5552, 65521, 65522, len(data) - 1, len(data)} {
		a, b := data[:cut], data[cut:]
		if got, want := adler32Combine(adlerOf(a), adlerOf(b), int64(len(b))), adlerOf(data); got != want {
			t.Errorf("cut at %d: %08x, want %08x", cut, got, want)
		}
	}
}

func adlerOf(p []byte) uint32 {
	s1, s2 := uint32(1), uint32(0)
	for _, b := range p {
		s1 = (s1 + uint32(b)) % 65521
		s2 = (s2 + s1) % 65521
	}
	return s2<<16 | s1
}
