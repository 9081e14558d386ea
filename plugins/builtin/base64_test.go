package builtin

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"os"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

func b64(data []byte) string { return base64.StdEncoding.EncodeToString(data) }

func TestLoadImageBase64(t *testing.T) {
	m := testNRGBA()
	enc := b64(encodePNG(t, m))
	wrapped := ""
	for s := enc; s != ""; {
		n := min(len(s), 76)
		wrapped += s[:n] + "\r\n"
		s = s[n:]
	}
	for _, class := range []string{"ETN_LoadImageBase64", "NTL_LoadImageBase64"} {
		for name, input := range map[string]string{
			"plain":         enc,
			"data URL":      "data:image/png;base64," + enc,
			"no padding":    strings.TrimRight(enc, "="),
			"line-wrapped":  wrapped,
			"data URL, odd": "data:application/octet-stream;base64," + enc,
		} {
			t.Run(class+"/"+name, func(t *testing.T) {
				res := mustRun(t, class, map[string]any{"image": input})
				img, mask := tensorOut(t, res, 0), tensorOut(t, res, 1)
				wantShape(t, img, 1, 2, 3, 3)
				wantFloats(t, "image", img.Float32s(), expectRGB(m))
				wantShape(t, mask, 1, 2, 3)
				wantFloats(t, "mask", mask.Float32s(), expectMask(m))
			})
		}
	}
	t.Run("webp without alpha", func(t *testing.T) {
		data, err := os.ReadFile("testdata/opaque.webp")
		if err != nil {
			t.Fatal(err)
		}
		res := mustRun(t, "ETN_LoadImageBase64", map[string]any{"image": "data:image/webp;base64," + b64(data)})
		wantShape(t, tensorOut(t, res, 0), 1, 3, 4, 3)
		wantShape(t, tensorOut(t, res, 1), 1, 64, 64)
	})
}

func TestLoadMaskBase64(t *testing.T) {
	gray := image.NewGray(image.Rect(0, 0, 2, 2))
	copy(gray.Pix, []byte{0, 64, 128, 255})
	rgba := image.NewNRGBA(image.Rect(0, 0, 2, 1))
	rgba.SetNRGBA(0, 0, color.NRGBA{10, 20, 30, 40})
	rgba.SetNRGBA(1, 0, color.NRGBA{200, 100, 50, 255})
	for _, class := range []string{"ETN_LoadMaskBase64", "NTL_LoadMaskBase64"} {
		t.Run(class+"/gray", func(t *testing.T) {
			m := tensorOut(t, mustRun(t, class, map[string]any{"mask": b64(encodePNG(t, gray))}), 0)
			wantShape(t, m, 1, 2, 2)
			wantFloats(t, "mask", m.Float32s(), []float32{0, u8(64), u8(128), 1}) // not inverted
		})
		t.Run(class+"/red channel", func(t *testing.T) {
			m := tensorOut(t, mustRun(t, class, map[string]any{"mask": "data:image/png;base64," + b64(encodePNG(t, rgba))}), 0)
			wantShape(t, m, 1, 1, 2)
			wantFloats(t, "mask", m.Float32s(), []float32{u8(10), u8(200)})
		})
	}
}

