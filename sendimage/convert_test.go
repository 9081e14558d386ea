package sendimage

import (
	"errors"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/nodecast/nodecast/protocol"
)

// comfyByte is ComfyUI's conversion written independently of the package:
// numpy's float32 255*x, np.clip to 0..255, astype(uint8) truncating; NaN
// becomes 0 (what numpy produces on the platforms ComfyUI runs on).
func comfyByte(x float32) byte {
	v := float64(x * float32(255))
	if math.IsNaN(v) {
		return 0
	}
	return byte(math.Trunc(math.Min(math.Max(v, 0), 255)))
}

func TestConvertExactValues(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	cases := []struct {
		in   float32
		want byte
	}{
		{0, 0}, {0.00392, 0}, {1.0 / 255, 1}, {0.5, 127}, {0.999, 254}, {1.0, 255},
		{1.5, 255}, {-0.2, 0}, {-0.0, 0}, {nan, 0}, {inf, 255}, {-inf, 0},
		{1e30, 255}, {-1e30, 0}, {8388608, 255}, {-8388608, 0}, {3e38, 255},
		{254.5 / 255, 254}, {math.Nextafter32(1, 0), 254},
	}
	for _, tc := range cases {
		// Every kernel, and a long slice so the fast kernel runs around the value.
		src := make([]float32, 37)
		for i := range src {
			src[i] = float32(i) / 40
		}
		src[21] = tc.in
		dst := make([]byte, len(src))
		ConvertFloats(dst, src)
		if dst[21] != tc.want {
			t.Errorf("ConvertFloats(%v) = %d, want %d", tc.in, dst[21], tc.want)
		}
		if got := comfyByte(tc.in); got != tc.want {
			t.Errorf("reference(%v) = %d, want %d: the test's reference is wrong", tc.in, got, tc.want)
		}
		one := []byte{0}
		convertExact(one, []float32{tc.in})
		if one[0] != tc.want {
			t.Errorf("convertExact(%v) = %d, want %d", tc.in, one[0], tc.want)
		}
	}
}

// TestConvertMatchesReference compares both kernels with the reference on
// values from every range, including the edges of the fast kernel's range.
func TestConvertMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	src := make([]float32, 200_000)
	for i := range src {
		switch i % 5 {
		case 0:
			src[i] = r.Float32()
		case 1:
			src[i] = r.Float32()*3 - 1
		case 2:
			src[i] = math.Float32frombits(r.Uint32()) // anything, NaN and Inf included
		case 3:
			src[i] = float32(r.IntN(256)) / 255
		case 4:
			src[i] = math.Float32frombits(fastLimitBits + uint32(r.IntN(64)) - 32) // around 2^23
		}
	}
	dst := make([]byte, len(src))
	ConvertFloats(dst, src)
	for i, x := range src {
		if want := comfyByte(x); dst[i] != want {
			t.Fatalf("ConvertFloats: element %d (%v) = %d, want %d", i, x, dst[i], want)
		}
	}
	// The fast kernel alone, on its range.
	in := make([]float32, 0, len(src))
	for _, x := range src {
		if math.Abs(float64(x)) < 1<<23 {
			in = append(in, x)
		}
	}
	out := make([]byte, len(in))
	if outsideFastRange(float32Bytes(in)) {
		t.Fatal("outsideFastRange: true for values all under 2^23")
	}
	convertInRange(out, in)
	for i, x := range in {
		if want := comfyByte(x); out[i] != want {
			t.Fatalf("convertInRange: %v = %d, want %d", x, out[i], want)
		}
	}
}

func TestOutsideFastRange(t *testing.T) {
	for _, tc := range []struct {
		v    float32
		want bool
	}{
		{0, false}, {1, false}, {-1, false}, {math.Nextafter32(1<<23, 0), false}, {-math.Nextafter32(1<<23, 0), false},
		{1 << 23, true}, {-(1 << 23), true}, {float32(math.NaN()), true}, {float32(math.Inf(-1)), true}, {3e38, true},
	} {
		for _, n := range []int{1, 7, 8, 9, 33} { // tail and unrolled loop
			for pos := range n {
				s := make([]float32, n)
				s[pos] = tc.v
				if got := outsideFastRange(float32Bytes(s)); got != tc.want {
					t.Fatalf("outsideFastRange(%v at %d of %d) = %v, want %v", tc.v, pos, n, got, tc.want)
				}
			}
		}
	}
}

