package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"testing"

	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/sendimage"
)

// decodeQOI is a QOI decoder written from the specification, independently
// of the encoder: it returns the header's channels and the pixels as RGBA.
func decodeQOI(data []byte) (w, h, channels int, rgba []byte, err error) {
	if len(data) < 14+8 || string(data[:4]) != "qoif" {
		return 0, 0, 0, nil, errors.New("qoi: not a QOI file")
	}
	w = int(binary.BigEndian.Uint32(data[4:]))
	h = int(binary.BigEndian.Uint32(data[8:]))
	channels = int(data[12])
	if w == 0 || h == 0 || (channels != 3 && channels != 4) || data[13] > 1 {
		return 0, 0, 0, nil, fmt.Errorf("qoi: bad header %dx%d channels %d colorspace %d", w, h, channels, data[13])
	}
	if !bytes.Equal(data[len(data)-8:], []byte{0, 0, 0, 0, 0, 0, 0, 1}) {
		return 0, 0, 0, nil, errors.New("qoi: no end marker")
	}
	chunks := data[14 : len(data)-8]
	var index [64][4]byte
	px := [4]byte{0, 0, 0, 255}
	rgba = make([]byte, 0, w*h*4)
	p, run := 0, 0
	next := func() (byte, error) {
		if p >= len(chunks) {
			return 0, fmt.Errorf("qoi: chunks end after %d of %d pixels", len(rgba)/4, w*h)
		}
		p++
		return chunks[p-1], nil
	}
	for len(rgba) < w*h*4 {
		if run > 0 {
			run--
			rgba = append(rgba, px[:]...)
			continue
		}
		b1, err := next()
		if err != nil {
			return 0, 0, 0, nil, err
		}
		switch {
		case b1 == 0xfe:
			for i := range 3 {
				if px[i], err = next(); err != nil {
					return 0, 0, 0, nil, err
				}
			}
		case b1 == 0xff:
			for i := range 4 {
				if px[i], err = next(); err != nil {
					return 0, 0, 0, nil, err
				}
			}
		case b1>>6 == 0: // index
			px = index[b1]
		case b1>>6 == 1: // diff, bias 2
			px[0] += (b1>>4)&3 - 2
			px[1] += (b1>>2)&3 - 2
			px[2] += b1&3 - 2
		case b1>>6 == 2: // luma, bias 32 and 8
			b2, err := next()
			if err != nil {
				return 0, 0, 0, nil, err
			}
			vg := b1&0x3f - 32
			px[0] += vg + (b2>>4)&0x0f - 8
			px[1] += vg
			px[2] += vg + b2&0x0f - 8
		default: // run, bias 1
			run = int(b1 & 0x3f)
		}
		index[(int(px[0])*3+int(px[1])*5+int(px[2])*7+int(px[3])*11)%64] = px
		rgba = append(rgba, px[:]...)
	}
	if p != len(chunks) {
		return 0, 0, 0, nil, fmt.Errorf("qoi: %d bytes of chunks left after the last pixel", len(chunks)-p)
	}
	return w, h, channels, rgba, nil
}

func qoiHeader(w, h uint32, channels byte) []byte {
	b := append([]byte("qoif"), 0, 0, 0, 0, 0, 0, 0, 0, channels, 0)
	binary.BigEndian.PutUint32(b[4:], w)
	binary.BigEndian.PutUint32(b[8:], h)
	return b
}

func qoiFile(w, h uint32, channels byte, chunks ...byte) []byte {
	b := append(qoiHeader(w, h, channels), chunks...)
	return append(b, 0, 0, 0, 0, 0, 0, 0, 1)
}

