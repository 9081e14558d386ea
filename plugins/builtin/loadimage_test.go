package builtin

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// inputDir makes a temporary input folder and points $NODECAST_INPUT_DIR at it.
func inputDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv(plugins.InputDirEnv, dir)
	return dir
}

func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// testNRGBA is a 3×2 image with distinct colours and alphas.
func testNRGBA() *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	for y := 0; y < 2; y++ {
		for x := 0; x < 3; x++ {
			m.SetNRGBA(x, y, color.NRGBA{uint8(40*x + 1), uint8(90*y + 2), uint8(17*x + 33*y), uint8(255 - 50*x - 100*y)})
		}
	}
	return m
}

// expectRGB lists the RGB floats of an image's pixels, ComfyUI style.
func expectRGB(m image.Image) []float32 {
	var out []float32
	b := m.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(m.At(x, y)).(color.NRGBA)
			out = append(out, u8(c.R), u8(c.G), u8(c.B))
		}
	}
	return out
}

func expectMask(m image.Image) []float32 {
	var out []float32
	b := m.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(m.At(x, y)).(color.NRGBA)
			out = append(out, 1-u8(c.A))
		}
	}
	return out
}

func TestLoadImageRGBAAndMask(t *testing.T) {
	dir := inputDir(t)
	m := testNRGBA()
	writeFile(t, dir, "a.png", encodePNG(t, m))
	res := mustRun(t, "LoadImage", map[string]any{"image": "a.png"})
	img, mask := tensorOut(t, res, 0), tensorOut(t, res, 1)
	wantShape(t, img, 1, 2, 3, 3)
	wantShape(t, mask, 1, 2, 3)
	wantFloats(t, "image", img.Float32s(), expectRGB(m))
	wantFloats(t, "mask", mask.Float32s(), expectMask(m))
	if got := mask.Float32s()[0]; got != 0 { // alpha 255 -> mask 0
		t.Errorf("mask of the opaque pixel is %v, want 0", got)
	}
}

func TestLoadImageWithoutAlphaGives64x64ZeroMask(t *testing.T) {
	dir := inputDir(t)
	m := image.NewRGBA(image.Rect(0, 0, 5, 4)) // opaque: image/png writes colour type RGB
	for i := range m.Pix {
		m.Pix[i] = uint8(i * 3)
		if i%4 == 3 {
			m.Pix[i] = 0xff
		}
	}
	gray := image.NewGray(image.Rect(0, 0, 5, 4))
	for i := range gray.Pix {
		gray.Pix[i] = uint8(i * 11)
	}
	for name, src := range map[string]image.Image{"rgb.png": m, "gray.png": gray} {
		t.Run(name, func(t *testing.T) {
			writeFile(t, dir, name, encodePNG(t, src))
			res := mustRun(t, "LoadImage", map[string]any{"image": name})
			img, mask := tensorOut(t, res, 0), tensorOut(t, res, 1)
			wantShape(t, img, 1, 4, 5, 3)
			wantFloats(t, "image", img.Float32s(), expectRGB(src))
			wantShape(t, mask, 1, 64, 64)
			for i, v := range mask.Float32s() {
				if v != 0 {
					t.Fatalf("mask element %d is %v, want 0", i, v)
				}
			}
		})
	}
}

func TestLoadImage16BitPNGKeepsHighByte(t *testing.T) {
	dir := inputDir(t)
	n64 := image.NewNRGBA64(image.Rect(0, 0, 2, 1))
	n64.SetNRGBA64(0, 0, color.NRGBA64{0x12ff, 0xab01, 0x0080, 0x7fff})
	n64.SetNRGBA64(1, 0, color.NRGBA64{0xffff, 0x0000, 0x8080, 0xffff})
	g16 := image.NewGray16(image.Rect(0, 0, 2, 1))
	g16.SetGray16(0, 0, color.Gray16{0x80ff})
	g16.SetGray16(1, 0, color.Gray16{0x0101})
	cases := []struct {
		name     string
		src      image.Image
		wantRGB  []float32
		wantMask []float32 // nil: 64×64 zeros
	}{
		{"rgba16.png", n64,
			[]float32{u8(0x12), u8(0xab), u8(0x00), u8(0xff), u8(0x00), u8(0x80)},
			[]float32{1 - u8(0x7f), 1 - u8(0xff)}},
		{"gray16.png", g16, []float32{u8(0x80), u8(0x80), u8(0x80), u8(0x01), u8(0x01), u8(0x01)}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := encodePNG(t, c.src)
			if data[24] != 16 { // IHDR bit depth
				t.Fatalf("test PNG has bit depth %d, want 16", data[24])
			}
			writeFile(t, dir, c.name, data)
			res := mustRun(t, "LoadImage", map[string]any{"image": c.name})
			wantFloats(t, "image", tensorOut(t, res, 0).Float32s(), c.wantRGB)
			mask := tensorOut(t, res, 1)
			if c.wantMask == nil {
				wantShape(t, mask, 1, 64, 64)
			} else {
				wantFloats(t, "mask", mask.Float32s(), c.wantMask)
			}
		})
	}
}

