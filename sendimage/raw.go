package sendimage

import (
	"image"
	"io"
	"strconv"
)

// rawEncoder writes netpbm: a short text header and the pixels as they
// are, so it costs a copy. Gray images are PGM (P5) and RGB images PPM
// (P6), which Pillow, ImageMagick and OpenCV all open; RGBA images are PAM
// (P7, TUPLTYPE RGB_ALPHA), the netpbm format with alpha, which ImageMagick
// and OpenCV open but Pillow (up to 11 at least) does not. It is for
// clients that want pixels, not files.
type rawEncoder struct{}

func newRawEncoder(EncoderOptions) (Encoder, error) { return rawEncoder{}, nil }

func (rawEncoder) Name() string      { return "raw" }
func (rawEncoder) MIME() string      { return "image/x-portable-anymap" }
func (rawEncoder) Extension() string { return ".pnm" }

// Encode writes m as 8-bit PGM, PPM or PAM (straight alpha, not
// premultiplied, as ComfyUI's tensors are), by its channel count.
func (rawEncoder) Encode(w io.Writer, m image.Image) error {
	src, err := rowsOf("raw", m, 1<<31-1)
	if err != nil {
		return err
	}
	head := make([]byte, 0, 96)
	switch src.c {
	case 1, 3:
		head = append(head, map[int]string{1: "P5\n", 3: "P6\n"}[src.c]...)
		head = strconv.AppendInt(head, int64(src.w), 10)
		head = append(head, ' ')
		head = strconv.AppendInt(head, int64(src.h), 10)
		head = append(head, "\n255\n"...)
	default:
		head = append(head, "P7\nWIDTH "...)
		head = strconv.AppendInt(head, int64(src.w), 10)
		head = append(head, "\nHEIGHT "...)
		head = strconv.AppendInt(head, int64(src.h), 10)
		head = append(head, "\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n"...)
	}
	if _, err := w.Write(head); err != nil {
		return err
	}
	rowLen := src.w * src.c
	if src.stride == rowLen { // contiguous: one write
		_, err := w.Write(src.pix[:rowLen*src.h])
		return err
	}
	for y := range src.h {
		if _, err := w.Write(src.row(y)); err != nil {
			return err
		}
	}
	return nil
}