func encodeQOI(t *testing.T, m image.Image) []byte {
	t.Helper()
	enc, err := sendimage.NewEncoder("qoi", sendimage.EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := enc.Encode(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestQOIExactBytes checks each kind of chunk against bytes worked out by
// hand from the specification.
func TestQOIExactBytes(t *testing.T) {
	a, b := []byte{10, 20, 30}, []byte{200, 100, 50}
	tests := []struct {
		name string
		img  *sendimage.Pixels
		want []byte
	}{{
		// 255-0 wraps to -1 and 0-255 to +1: two DIFF chunks.
		name: "diff with wraparound",
		img:  &sendimage.Pixels{W: 2, H: 1, C: 3, Pix: []byte{255, 0, 0, 0, 0, 255}},
		want: qoiFile(2, 1, 3, 0x5a, 0x79),
	}, {
		// RGB, a run of two, RGB, then INDEX back to the first colour.
		name: "rgb run index",
		img:  &sendimage.Pixels{W: 5, H: 1, C: 3, Pix: bytes.Join([][]byte{a, a, a, b, a}, nil)},
		want: qoiFile(5, 1, 3, 0xfe, 10, 20, 30, 0xc1, 0xfe, 200, 100, 50, 0x09),
	}, {
		// A new alpha needs RGBA; then green +25, red and blue 5 off it: LUMA.
		name: "rgba luma",
		img:  &sendimage.Pixels{W: 2, H: 1, C: 4, Pix: []byte{0, 0, 0, 128, 20, 25, 30, 128}},
		want: qoiFile(2, 1, 4, 0xff, 0, 0, 0, 128, 0xb9, 0x3d),
	}, {
		// Gray becomes RGB; the first pixels equal the initial opaque black.
		name: "gray",
		img:  &sendimage.Pixels{W: 3, H: 1, C: 1, Pix: []byte{0, 0, 255}},
		want: qoiFile(3, 1, 3, 0xc1, 0x55),
	}, {
		// A run stops at 62 pixels; the last pixel ends the one after it.
		name: "run limit",
		img:  sendimage.NewPixels(63, 1, 3),
		want: qoiFile(63, 1, 3, 0xfd, 0xc0),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := encodeQOI(t, tt.img)
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("encoded\n% x\nwant\n% x", got, tt.want)
			}
		})
	}
}

// TestQOIRoundTrip encodes images of every kind the encoder accepts, decodes
// them and compares every pixel.
func TestQOIRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	noise := func(c int) *sendimage.Pixels {
		p := sendimage.NewPixels(67, 41, c)
		for i := range p.Pix {
			p.Pix[i] = byte(r.IntN(256))
		}
		return p
	}
	// Smooth gradients and flat areas exercise DIFF, LUMA, RUN and INDEX;
	// noise exercises RGB and RGBA.
	smooth := func(c int) *sendimage.Pixels {
		p := sendimage.NewPixels(300, 70, c)
		for y := range p.H {
			for x := range p.W {
				px := p.Pix[(y*p.W+x)*c:][:c]
				for k := range px {
					px[k] = byte(x/3 + y*k)
				}
				if x > 200 {
					clear(px)
				}
				if c == 4 {
					px[3] = byte(255 - y/8)
				}
			}
		}
		return p
	}
	nrgba := image.NewNRGBA(image.Rect(0, 0, 9, 7))
	for i := range nrgba.Pix {
		nrgba.Pix[i] = byte(i * 7)
	}
	gray := image.NewGray(image.Rect(3, 3, 20, 11)) // bounds not at the origin
	for i := range gray.Pix {
		gray.Pix[i] = byte(i)
	}
	tests := []struct {
		name         string
		img          image.Image
		wantChannels int
	}{
		{"noise rgb", noise(3), 3},
		{"noise rgba", noise(4), 4},
		{"noise gray", noise(1), 3},
		{"smooth rgb", smooth(3), 3},
		{"smooth rgba", smooth(4), 4},
		{"image.NRGBA", nrgba, 4},
		{"image.Gray", gray, 3},
		{"one pixel", &sendimage.Pixels{W: 1, H: 1, C: 3, Pix: []byte{1, 2, 3}}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := encodeQOI(t, tt.img)
			w, h, ch, got, err := decodeQOI(data)
			if err != nil {
				t.Fatal(err)
			}
			b := tt.img.Bounds()
			if w != b.Dx() || h != b.Dy() || ch != tt.wantChannels {
				t.Fatalf("header %dx%d channels %d, want %dx%d channels %d", w, h, ch, b.Dx(), b.Dy(), tt.wantChannels)
			}
			for y := range h {
				for x := range w {
					c := color.NRGBAModel.Convert(tt.img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
					i := (y*w + x) * 4
					if g := got[i : i+4]; g[0] != c.R || g[1] != c.G || g[2] != c.B || g[3] != c.A {
						t.Fatalf("pixel (%d,%d) = %v, want %v", x, y, g, c)
					}
				}
			}
		})
	}
}

