package main

import (
	"encoding/binary"
	"image"
	"io"

	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/sendimage"
)

// QOI, the Quite OK Image format: https://qoiformat.org/qoi-specification.pdf.
const (
	qoiMIME      = "image/qoi"
	qoiMagic     = "qoif"
	qoiHeaderLen = 14
	// qoiMaxPixels is the reference implementation's limit (QOI_PIXELS_MAX):
	// decoders following it refuse larger images, so the encoder does too.
	qoiMaxPixels = 400_000_000
	// qoiColorspaceSRGB is the header's colorspace byte for sRGB colour with
	// linear alpha, which is what ComfyUI's IMAGE tensors hold.
	qoiColorspaceSRGB = 0

	qoiOpIndex = 0x00 // 00xxxxxx
	qoiOpDiff  = 0x40 // 01xxxxxx
	qoiOpLuma  = 0x80 // 10xxxxxx
	qoiOpRun   = 0xc0 // 11xxxxxx
	qoiOpRGB   = 0xfe
	qoiOpRGBA  = 0xff

	qoiMaxRun = 62 // run lengths 63 and 64 would collide with qoiOpRGB and qoiOpRGBA
)

// qoiEnd is the stream's end marker: seven 0x00 bytes and one 0x01.
var qoiEnd = [8]byte{7: 1}

// init registers the encoder into sendimage.Default, as a database/sql driver
// registers itself: this plugin's process has its own Default, which then
// holds the built-in encoders and qoi.
func init() {
	sendimage.Register("qoi", newQOIEncoder)
}

// newQOIEncoder is the registry's factory. QOI has no options: quality and
// compression level do not apply, so they are ignored like any encoder
// ignores the options that are not its own.
func newQOIEncoder(sendimage.EncoderOptions) (sendimage.Encoder, error) {
	return qoiEncoder{}, nil
}

// qoiEncoder writes QOI images: RGB for gray and opaque images, RGBA for
// images with alpha.
type qoiEncoder struct{}

func (qoiEncoder) Name() string      { return "qoi" }
func (qoiEncoder) MIME() string      { return qoiMIME }
func (qoiEncoder) Extension() string { return ".qoi" }

// Encode writes m as QOI. It checks m before it writes the first byte: a
// refused image leaves w untouched.
func (qoiEncoder) Encode(w io.Writer, m image.Image) error {
	// The size first, before FromImage copies an image too large to send.
	b := m.Bounds()
	if px := int64(b.Dx()) * int64(b.Dy()); px > qoiMaxPixels {
		return &protocol.LimitError{What: "qoi pixels", Value: px, Limit: qoiMaxPixels}
	}
	p := sendimage.FromImage(m)
	if err := p.Validate(); err != nil {
		return err
	}
	channels := byte(3)
	if p.C == 4 {
		channels = 4
	}
	e := qoiWriter{w: w, buf: make([]byte, 0, qoiBufSize)}
	var hdr [qoiHeaderLen]byte
	copy(hdr[:], qoiMagic)
	binary.BigEndian.PutUint32(hdr[4:], uint32(p.W))
	binary.BigEndian.PutUint32(hdr[8:], uint32(p.H))
	hdr[12], hdr[13] = channels, qoiColorspaceSRGB
	e.buf = append(e.buf, hdr[:]...)
	e.pixels(p)
	e.buf = append(e.buf, qoiEnd[:]...)
	return e.flush()
}

// qoiBufSize is how many encoded bytes are gathered before a Write: a full
// pixel's chunk is at most 5 bytes, so the buffer never grows past it.
const qoiBufSize = 32 << 10

// qoiWriter is the encoder's state while it writes one image.
type qoiWriter struct {
	w   io.Writer
	buf []byte
	err error
}

func (e *qoiWriter) flush() error {
	if e.err == nil && len(e.buf) > 0 {
		_, e.err = e.w.Write(e.buf)
	}
	e.buf = e.buf[:0]
	return e.err
}

// pixels encodes every pixel of p exactly as the specification's reference
// encoder does, so its output is byte-for-byte the reference's.
func (e *qoiWriter) pixels(p *sendimage.Pixels) {
	var index [64][4]byte
	prev := [4]byte{0, 0, 0, 255}
	run := 0
	n := p.W * p.H
	for i := 0; i < n; i++ {
		var px [4]byte
		switch p.C {
		case 1:
			v := p.Pix[i]
			px = [4]byte{v, v, v, 255}
		case 3:
			s := p.Pix[3*i : 3*i+3 : 3*i+3]
			px = [4]byte{s[0], s[1], s[2], 255}
		default:
			s := p.Pix[4*i : 4*i+4 : 4*i+4]
			px = [4]byte{s[0], s[1], s[2], s[3]}
		}
		if px == prev {
			run++
			if run == qoiMaxRun || i == n-1 {
				e.buf = append(e.buf, qoiOpRun|byte(run-1))
				run = 0
			}
		} else {
			if run > 0 {
				e.buf = append(e.buf, qoiOpRun|byte(run-1))
				run = 0
			}
			e.chunk(&index, px, prev)
			prev = px
		}
		if len(e.buf) > qoiBufSize-16 {
			if e.flush() != nil {
				return
			}
		}
	}
}

// chunk appends the smallest chunk that gives px after prev.
func (e *qoiWriter) chunk(index *[64][4]byte, px, prev [4]byte) {
	pos := qoiHash(px)
	if index[pos] == px {
		e.buf = append(e.buf, qoiOpIndex|pos)
		return
	}
	index[pos] = px
	if px[3] != prev[3] {
		e.buf = append(e.buf, qoiOpRGBA, px[0], px[1], px[2], px[3])
		return
	}
	// Differences wrap around, as the specification says: 0 - 1 is -1, and
	// so is 0 - 255 when stored in a byte.
	vr := int(int8(px[0] - prev[0]))
	vg := int(int8(px[1] - prev[1]))
	vb := int(int8(px[2] - prev[2]))
	vgr, vgb := vr-vg, vb-vg
	switch {
	case vr >= -2 && vr <= 1 && vg >= -2 && vg <= 1 && vb >= -2 && vb <= 1:
		e.buf = append(e.buf, qoiOpDiff|byte(vr+2)<<4|byte(vg+2)<<2|byte(vb+2))
	case vgr >= -8 && vgr <= 7 && vg >= -32 && vg <= 31 && vgb >= -8 && vgb <= 7:
		e.buf = append(e.buf, qoiOpLuma|byte(vg+32), byte(vgr+8)<<4|byte(vgb+8))
	default:
		e.buf = append(e.buf, qoiOpRGB, px[0], px[1], px[2])
	}
}

// qoiHash is the position of a colour in the index of recently seen colours.
func qoiHash(px [4]byte) byte {
	return byte((int(px[0])*3 + int(px[1])*5 + int(px[2])*7 + int(px[3])*11) % 64)
}
