package sendimage

import (
	"image"
	"io"

	"github.com/HugoSmits86/nativewebp"
	"github.com/gen2brain/webp"
)

// WebP comes from two libraries, each where it was measured best on a
// 2048² photo-like image and a flat one (README, "Outputs"):
//   - lossy: gen2brain/webp, libwebp itself (the system's libwebp.so when the
//     binary can load it, else libwebp compiled to WebAssembly and run by
//     wazero; no cgo either way). It is the only lossy WebP encoder the Go
//     module proxy serves.
//   - lossless: HugoSmits86/nativewebp, pure Go, 3.3× faster than libwebp's
//     fastest lossless method (wasm) on the photo for 4% more bytes, and as
//     small on the flat image.

// DefaultWebPQuality is the lossy WebP quality when none is given: 90, what
// ComfyUI's /view uses for preview=webp.
const DefaultWebPQuality = 90

// webpMaxSide is the largest side a WebP image can have (14-bit fields).
const webpMaxSide = 16383

// webpEncoder writes lossy WebP at a quality.
type webpEncoder struct{ quality int }

func newWebPEncoder(opts EncoderOptions) (Encoder, error) {
	q := opts.Quality
	switch {
	case q == 0:
		q = DefaultWebPQuality
	case q < 1 || q > 100:
		return nil, &OptionError{Owner: "webp", Option: "Quality", Value: q, Reason: "want 1..100, or 0 for 90"}
	}
	return &webpEncoder{quality: q}, nil
}

func (*webpEncoder) Name() string      { return "webp" }
func (*webpEncoder) MIME() string      { return "image/webp" }
func (*webpEncoder) Extension() string { return ".webp" }

// Encode writes m as lossy WebP; an alpha channel is kept.
func (e *webpEncoder) Encode(w io.Writer, m image.Image) error {
	if err := checkImage("webp", m, webpMaxSide); err != nil {
		return err
	}
	if p, ok := m.(*Pixels); ok {
		m = webpImage(p)
	}
	// Quality 100 would make libwebp switch to lossless: 99 is its best lossy.
	return webp.Encode(w, m, webp.Options{Quality: min(e.quality, 99), Method: webpLossyMethod})
}

// webpLossyMethod is libwebp's speed/size trade-off (0 fast .. 6 small).
// Measured at quality 90: method 2 took 1.5× as long as 0 on the photo for
// 4% fewer bytes (0.38 vs 0.40 MB); previews want the speed.
const webpLossyMethod = 0

// webpLosslessEncoder writes lossless WebP.
type webpLosslessEncoder struct{}

func newWebPLosslessEncoder(EncoderOptions) (Encoder, error) { return webpLosslessEncoder{}, nil }

func (webpLosslessEncoder) Name() string      { return "webp-lossless" }
func (webpLosslessEncoder) MIME() string      { return "image/webp" }
func (webpLosslessEncoder) Extension() string { return ".webp" }

// Encode writes m as lossless WebP: every pixel, alpha included, decodes
// to exactly what it was.
func (webpLosslessEncoder) Encode(w io.Writer, m image.Image) error {
	if err := checkImage("webp-lossless", m, webpMaxSide); err != nil {
		return err
	}
	if p, ok := m.(*Pixels); ok {
		m = webpImage(p)
	}
	return nativewebp.Encode(w, m, nil)
}

// webpImage gives both libraries the *image.NRGBA they read fastest (gray
// is widened: WebP has no gray mode).
func webpImage(p *Pixels) *image.NRGBA {
	if p.C == 4 {
		return stdImage(p, false).(*image.NRGBA)
	}
	r := image.Rect(0, 0, p.W, p.H)
	pix := make([]byte, 4*p.W*p.H)
	if p.C == 1 {
		for i, j := 0, 0; i < len(pix); i, j = i+4, j+1 {
			v := p.Pix[j]
			pix[i], pix[i+1], pix[i+2], pix[i+3] = v, v, v, 0xff
		}
		return &image.NRGBA{Pix: pix, Stride: 4 * p.W, Rect: r}
	}
	return stdImage(p, false).(*image.NRGBA)
}