// failingWriter accepts n bytes, then fails.
type failingWriter struct{ n int }

var errWrite = errors.New("disk full")

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, errWrite
	}
	f.n -= len(p)
	return len(p), nil
}

// TestQOIRefuses checks that a refused image is refused before the first
// byte, with a typed error, and that a write error is returned.
func TestQOIRefuses(t *testing.T) {
	enc, err := sendimage.NewEncoder("qoi", sendimage.EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		img  image.Image
		want error
	}{
		{"too many pixels", &sendimage.Pixels{W: 20001, H: 20000, C: 3}, protocol.ErrLimit},
		{"two channels", &sendimage.Pixels{W: 2, H: 2, C: 2, Pix: make([]byte, 8)}, sendimage.ErrPixels},
		{"short pix", &sendimage.Pixels{W: 2, H: 2, C: 3, Pix: make([]byte, 11)}, sendimage.ErrPixels},
		{"empty", &sendimage.Pixels{C: 3}, sendimage.ErrPixels},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := enc.Encode(&buf, tt.img)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if buf.Len() != 0 {
				t.Fatalf("wrote %d bytes before refusing", buf.Len())
			}
		})
	}
	var le *protocol.LimitError
	if err := enc.Encode(&bytes.Buffer{}, tests[0].img); !errors.As(err, &le) || le.Value != 400020000 || le.Limit != qoiMaxPixels {
		t.Fatalf("limit error %#v, want value 400020000 and limit %d", le, qoiMaxPixels)
	}

	t.Run("write error", func(t *testing.T) {
		big := sendimage.NewPixels(512, 512, 3)
		for i := range big.Pix {
			big.Pix[i] = byte(i * 31 % 251)
		}
		for _, n := range []int{0, 100, 40 << 10} {
			if err := enc.Encode(&failingWriter{n: n}, big); !errors.Is(err, errWrite) {
				t.Fatalf("after %d bytes: err = %v, want %v", n, err, errWrite)
			}
		}
	})
}

// TestRegistry checks that the plugin's registry holds the default encoders
// and qoi.
func TestRegistry(t *testing.T) {
	want := []string{"bmp", "jpeg", "png", "qoi", "raw", "tiff", "webp", "webp-lossless"}
	if got := sendimage.Names(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("encoders %v, want %v", got, want)
	}
	enc, err := sendimage.NewEncoder("qoi", sendimage.EncoderOptions{Quality: 50})
	if err != nil {
		t.Fatal(err)
	}
	if enc.Name() != "qoi" || enc.MIME() != "image/qoi" || enc.Extension() != ".qoi" {
		t.Fatalf("encoder %s %s %s", enc.Name(), enc.MIME(), enc.Extension())
	}
}

func BenchmarkQOIEncode(b *testing.B) {
	p := sendimage.NewPixels(1024, 1024, 3)
	for y := range p.H {
		for x := range p.W {
			i := (y*p.W + x) * 3
			p.Pix[i], p.Pix[i+1], p.Pix[i+2] = byte(x), byte(y), byte(x^y)
		}
	}
	enc := qoiEncoder{}
	var buf bytes.Buffer
	b.SetBytes(int64(len(p.Pix)))
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := enc.Encode(&buf, p); err != nil {
			b.Fatal(err)
		}
	}
}