func TestLoadImagesBase64(t *testing.T) {
	a, b := testNRGBA(), testNRGBA()
	b.SetNRGBA(0, 0, color.NRGBA{1, 2, 3, 255})
	list := func(ms ...image.Image) string {
		var ss []string
		for _, m := range ms {
			ss = append(ss, b64(encodePNG(t, m)))
		}
		j, _ := json.Marshal(ss)
		return string(j)
	}
	res := mustRun(t, "NTL_LoadImagesBase64", map[string]any{"images": list(a, b)})
	if len(res.Outputs) != 1 {
		t.Fatalf("%d outputs, want 1 (IMAGE only)", len(res.Outputs))
	}
	img := tensorOut(t, res, 0)
	wantShape(t, img, 2, 2, 3, 3)
	wantFloats(t, "batch", img.Float32s(), append(expectRGB(a), expectRGB(b)...))

	t.Run("decoded JSON array", func(t *testing.T) {
		res := mustRun(t, "NTL_LoadImagesBase64", map[string]any{"images": []any{b64(encodePNG(t, a))}})
		wantShape(t, tensorOut(t, res, 0), 1, 2, 3, 3)
	})

	t.Run("size mismatch names index and size", func(t *testing.T) {
		odd := image.NewNRGBA(image.Rect(0, 0, 5, 4))
		_, _, err := run(t, "NTL_LoadImagesBase64", map[string]any{"images": list(a, b, odd)})
		var be *BatchError
		if !errors.As(err, &be) || be.Index != 2 || be.Got != "5x4" || be.Want != "3x2" {
			t.Fatalf("err = %v, want a BatchError for index 2, 5x4 vs 3x2", err)
		}
		if msg := err.Error(); !strings.Contains(msg, "image 2") || !strings.Contains(msg, "5x4") || !strings.Contains(msg, "3x2") {
			t.Fatalf("message %q does not name the index and sizes", msg)
		}
	})

	for _, c := range []struct {
		name  string
		input any
		want  error
	}{
		{"not JSON", "iVBORw0KGgo=", plugins.ErrInput},
		{"empty list", "[]", plugins.ErrInput},
		{"not strings", []any{1.0}, plugins.ErrInput},
		{"missing", nil, plugins.ErrInput},
		{"bad base64 at index 1", `["` + b64(encodePNG(t, a)) + `", "@@@@"]`, ErrBase64},
		{"over the limit, header only", `["` + b64(pngHeaderOnly(20000, 20000)) + `"]`, protocol.ErrLimit},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := run(t, "NTL_LoadImagesBase64", map[string]any{"images": c.input})
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	t.Run("over the batch limit", func(t *testing.T) {
		p := NewPack(Options{MaxBatchPixels: 11})
		_, _, err := runWith(t, nodeOf(t, p, "NTL_LoadImagesBase64"), map[string]any{"images": list(a, b)}, plugins.Limits{})
		var le *protocol.LimitError
		if !errors.As(err, &le) || le.What != "batch pixels" || le.Value != 12 {
			t.Fatalf("err = %v, want a batch pixels LimitError of 12", err)
		}
	})
}

func TestBase64LoadersRefuse(t *testing.T) {
	for _, c := range []struct {
		name   string
		class  string
		inputs map[string]any
		limits protocol.ImageLimits
		check  func(*testing.T, error)
	}{
		{"invalid base64", "ETN_LoadImageBase64", map[string]any{"image": "iVBO*w0K"}, protocol.ImageLimits{}, func(t *testing.T, err error) {
			var be *Base64Error
			if !errors.As(err, &be) || be.Offset != 4 || be.ExceptionType() != "binascii.Error" {
				t.Fatalf("err = %v, want a Base64Error at offset 4", err)
			}
		}},
		{"only a data: prefix", "ETN_LoadImageBase64", map[string]any{"image": "data:image/png;base64,"}, protocol.ImageLimits{}, func(t *testing.T, err error) {
			if !errors.Is(err, ErrBase64) {
				t.Fatalf("err = %v, want ErrBase64", err)
			}
		}},
		{"valid base64, not an image", "NTL_LoadImageBase64", map[string]any{"image": b64([]byte("hello, world"))}, protocol.ImageLimits{}, func(t *testing.T, err error) {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("err = %v, want ErrDecode", err)
			}
		}},
		{"truncated PNG", "ETN_LoadImageBase64", map[string]any{"image": b64(encodePNG(t, testNRGBA())[:60])}, protocol.ImageLimits{}, func(t *testing.T, err error) {
			var de *DecodeError
			if !errors.As(err, &de) || de.Format != "png" {
				t.Fatalf("err = %v, want a png DecodeError", err)
			}
		}},
		{"over the pixel limit, header only", "ETN_LoadImageBase64", map[string]any{"image": b64(pngHeaderOnly(20000, 20000))}, protocol.ImageLimits{MaxSide: -1}, func(t *testing.T, err error) {
			var le *protocol.LimitError
			if !errors.As(err, &le) || le.What != "image pixels" || le.Value != 400_000_000 || le.Limit != protocol.DefaultMaxPixels {
				t.Fatalf("err = %v, want a pixel LimitError", err)
			}
		}},
		{"mask over the side limit", "ETN_LoadMaskBase64", map[string]any{"mask": b64(pngHeaderOnly(20000, 2))}, protocol.ImageLimits{}, func(t *testing.T, err error) {
			if !errors.Is(err, protocol.ErrLimit) {
				t.Fatalf("err = %v, want ErrLimit", err)
			}
		}},
		{"missing", "ETN_LoadImageBase64", map[string]any{}, protocol.ImageLimits{}, func(t *testing.T, err error) {
			if !errors.Is(err, plugins.ErrInput) {
				t.Fatalf("err = %v, want ErrInput", err)
			}
		}},
		{"not a string", "ETN_LoadMaskBase64", map[string]any{"mask": 12.0}, protocol.ImageLimits{}, func(t *testing.T, err error) {
			if !errors.Is(err, plugins.ErrInput) {
				t.Fatalf("err = %v, want ErrInput", err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := runWith(t, node(t, c.class), c.inputs, plugins.Limits{Image: c.limits})
			if err == nil {
				t.Fatal("no error")
			}
			c.check(t, err)
		})
	}
}

// FuzzLoadImageBase64 feeds arbitrary bytes to the base64 image loader: it
// must return an image or an error, never panic, and never exceed the limits.
func FuzzLoadImageBase64(f *testing.F) {
	for _, name := range []string{"opaque.webp", "alpha.webp", "lossy.webp", "lossy_alpha.webp"} {
		if data, err := os.ReadFile("testdata/" + name); err == nil {
			f.Add(data)
		}
	}
	f.Add(encodePNG(f, testNRGBA()))
	f.Add(pngHeaderOnly(20000, 20000))
	lim := protocol.ImageLimits{MaxSide: 256, MaxPixels: 1 << 14}
	n := node(f, "ETN_LoadImageBase64")
	f.Fuzz(func(t *testing.T, data []byte) {
		res, _, err := runWith(t, n, map[string]any{"image": b64(data)}, plugins.Limits{Image: lim})
		if err != nil {
			return
		}
		img := tensorOut(t, res, 0)
		if err := lim.CheckSize(img.Shape[2], img.Shape[1]); err != nil {
			t.Fatalf("accepted an image over the limits: %v", err)
		}
	})
}
