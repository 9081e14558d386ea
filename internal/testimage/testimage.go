// Package testimage makes the photo-like test images that the host's and the
// built-in pack's tests and benchmarks decode, one generator for both, so a
// figure measured in one package is measured on the same pixels in the other.
// It is test support: no product package imports it (internal/layering
// checks that).
package testimage

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"strconv"
	"testing"
)

// PhotoLike is a w×h image of smooth gradients with some noise, alpha
// included, which compresses about as a photo does.
func PhotoLike(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	seed := uint32(1)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			seed = seed*1664525 + 1013904223
			i := m.PixOffset(x, y)
			m.Pix[i] = uint8(x*255/w) ^ uint8(seed>>29)
			m.Pix[i+1] = uint8(y*255/h) ^ uint8(seed>>27&3)
			m.Pix[i+2] = uint8((x+y)*127/(w+h)) + uint8(seed>>30)
			m.Pix[i+3] = 0xff - uint8(seed>>31)
		}
	}
	return m
}

// PhotoPNG is the file NODECAST_PHOTO_<side> names (a real photo), or else
// the PNG of PhotoLike(side, side) made opaque, encoded at level, as a user
// would upload for LoadImage.
func PhotoPNG(tb testing.TB, side int, level png.CompressionLevel) []byte {
	tb.Helper()
	if p := os.Getenv("NODECAST_PHOTO_" + strconv.Itoa(side)); p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		return data
	}
	src := PhotoLike(side, side)
	m := image.NewRGBA(src.Rect)
	copy(m.Pix, src.Pix)
	for i := 3; i < len(m.Pix); i += 4 {
		m.Pix[i] = 0xff
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: level}).Encode(&buf, m); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}
