package sendimage

import (
	"image"
	"image/jpeg"
	"io"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"

	"github.com/nodecast/nodecast/protocol"
)

// checkImage refuses what encoder name cannot write, before any byte is
// written: nil or empty images, malformed Pixels, sides over maxSide.
func checkImage(name string, m image.Image, maxSide int) error {
	if m == nil {
		return &PixelsError{Reason: name + ": nil image"}
	}
	if p, ok := m.(*Pixels); ok {
		if err := p.Validate(); err != nil {
			return err
		}
	}
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	switch {
	case w <= 0 || h <= 0:
		return &PixelsError{Reason: name + ": empty image " + b.String()}
	case w > maxSide:
		return &protocol.LimitError{What: name + " image width", Value: int64(w), Limit: int64(maxSide)}
	case h > maxSide:
		return &protocol.LimitError{What: name + " image height", Value: int64(h), Limit: int64(maxSide)}
	}
	return nil
}

// stdImage returns p as a standard library image the x/image and image/jpeg
// encoders have fast paths for: *image.Gray and *image.NRGBA share p's
// memory; three channels are copied into an opaque *image.NRGBA (or
// *image.RGBA when rgba is set, for image/jpeg).
func stdImage(p *Pixels, rgba bool) image.Image {
	r := image.Rect(0, 0, p.W, p.H)
	switch {
	case p.C == 1:
		return &image.Gray{Pix: p.Pix, Stride: p.W, Rect: r}
	case p.C == 4 && !rgba:
		return &image.NRGBA{Pix: p.Pix, Stride: 4 * p.W, Rect: r}
	}
	// Three channels, or four for JPEG, which has no alpha: drop it, as
	// PIL's convert("RGB") does.
	pix := make([]byte, 4*p.W*p.H)
	for i, j := 0, 0; i < len(pix); i, j = i+4, j+p.C {
		pix[i], pix[i+1], pix[i+2], pix[i+3] = p.Pix[j], p.Pix[j+1], p.Pix[j+2], 0xff
	}
	if rgba {
		return &image.RGBA{Pix: pix, Stride: 4 * p.W, Rect: r}
	}
	return &image.NRGBA{Pix: pix, Stride: 4 * p.W, Rect: r}
}

// jpegEncoder writes baseline JPEG with image/jpeg.
type jpegEncoder struct{ quality int }

// DefaultJPEGQuality is what ETN_SendImageWebSocket uses.
const DefaultJPEGQuality = 95

func newJPEGEncoder(opts EncoderOptions) (Encoder, error) {
	q := opts.Quality
	switch {
	case q == 0:
		q = DefaultJPEGQuality
	case q < 1 || q > 100:
		return nil, &OptionError{Owner: "jpeg", Option: "Quality", Value: q, Reason: "want 1..100, or 0 for 95"}
	}
	return &jpegEncoder{quality: q}, nil
}

func (*jpegEncoder) Name() string      { return "jpeg" }
func (*jpegEncoder) MIME() string      { return "image/jpeg" }
func (*jpegEncoder) Extension() string { return ".jpg" }

// jpegMaxSide is the largest side image/jpeg writes (the SOF field is 16 bits).
const jpegMaxSide = 1<<16 - 1

// Encode writes m as a baseline JPEG; an alpha channel is dropped.
func (e *jpegEncoder) Encode(w io.Writer, m image.Image) error {
	if err := checkImage("jpeg", m, jpegMaxSide); err != nil {
		return err
	}
	if p, ok := m.(*Pixels); ok {
		m = stdImage(p, true)
	}
	return jpeg.Encode(w, m, &jpeg.Options{Quality: e.quality})
}

// bmpEncoder writes uncompressed BMP with golang.org/x/image/bmp.
type bmpEncoder struct{}

func newBMPEncoder(EncoderOptions) (Encoder, error) { return bmpEncoder{}, nil }

func (bmpEncoder) Name() string      { return "bmp" }
func (bmpEncoder) MIME() string      { return "image/bmp" }
func (bmpEncoder) Extension() string { return ".bmp" }

// bmpMaxBytes keeps the file size inside the header's 32-bit field.
const bmpMaxBytes = 1<<32 - 1 - 14 - 40 - 1024

// Encode writes m as a BMP: 8-bit gray, 24-bit RGB or 32-bit RGBA.
func (bmpEncoder) Encode(w io.Writer, m image.Image) error {
	if err := checkImage("bmp", m, 1<<31-1); err != nil {
		return err
	}
	b := m.Bounds()
	if n := int64(b.Dx()+1) * 4 * int64(b.Dy()); n > bmpMaxBytes {
		return &protocol.LimitError{What: "bmp file bytes", Value: n, Limit: bmpMaxBytes}
	}
	if p, ok := m.(*Pixels); ok {
		m = stdImage(p, false)
	}
	return bmp.Encode(w, m)
}

// tiffEncoder writes TIFF with golang.org/x/image/tiff, Deflate-compressed
// unless the level is LevelNone.
type tiffEncoder struct{ compression tiff.CompressionType }

func newTIFFEncoder(opts EncoderOptions) (Encoder, error) {
	if opts.Level < LevelHuffmanOnly || opts.Level > LevelBest {
		return nil, &OptionError{Owner: "tiff", Option: "Level", Value: opts.Level, Reason: "want -2..9"}
	}
	if opts.Level == LevelNone {
		return tiffEncoder{compression: tiff.Uncompressed}, nil
	}
	return tiffEncoder{compression: tiff.Deflate}, nil
}

func (tiffEncoder) Name() string      { return "tiff" }
func (tiffEncoder) MIME() string      { return "image/tiff" }
func (tiffEncoder) Extension() string { return ".tiff" }

// tiffMaxBytes keeps the pixel data inside TIFF's 32-bit offsets.
const tiffMaxBytes = 1<<32 - 1 - 1<<16

// Encode writes m as a TIFF: 8-bit gray, or RGBA with unassociated alpha.
func (e tiffEncoder) Encode(w io.Writer, m image.Image) error {
	if err := checkImage("tiff", m, 1<<31-1); err != nil {
		return err
	}
	b := m.Bounds()
	if n := int64(b.Dx()) * int64(b.Dy()) * 8; n > tiffMaxBytes {
		return &protocol.LimitError{What: "tiff pixel bytes", Value: n, Limit: tiffMaxBytes}
	}
	if p, ok := m.(*Pixels); ok {
		m = stdImage(p, false)
	}
	return tiff.Encode(w, m, &tiff.Options{Compression: e.compression})
}
