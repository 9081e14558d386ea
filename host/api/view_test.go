package api_test

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	xwebp "golang.org/x/image/webp"

	"github.com/nodecast/nodecast/host/api"
	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/protocol"
)

// get fetches path and returns the status, headers and body.
func (e *env) get(t *testing.T, path string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := e.srv.Client().Get(e.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// gradientRGBA is a smooth RGBA image whose alpha varies across it, the
// kind of image previews re-encode well.
func gradientRGBA(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.SetNRGBA(x, y, color.NRGBA{uint8(x * 255 / w), uint8(y * 255 / h), 128, uint8(55 + x*200/w)})
		}
	}
	return m
}

// meanDiff is the mean absolute difference of the RGB channels of two
// same-sized images, and of their alpha.
func meanDiff(a, b image.Image) (rgb, alpha float64) {
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			p := color.NRGBAModel.Convert(a.At(x, y)).(color.NRGBA)
			q := color.NRGBAModel.Convert(b.At(x, y)).(color.NRGBA)
			for _, d := range []int{int(p.R) - int(q.R), int(p.G) - int(q.G), int(p.B) - int(q.B)} {
				rgb += float64(max(d, -d))
			}
			alpha += float64(max(int(p.A)-int(q.A), int(q.A)-int(p.A)))
		}
	}
	n := float64(r.Dx() * r.Dy())
	return rgb / (3 * n), alpha / n
}

func TestViewPreviewAndChannels(t *testing.T) {
	e := newEnv(t, api.Options{Limits: protocol.ImageLimits{MaxPixels: 64 * 64}}, executor.Options{})
	src := gradientRGBA(64, 48)
	var pngFile bytes.Buffer
	if err := png.Encode(&pngFile, src); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(e.output, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.output, "sub", "ComfyUI_00001_.png"), pngFile.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	big := image.NewNRGBA(image.Rect(0, 0, 65, 65))
	var bigFile bytes.Buffer
	_ = png.Encode(&bigFile, big)
	if err := os.WriteFile(filepath.Join(e.output, "big.png"), bigFile.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	q := "/view?filename=ComfyUI_00001_.png&subfolder=sub&type=output"

	// The file as it is, with ComfyUI's Content-Disposition.
	code, h, b := e.get(t, q)
	if code != 200 || !bytes.Equal(b, pngFile.Bytes()) || h.Get("Content-Type") != "image/png" || h.Get("Content-Disposition") != `filename="ComfyUI_00001_.png"` {
		t.Fatalf("plain view: %d %v %d bytes", code, h, len(b))
	}

	// preview=jpeg;90: JPEG, no alpha, renamed as ComfyUI renames it.
	code, h, b = e.get(t, q+"&preview=jpeg;90")
	if code != 200 || h.Get("Content-Type") != "image/jpeg" || h.Get("Content-Disposition") != `filename="ComfyUI_00001_.jpeg"` {
		t.Fatalf("jpeg preview: %d %v", code, h)
	}
	m, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := meanDiff(src, m); d > 3 {
		t.Errorf("jpeg preview: mean RGB difference %.2f", d)
	}
	// preview=webp (quality 90 by default) keeps alpha.
	code, h, b = e.get(t, q+"&preview=webp")
	if code != 200 || h.Get("Content-Type") != "image/webp" || h.Get("Content-Disposition") != `filename="ComfyUI_00001_.webp"` {
		t.Fatalf("webp preview: %d %v", code, h)
	}
	if m, err = xwebp.Decode(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if m.Bounds() != src.Bounds() {
		t.Fatalf("webp preview bounds %v", m.Bounds())
	}
	if _, da := meanDiff(src, m); da > 2 {
		t.Errorf("webp preview: mean alpha difference %.2f", da)
	}
	// jpeg with a channel that keeps alpha becomes webp, as in ComfyUI.
	if code, h, _ = e.get(t, q+"&preview=jpeg;50&channel=rgba"); code != 200 || h.Get("Content-Type") != "image/webp" {
		t.Errorf("jpeg preview of rgba: %d %v", code, h)
	}

	// channel=rgb: PNG without alpha, exact colours.
	code, h, b = e.get(t, q+"&channel=rgb")
	if code != 200 || h.Get("Content-Type") != "image/png" || h.Get("Content-Disposition") != `filename="ComfyUI_00001_.png"` {
		t.Fatalf("rgb: %d %v", code, h)
	}
	m, err = png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for _, xy := range [][2]int{{0, 0}, {63, 47}, {20, 30}} {
		s, g := src.NRGBAAt(xy[0], xy[1]), color.NRGBAModel.Convert(m.At(xy[0], xy[1])).(color.NRGBA)
		if g != (color.NRGBA{s.R, s.G, s.B, 255}) {
			t.Errorf("rgb pixel %v = %v, want the colour of %v, opaque", xy, g, s)
		}
	}
	// channel=a: black, with the image's alpha.
	code, _, b = e.get(t, q+"&channel=a")
	if m, err = png.Decode(bytes.NewReader(b)); code != 200 || err != nil {
		t.Fatalf("a: %d %v", code, err)
	}
	for _, xy := range [][2]int{{0, 0}, {63, 47}, {20, 30}} {
		s, g := src.NRGBAAt(xy[0], xy[1]), color.NRGBAModel.Convert(m.At(xy[0], xy[1])).(color.NRGBA)
		if g.A != s.A || (g.A != 0 && (g.R != 0 || g.G != 0 || g.B != 0)) {
			t.Errorf("alpha pixel %v = %v, want black with alpha %d", xy, g, s.A)
		}
	}

	// Bad values: 400 naming the value; nothing is decoded for them.
	for _, tc := range []struct{ query, named string }{
		{"&preview=gif;90", `"gif;90"`},
		{"&preview=webp;0", `"0"`},
		{"&preview=webp;abc", `"abc"`},
		{"&preview=jpeg;90;1", `"jpeg;90;1"`},
		{"&channel=rgbx", `"rgbx"`},
	} {
		code, _, b := e.get(t, q+tc.query)
		if code != 400 || !strings.Contains(string(b), strings.ReplaceAll(tc.named, `"`, `\"`)) { // inside JSON
			t.Errorf("%s: %d %s, want 400 naming %s", tc.query, code, b, tc.named)
		}
	}
	// An image over the limit is not decoded for a preview.
	if code, _, b = e.get(t, "/view?filename=big.png&preview=webp"); code != 413 || !strings.Contains(string(b), "4225") {
		t.Errorf("big preview: %d %s", code, b)
	}
	// Escapes are refused whatever the preview.
	for _, q := range []string{"/view?filename=../x.png&preview=webp", "/view?filename=x.png&subfolder=../..&channel=rgb"} {
		if code, _, _ := e.get(t, q); code != 400 {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
	// A file that is not an image has no preview.
	if err := os.WriteFile(filepath.Join(e.output, "notes.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := e.get(t, "/view?filename=notes.txt&preview=webp"); code != 400 {
		t.Errorf("preview of a text file: %d", code)
	}
}