func TestImagesChannels(t *testing.T) {
	for _, c := range []int{1, 3, 4} {
		want := photoLike(5, 3, c, uint64(c))
		other := photoLike(5, 3, c, 99)
		for _, tensor := range []*protocol.Tensor{
			pixelsTensor(2, other, want),
			protocol.FromUint8(append(append([]byte(nil), other.Pix...), want.Pix...), 2, 3, 5, c),
		} {
			im, err := NewImages(tensor, ConvertOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if im.Len() != 2 || im.Width != 5 || im.Height != 3 || im.Channels != c {
				t.Fatalf("dims %+v", im)
			}
			got, err := im.Pixels(1, &Pixels{Pix: make([]byte, 1000)})
			if err != nil {
				t.Fatal(err)
			}
			if d := diffPixels(want, got); d != "" || string(got.Pix) != string(want.Pix) {
				t.Fatalf("%s c=%d: %s", tensor.DType, c, d)
			}
			wantModel := color.NRGBAModel
			if c == 1 {
				wantModel = color.GrayModel
			}
			if got.ColorModel() != wantModel {
				t.Errorf("c=%d: model %v", c, got.ColorModel())
			}
			if _, err := im.Pixels(2, nil); !errors.Is(err, protocol.ErrLimit) {
				t.Errorf("Pixels(2) of 2: %v", err)
			}
		}
	}
}

func TestPixelsImage(t *testing.T) {
	p := &Pixels{W: 2, H: 1, C: 3, Pix: []byte{1, 2, 3, 4, 5, 6}}
	if got := p.At(1, 0); got != (color.NRGBA{4, 5, 6, 255}) {
		t.Errorf("At(1,0) = %v", got)
	}
	if got := p.At(2, 0); got != (color.NRGBA{}) {
		t.Errorf("At outside = %v", got)
	}
	if p.Bounds() != image.Rect(0, 0, 2, 1) || !p.Opaque() {
		t.Error("bounds or opaque")
	}
	q := &Pixels{W: 1, H: 1, C: 4, Pix: []byte{9, 8, 7, 6}}
	if q.At(0, 0) != (color.NRGBA{9, 8, 7, 6}) || q.Opaque() {
		t.Error("RGBA pixel")
	}
	g := &Pixels{W: 1, H: 1, C: 1, Pix: []byte{200}}
	if g.At(0, 0) != (color.Gray{200}) {
		t.Error("gray pixel")
	}
	for _, bad := range []*Pixels{nil, {W: 1, H: 1, C: 2, Pix: []byte{1, 2}}, {W: 0, H: 1, C: 1}, {W: 2, H: 2, C: 3, Pix: make([]byte, 11)}} {
		if err := bad.Validate(); !errors.Is(err, ErrPixels) {
			t.Errorf("Validate(%+v) = %v", bad, err)
		}
	}
}

func TestNewImagesNonFinite(t *testing.T) {
	f := make([]float32, 2*2*2*3)
	f[12+5] = float32(math.Inf(-1))
	f[12+7] = float32(math.NaN())
	tensor := protocol.FromFloat32(f, 2, 2, 2, 3)
	_, err := NewImages(tensor, ConvertOptions{})
	var nf *protocol.NonFiniteError
	if !errors.As(err, &nf) || nf.Index != 17 || !math.IsInf(float64(nf.Value), -1) || !errors.Is(err, protocol.ErrNonFinite) {
		t.Fatalf("error %v", err)
	}
	im, err := NewImages(tensor, ConvertOptions{AllowNonFinite: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := im.Pixels(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pix[5] != 0 || p.Pix[7] != 0 {
		t.Errorf("-Inf, NaN -> %d, %d; want 0, 0", p.Pix[5], p.Pix[7])
	}
	// Huge but finite values are converted (clipped), not refused.
	f[12+7] = 1e20
	if p, err := ToPixels(tensor, 1, ConvertOptions{AllowNonFinite: true}); err != nil || p.Pix[7] != 255 {
		t.Errorf("1e20: %v %v", p, err)
	}
}

func TestImageToTensor(t *testing.T) {
	src := image.NewNRGBA(image.Rect(10, 20, 12, 21))
	src.SetNRGBA(10, 20, color.NRGBA{255, 128, 0, 255})
	src.SetNRGBA(11, 20, color.NRGBA{10, 20, 30, 0})
	for _, keep := range []bool{false, true} {
		tensor, err := ImageToTensor(src, keep)
		if err != nil {
			t.Fatal(err)
		}
		c := 3
		if keep {
			c = 4
		}
		if got := tensor.Shape; len(got) != 4 || got[0] != 1 || got[1] != 1 || got[2] != 2 || got[3] != c {
			t.Fatalf("shape %v", got)
		}
		f := tensor.Float32s()
		want := []float32{1, float32(128) / 255, 0, float32(10) / 255, float32(20) / 255, float32(30) / 255}
		wantAlpha := []float32{1, 0}
		for px := range 2 {
			for k := range 3 {
				if f[px*c+k] != want[px*3+k] {
					t.Errorf("keep=%v pixel %d channel %d = %v, want %v", keep, px, k, f[px*c+k], want[px*3+k])
				}
			}
			if keep && f[px*c+3] != wantAlpha[px] {
				t.Errorf("alpha of pixel %d = %v", px, f[px*c+3])
			}
		}
	}
	mask := AlphaMask(src)
	if got := mask.Float32s(); len(got) != 2 || got[0] != 0 || got[1] != 1 || len(mask.Shape) != 3 {
		t.Errorf("mask %v shape %v", got, mask.Shape)
	}

	gray := image.NewGray(image.Rect(0, 0, 1, 1))
	gray.Pix[0] = 51
	tensor, err := ImageToTensor(gray, false)
	if err != nil {
		t.Fatal(err)
	}
	if f := tensor.Float32s(); f[0] != 0.2 || f[1] != 0.2 || f[2] != 0.2 {
		t.Errorf("gray -> %v", f)
	}
	if m := AlphaMask(gray).Float32s(); m[0] != 0 {
		t.Errorf("opaque mask %v", m)
	}
	if AlphaMask(nil) != nil || AlphaMask(image.NewRGBA(image.Rect(0, 0, 0, 5))) != nil {
		t.Error("AlphaMask of nothing")
	}
	if _, err := ImageToTensor(image.NewGray(image.Rect(0, 0, 0, 3)), false); !errors.Is(err, ErrPixels) {
		t.Errorf("empty: %v", err)
	}
	if _, err := ImageToTensor(&Pixels{W: 20000, H: 1, C: 1, Pix: make([]byte, 20000)}, false); !errors.Is(err, protocol.ErrLimit) {
		t.Errorf("oversize: %v", err)
	}
}

// TestTensorRoundTrip checks that loading and sending are inverse: every
// byte value survives /255 then ComfyUI's conversion, in every channel layout.
func TestTensorRoundTrip(t *testing.T) {
	src := image.NewNRGBA(image.Rect(0, 0, 256, 2))
	for x := range 256 {
		src.SetNRGBA(x, 0, color.NRGBA{uint8(x), uint8(255 - x), uint8(x * 7), uint8(x)})
		src.SetNRGBA(x, 1, color.NRGBA{uint8(x * 3), uint8(x), uint8(x * 5), 255})
	}
	tensor, err := ImageToTensor(src, true)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ToPixels(tensor, 0, ConvertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Pix) != string(src.Pix) {
		t.Fatal("round trip changed pixels")
	}
}

func TestFromImage(t *testing.T) {
	rgba := image.NewRGBA(image.Rect(0, 0, 3, 2))
	rgba.Set(1, 1, color.NRGBA{200, 100, 50, 128})
	opaque := image.NewRGBA(image.Rect(0, 0, 3, 2))
	for i := range opaque.Pix {
		opaque.Pix[i] = 255
	}
	ycc := image.NewYCbCr(image.Rect(0, 0, 4, 4), image.YCbCrSubsampleRatio420)
	pal := image.NewPaletted(image.Rect(0, 0, 2, 2), color.Palette{color.NRGBA{1, 2, 3, 255}, color.NRGBA{9, 9, 9, 0}})
	pal.Pix[3] = 1
	g16 := image.NewGray16(image.Rect(0, 0, 2, 1))
	g16.SetGray16(1, 0, color.Gray16{0xabcd})
	sub := photoLike(10, 10, 3, 1)
	subNRGBA := stdImage(sub, false).(*image.NRGBA).SubImage(image.Rect(2, 3, 7, 9))
	for _, tc := range []struct {
		name  string
		m     image.Image
		wantC int
	}{
		{"rgba translucent", rgba, 4}, {"rgba opaque", opaque, 3}, {"ycbcr", ycc, 3},
		{"paletted with transparency", pal, 4}, {"gray16", g16, 1}, {"nrgba subimage", subNRGBA, 3},
		{"gray", image.NewGray(image.Rect(1, 1, 4, 3)), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := FromImage(tc.m)
			if p.C != tc.wantC {
				t.Fatalf("channels %d, want %d", p.C, tc.wantC)
			}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			b := tc.m.Bounds()
			for y := 0; y < p.H; y++ {
				for x := 0; x < p.W; x++ {
					want := color.NRGBAModel.Convert(tc.m.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
					if p.C == 1 {
						g := color.GrayModel.Convert(tc.m.At(b.Min.X+x, b.Min.Y+y)).(color.Gray)
						want = color.NRGBA{g.Y, g.Y, g.Y, 255}
					}
					if got := color.NRGBAModel.Convert(p.At(x, y)).(color.NRGBA); got != want {
						t.Fatalf("(%d,%d) = %v, want %v", x, y, got, want)
					}
				}
			}
		})
	}
}