func TestLoadImageFormats(t *testing.T) {
	dir := inputDir(t)
	src := image.NewRGBA(image.Rect(0, 0, 4, 3))
	for y := 0; y < 3; y++ {
		for x := 0; x < 4; x++ {
			src.SetRGBA(x, y, color.RGBA{uint8(60 * x), uint8(100 * y), uint8(10*x + 30*y + 7), 0xff})
		}
	}
	var bmpData, tiffData, gifData bytes.Buffer
	if err := bmp.Encode(&bmpData, src); err != nil {
		t.Fatal(err)
	}
	if err := tiff.Encode(&tiffData, src, &tiff.Options{Compression: tiff.Deflate}); err != nil {
		t.Fatal(err)
	}
	pal := image.NewPaletted(src.Bounds(), nil)
	pal.Palette = color.Palette{}
	for y := 0; y < 3; y++ {
		for x := 0; x < 4; x++ {
			pal.Palette = append(pal.Palette, src.At(x, y))
			pal.SetColorIndex(x, y, uint8(len(pal.Palette)-1))
		}
	}
	if err := gif.Encode(&gifData, pal, nil); err != nil {
		t.Fatal(err)
	}
	webpOpaque, err := os.ReadFile("testdata/opaque.webp")
	if err != nil {
		t.Fatal(err)
	}
	exactRGB := expectRGB(src)
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"x.bmp", bmpData.Bytes()},
		{"x.tiff", tiffData.Bytes()},
		{"x.gif", gifData.Bytes()},
		{"x.webp", webpOpaque},
	} {
		t.Run(c.name, func(t *testing.T) {
			writeFile(t, dir, c.name, c.data)
			res := mustRun(t, "LoadImage", map[string]any{"image": c.name})
			img := tensorOut(t, res, 0)
			wantShape(t, img, 1, 3, 4, 3)
			wantFloats(t, "image", img.Float32s(), exactRGB)
			wantShape(t, tensorOut(t, res, 1), 1, 64, 64)
		})
	}
}

func TestLoadImageWebP(t *testing.T) {
	dir := inputDir(t)
	// The test files' pixels (see testdata/README.md).
	var rgb, mask []float32
	for y := 0; y < 3; y++ {
		for x := 0; x < 4; x++ {
			rgb = append(rgb, u8(uint8(60*x)), u8(uint8(100*y)), u8(uint8(10*x+30*y+7)))
			mask = append(mask, 1-u8(uint8(60*x+20*y+15)))
		}
	}
	for _, c := range []struct {
		file  string
		exact bool
		alpha bool
	}{
		{"opaque.webp", true, false},
		{"alpha.webp", true, true},
		{"lossy.webp", false, false},
		{"lossy_alpha.webp", false, true},
	} {
		t.Run(c.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, dir, c.file, data)
			res := mustRun(t, "LoadImage", map[string]any{"image": c.file})
			img, m := tensorOut(t, res, 0), tensorOut(t, res, 1)
			wantShape(t, img, 1, 3, 4, 3)
			if c.exact {
				wantFloats(t, "image", img.Float32s(), rgb)
			} else {
				// Lossy, and chroma-subsampled on a tiny image: close on
				// average, not exact.
				var sum float64
				for i, v := range img.Float32s() {
					sum += math.Abs(float64(v - rgb[i]))
				}
				if mean := sum / float64(len(rgb)); mean > 0.08 {
					t.Fatalf("lossy image differs from the source by %.3f on average", mean)
				}
			}
			if !c.alpha {
				wantShape(t, m, 1, 64, 64)
				return
			}
			wantShape(t, m, 1, 3, 4)
			wantFloats(t, "mask", m.Float32s(), mask) // alpha is lossless in all the files
		})
	}
}

func TestLoadImageJPEG(t *testing.T) {
	dir := inputDir(t)
	src := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for i := range src.Pix {
		src.Pix[i] = []uint8{200, 100, 50, 255}[i%4]
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, src, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "x.jpg", b.Bytes())
	res := mustRun(t, "LoadImage", map[string]any{"image": "x.jpg"})
	img := tensorOut(t, res, 0)
	wantShape(t, img, 1, 16, 16, 3)
	want := []float32{u8(200), u8(100), u8(50)}
	for i, v := range img.Float32s() {
		if d := v - want[i%3]; d > 3.0/255 || d < -3.0/255 {
			t.Fatalf("element %d is %v, want about %v", i, v, want[i%3])
		}
	}
}

