package sendimage

import (
	"image"
	"io"
	"strconv"
)

// rawEncoder writes netpbm PAM (P7): a short text header and the pixels as
// they are, so it costs a copy. Pillow (Image.open) and ImageMagick read it;
// it is for clients that want pixels, not files.
type rawEncoder struct{}

func newRawEncoder(EncoderOptions) (Encoder, error) { return rawEncoder{}, nil }

func (rawEncoder) Name() string      { return "raw" }
func (rawEncoder) MIME() string      { return "image/x-portable-arbitrarymap" }
func (rawEncoder) Extension() string { return ".pam" }

// pamTupleTypes name the channel layouts, by channel count.
var pamTupleTypes = map[int]string{1: "GRAYSCALE", 3: "RGB", 4: "RGB_ALPHA"}

// Encode writes m as an 8-bit PAM: GRAYSCALE, RGB or RGB_ALPHA (straight,
// not premultiplied, as ComfyUI's tensors are).
func (rawEncoder) Encode(w io.Writer, m image.Image) error {
	src, err := rowsOf("raw", m, 1<<31-1)
	if err != nil {
		return err
	}
	head := make([]byte, 0, 96)
	head = append(head, "P7\nWIDTH "...)
	head = strconv.AppendInt(head, int64(src.w), 10)
	head = append(head, "\nHEIGHT "...)
	head = strconv.AppendInt(head, int64(src.h), 10)
	head = append(head, "\nDEPTH "...)
	head = strconv.AppendInt(head, int64(src.c), 10)
	head = append(head, "\nMAXVAL 255\nTUPLTYPE "...)
	head = append(head, pamTupleTypes[src.c]...)
	head = append(head, "\nENDHDR\n"...)
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
