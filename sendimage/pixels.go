package sendimage

import (
	"image"
	"image/color"
	"strconv"
)

// Pixels is one 8-bit image with C interleaved channels per pixel: 1 (gray),
// 3 (RGB) or 4 (RGBA, not premultiplied, as ComfyUI's tensors are). Rows are
// W*C bytes apart with no padding, so Pix is exactly W*H*C bytes.
//
// Pixels implements image.Image, so any standard library encoder accepts it,
// while this package's encoders read its rows directly.
type Pixels struct {
	W, H, C int
	Pix     []byte
}

// NewPixels returns a zeroed w×h image with c channels.
func NewPixels(w, h, c int) *Pixels {
	return &Pixels{W: w, H: h, C: c, Pix: make([]byte, w*h*c)}
}

// Stride is the distance in bytes between two rows.
func (p *Pixels) Stride() int { return p.W * p.C }

// Row returns the bytes of row y.
func (p *Pixels) Row(y int) []byte {
	s := p.W * p.C
	return p.Pix[y*s : (y+1)*s : (y+1)*s]
}

// Validate checks that the channel count is 1, 3 or 4, that the sides are
// positive, and that Pix has exactly W*H*C bytes.
func (p *Pixels) Validate() error {
	switch {
	case p == nil:
		return &PixelsError{Reason: "nil image"}
	case p.C != 1 && p.C != 3 && p.C != 4:
		return &PixelsError{Reason: "channels must be 1, 3 or 4, got " + strconv.Itoa(p.C)}
	case p.W <= 0 || p.H <= 0:
		return &PixelsError{Reason: "empty image " + strconv.Itoa(p.W) + "x" + strconv.Itoa(p.H)}
	case int64(len(p.Pix)) != int64(p.W)*int64(p.H)*int64(p.C):
		return &PixelsError{Reason: "pix is " + strconv.Itoa(len(p.Pix)) + " bytes, " +
			strconv.Itoa(p.W) + "x" + strconv.Itoa(p.H) + "x" + strconv.Itoa(p.C) + " needs " +
			strconv.FormatInt(int64(p.W)*int64(p.H)*int64(p.C), 10)}
	}
	return nil
}

// ColorModel is color.GrayModel for one channel and color.NRGBAModel otherwise.
func (p *Pixels) ColorModel() color.Model {
	if p.C == 1 {
		return color.GrayModel
	}
	return color.NRGBAModel
}

// Bounds is (0,0)-(W,H).
func (p *Pixels) Bounds() image.Rectangle { return image.Rect(0, 0, p.W, p.H) }

// At returns color.Gray for one channel, an opaque color.NRGBA for three and
// color.NRGBA for four; outside the bounds it returns the zero color.
func (p *Pixels) At(x, y int) color.Color {
	if x < 0 || y < 0 || x >= p.W || y >= p.H {
		if p.C == 1 {
			return color.Gray{}
		}
		return color.NRGBA{}
	}
	i := (y*p.W + x) * p.C
	switch p.C {
	case 1:
		return color.Gray{Y: p.Pix[i]}
	case 3:
		s := p.Pix[i : i+3 : i+3]
		return color.NRGBA{R: s[0], G: s[1], B: s[2], A: 0xff}
	default:
		s := p.Pix[i : i+4 : i+4]
		return color.NRGBA{R: s[0], G: s[1], B: s[2], A: s[3]}
	}
}

// Opaque reports whether every pixel is fully opaque; image/png and
// image/jpeg call it to pick their output format.
func (p *Pixels) Opaque() bool {
	if p.C != 4 {
		return true
	}
	for i := 3; i < len(p.Pix); i += 4 {
		if p.Pix[i] != 0xff {
			return false
		}
	}
	return true
}