// animatedGIF is 3 frames on a 4×2 canvas: a full red frame, a green 2×1
// patch at (1,0), and a frame whose only pixel (3,1) is transparent.
func animatedGIF(t *testing.T, transparent bool) []byte {
	t.Helper()
	red, green := color.RGBA{255, 0, 0, 255}, color.RGBA{0, 255, 0, 255}
	pal := color.Palette{red, green, color.RGBA{0, 0, 255, 255}}
	if transparent {
		pal = append(pal, color.RGBA{})
	}
	f0 := image.NewPaletted(image.Rect(0, 0, 4, 2), pal)
	f1 := image.NewPaletted(image.Rect(1, 0, 3, 1), pal)
	for i := range f1.Pix {
		f1.Pix[i] = 1
	}
	f2 := image.NewPaletted(image.Rect(3, 1, 4, 2), pal)
	f2.Pix[0] = 2
	if transparent {
		f2.Pix[0] = 3
	}
	var b bytes.Buffer
	err := gif.EncodeAll(&b, &gif.GIF{
		Image:    []*image.Paletted{f0, f1, f2},
		Delay:    []int{1, 1, 1},
		Disposal: []byte{gif.DisposalNone, gif.DisposalNone, gif.DisposalNone},
		Config:   image.Config{ColorModel: pal, Width: 4, Height: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestLoadImageAnimatedGIFIsABatch(t *testing.T) {
	dir := inputDir(t)
	writeFile(t, dir, "anim.gif", animatedGIF(t, false))
	res := mustRun(t, "LoadImage", map[string]any{"image": "anim.gif"})
	img := tensorOut(t, res, 0)
	wantShape(t, img, 3, 2, 4, 3)
	r, g, b := []float32{1, 0, 0}, []float32{0, 1, 0}, []float32{0, 0, 1}
	frame := func(px ...[]float32) []float32 { return slices.Concat(px...) }
	want := slices.Concat(
		frame(r, r, r, r, r, r, r, r),
		frame(r, g, g, r, r, r, r, r), // the patch over frame 0
		frame(r, g, g, r, r, r, r, b), // and the last pixel over that
	)
	wantFloats(t, "frames", img.Float32s(), want)
	wantShape(t, tensorOut(t, res, 1), 3, 64, 64)

	t.Run("transparent", func(t *testing.T) {
		writeFile(t, dir, "anim-t.gif", animatedGIF(t, true))
		res := mustRun(t, "LoadImage", map[string]any{"image": "anim-t.gif"})
		mask := tensorOut(t, res, 1)
		wantShape(t, mask, 3, 2, 4)
		// A transparent pixel drawn Over an opaque one leaves it opaque.
		for i, v := range mask.Float32s() {
			if v != 0 {
				t.Fatalf("mask element %d is %v, want 0", i, v)
			}
		}
	})

	t.Run("over the batch limit", func(t *testing.T) {
		p := NewPack(Options{MaxBatchPixels: 3*8 - 1})
		_, _, err := runWith(t, nodeOf(t, p, "LoadImage"), map[string]any{"image": "anim.gif"}, plugins.Limits{})
		var le *protocol.LimitError
		if !errors.As(err, &le) || le.What != "batch pixels" || le.Value != 24 {
			t.Fatalf("err = %v, want a batch pixels LimitError with value 24", err)
		}
	})
}

func TestLoadImageNames(t *testing.T) {
	dir := inputDir(t)
	data := encodePNG(t, testNRGBA())
	writeFile(t, dir, "a.png", data)
	writeFile(t, dir, "sub/b.png", data)
	for _, name := range []string{"a.png", "a.png [input]", "sub/b.png", "sub/b.png [input]", "./sub//b.png"} {
		t.Run(name, func(t *testing.T) {
			res := mustRun(t, "LoadImage", map[string]any{"image": name})
			wantShape(t, tensorOut(t, res, 0), 1, 2, 3, 3)
		})
	}
	t.Run("spec lists top-level images", func(t *testing.T) {
		writeFile(t, dir, "notes.txt", []byte("x"))
		writeFile(t, dir, "C.JPG", []byte("x"))
		in := node(t, "LoadImage").Spec().Inputs[0]
		if want := []string{"C.JPG", "a.png"}; !slices.Equal(in.Choices, want) {
			t.Fatalf("choices %q, want %q", in.Choices, want)
		}
		if in.Options["image_upload"] != true {
			t.Fatalf("image_upload option missing: %v", in.Options)
		}
	})
}

func TestLoadImageRefuses(t *testing.T) {
	dir := inputDir(t)
	outside := t.TempDir()
	writeFile(t, outside, "secret.png", encodePNG(t, testNRGBA()))
	writeFile(t, dir, "notimage.png", []byte("this is not an image at all"))
	writeFile(t, dir, "huge.png", pngHeaderOnly(20000, 20000))
	writeFile(t, dir, "ten.png", encodePNG(t, image.NewGray(image.Rect(0, 0, 10, 10))))
	if err := os.Mkdir(filepath.Join(dir, "folder.png"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret.png"), filepath.Join(dir, "link.png")); err != nil {
		t.Fatal(err)
	}

	isPath := func(exception string) func(*testing.T, error) {
		return func(t *testing.T, err error) {
			t.Helper()
			var pe *PathError
			if !errors.As(err, &pe) || !errors.Is(err, ErrPath) {
				t.Fatalf("err = %v (%T), want *PathError", err, err)
			}
			if got := pe.ExceptionType(); got != exception {
				t.Fatalf("exception type %q, want %q", got, exception)
			}
		}
	}
	isLimit := func(what string, value int64) func(*testing.T, error) {
		return func(t *testing.T, err error) {
			t.Helper()
			var le *protocol.LimitError
			if !errors.As(err, &le) || le.What != what || le.Value != value {
				t.Fatalf("err = %v, want a LimitError on %s with value %d", err, what, value)
			}
		}
	}
	cases := []struct {
		name   string
		inputs map[string]any
		limits protocol.ImageLimits
		check  func(*testing.T, error)
	}{
		{"dot-dot", map[string]any{"image": "../" + filepath.Base(outside) + "/secret.png"}, protocol.ImageLimits{}, isPath("ValueError")},
		{"nested dot-dot", map[string]any{"image": "sub/../../x.png"}, protocol.ImageLimits{}, isPath("ValueError")},
		{"backslash dot-dot", map[string]any{"image": "..\\x.png"}, protocol.ImageLimits{}, isPath("ValueError")},
		{"absolute", map[string]any{"image": filepath.Join(outside, "secret.png")}, protocol.ImageLimits{}, isPath("ValueError")},
		{"output annotation", map[string]any{"image": "a.png [output]"}, protocol.ImageLimits{}, isPath("ValueError")},
		{"symlink out of the folder", map[string]any{"image": "link.png"}, protocol.ImageLimits{}, isPath("ValueError")},
		{"directory", map[string]any{"image": "folder.png"}, protocol.ImageLimits{}, isPath("ValueError")},
		{"missing file", map[string]any{"image": "nope.png"}, protocol.ImageLimits{}, func(t *testing.T, err error) {
			isPath("FileNotFoundError")(t, err)
			if !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("err = %v, want fs.ErrNotExist in its chain", err)
			}
		}},
		{"missing input", map[string]any{}, protocol.ImageLimits{}, func(t *testing.T, err error) {
			var ie *plugins.InputError
			if !errors.As(err, &ie) || ie.Input != "image" {
				t.Fatalf("err = %v, want an InputError on image", err)
			}
		}},
		{"mistyped input", map[string]any{"image": int64(3)}, protocol.ImageLimits{}, func(t *testing.T, err error) {
			if !errors.Is(err, plugins.ErrInput) {
				t.Fatalf("err = %v, want ErrInput", err)
			}
		}},
		{"not an image", map[string]any{"image": "notimage.png"}, protocol.ImageLimits{}, func(t *testing.T, err error) {
			var de *DecodeError
			if !errors.As(err, &de) || de.ExceptionType() != "PIL.UnidentifiedImageError" {
				t.Fatalf("err = %v, want an unidentified-image DecodeError", err)
			}
		}},
		// The header claims 20000×20000 and there are no pixels after it: a
		// LimitError (not a decode error) proves the header was checked first.
		{"over the side limit, before decoding", map[string]any{"image": "huge.png"}, protocol.ImageLimits{}, isLimit("image width", 20000)},
		{"over the pixel limit, before decoding", map[string]any{"image": "huge.png"}, protocol.ImageLimits{MaxSide: -1}, isLimit("image pixels", 400_000_000)},
		{"over a configured limit", map[string]any{"image": "ten.png"}, protocol.ImageLimits{MaxPixels: 99}, isLimit("image pixels", 100)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := runWith(t, node(t, "LoadImage"), c.inputs, plugins.Limits{Image: c.limits})
			if err == nil {
				t.Fatal("no error")
			}
			c.check(t, err)
		})
	}

	t.Run("no input folder", func(t *testing.T) {
		t.Setenv(plugins.InputDirEnv, "")
		_, _, err := run(t, "LoadImage", map[string]any{"image": "a.png"})
		if !errors.Is(err, ErrInputDir) {
			t.Fatalf("err = %v, want ErrInputDir", err)
		}
	})
}
