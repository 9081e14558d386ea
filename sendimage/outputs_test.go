package sendimage

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"

	xwebp "golang.org/x/image/webp"
)

// decodePNM reads the 8-bit PGM, PPM and PAM files the raw encoder writes.
func decodePNM(r io.Reader) (image.Image, error) {
	br := bufio.NewReader(r)
	magic, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	var w, h, c int
	switch magic {
	case "P5\n", "P6\n":
		c = map[string]int{"P5\n": 1, "P6\n": 3}[magic]
		var maxval int
		if _, err := fmt.Fscanf(br, "%d %d\n%d\n", &w, &h, &maxval); err != nil || maxval != 255 {
			return nil, fmt.Errorf("pnm: header: %v (maxval %d)", err, maxval)
		}
	case "P7\n":
		hdr := map[string]string{}
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return nil, err
			}
			line = strings.TrimSuffix(line, "\n")
			if line == "ENDHDR" {
				break
			}
			k, v, _ := strings.Cut(line, " ")
			hdr[k] = v
		}
		w, _ = strconv.Atoi(hdr["WIDTH"])
		h, _ = strconv.Atoi(hdr["HEIGHT"])
		c, _ = strconv.Atoi(hdr["DEPTH"])
		if hdr["MAXVAL"] != "255" || c != 4 || hdr["TUPLTYPE"] != "RGB_ALPHA" {
			return nil, fmt.Errorf("pam: header %v", hdr)
		}
	default:
		return nil, fmt.Errorf("pnm: magic %q", magic)
	}
	p := NewPixels(w, h, c)
	if _, err := io.ReadFull(br, p.Pix); err != nil {
		return nil, err
	}
	if n, _ := br.Read(make([]byte, 1)); n != 0 {
		return nil, errors.New("pnm: bytes after the pixels")
	}
	return p, nil
}

func TestRawIsPixelsAndHeader(t *testing.T) {
	p := &Pixels{W: 2, H: 1, C: 3, Pix: []byte{1, 2, 3, 4, 5, 6}}
	var buf bytes.Buffer
	if err := mustEncoder(t, "raw", EncoderOptions{}).Encode(&buf, p); err != nil {
		t.Fatal(err)
	}
	if want := "P6\n2 1\n255\n\x01\x02\x03\x04\x05\x06"; buf.String() != want {
		t.Errorf("got %q\nwant %q", buf.String(), want)
	}
	buf.Reset()
	if err := mustEncoder(t, "raw", EncoderOptions{}).Encode(&buf, &Pixels{W: 1, H: 2, C: 4, Pix: []byte{1, 2, 3, 4, 5, 6, 7, 8}}); err != nil {
		t.Fatal(err)
	}
	if want := "P7\nWIDTH 1\nHEIGHT 2\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n\x01\x02\x03\x04\x05\x06\x07\x08"; buf.String() != want {
		t.Errorf("got %q\nwant %q", buf.String(), want)
	}
	// A sub-image with a stride is written row by row.
	src := image.NewNRGBA(image.Rect(0, 0, 5, 4))
	for i := range src.Pix {
		src.Pix[i] = byte(i)
	}
	sub := src.SubImage(image.Rect(1, 1, 4, 3)).(*image.NRGBA)
	buf.Reset()
	if err := mustEncoder(t, "raw", EncoderOptions{}).Encode(&buf, sub); err != nil {
		t.Fatal(err)
	}
	m, err := decodePNM(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffPixels(FromImage(sub), m); d != "" {
		t.Error(d)
	}
}

// decodeLossyWebP decodes a lossy WebP as libwebp (and so Pillow) does.
// x/image/webp hands out the VP8 planes as an image.YCbCr, whose At
// converts with JFIF's full-range formula; VP8's YUV is BT.601 limited
// range (Y 16..235), so At is off by up to 7% at the ends of the range.
func decodeLossyWebP(r io.Reader) (image.Image, error) {
	m, err := xwebp.Decode(r)
	if err != nil {
		return nil, err
	}
	var yc *image.YCbCr
	var alpha []byte
	switch v := m.(type) {
	case *image.YCbCr:
		yc = v
	case *image.NYCbCrA:
		yc, alpha = &v.YCbCr, v.A
	default:
		return m, nil // lossless: already RGB
	}
	b := yc.Rect
	out := image.NewNRGBA(b)
	clamp := func(v float64) uint8 { return uint8(max(0, min(255, v+0.5))) }
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			Y := 1.164 * (float64(yc.Y[yc.YOffset(x, y)]) - 16)
			cb := float64(yc.Cb[yc.COffset(x, y)]) - 128
			cr := float64(yc.Cr[yc.COffset(x, y)]) - 128
			i := out.PixOffset(x, y)
			out.Pix[i] = clamp(Y + 1.596*cr)
			out.Pix[i+1] = clamp(Y - 0.813*cr - 0.391*cb)
			out.Pix[i+2] = clamp(Y + 2.018*cb)
			out.Pix[i+3] = 255
			if alpha != nil {
				out.Pix[i+3] = alpha[(y-b.Min.Y)*b.Dx()+(x-b.Min.X)]
			}
		}
	}
	return out, nil
}

// flatImage is the other end from photoLike: large areas of one colour.
func flatImage(w, h int) *Pixels {
	p := NewPixels(w, h, 3)
	for y := range h {
		for x := range w {
			i := (y*w + x) * 3
			p.Pix[i], p.Pix[i+1], p.Pix[i+2] = uint8(x*8/w*30), 200, uint8(y*4/h*60)
		}
	}
	return p
}

func TestWebPLosslessExact(t *testing.T) {
	for _, p := range []*Pixels{photoLike(300, 200, 4, 3), photoLike(257, 129, 3, 4), flatImage(256, 256)} {
		var buf bytes.Buffer
		if err := mustEncoder(t, "webp-lossless", EncoderOptions{}).Encode(&buf, p); err != nil {
			t.Fatal(err)
		}
		m, err := xwebp.Decode(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if d := diffPixels(p, m); d != "" {
			t.Errorf("%dx%dx%d: %s", p.W, p.H, p.C, d)
		}
	}
}

// smoothImage is a noiseless photo: gradients and soft shapes, which lossy
// codecs keep well (photoLike's sensor noise is what they drop first).
func smoothImage(w, h int) *Pixels {
	p := NewPixels(w, h, 3)
	for y := range h {
		for x := range w {
			i := (y*w + x) * 3
			dx, dy := float64(x-w/2), float64(y-h/3)
			p.Pix[i] = uint8(x * 255 / w)
			p.Pix[i+1] = uint8(y * 255 / h)
			p.Pix[i+2] = uint8(128 + 127*math.Cos(math.Sqrt(dx*dx+dy*dy)/20))
		}
	}
	return p
}

// TestWebPLossyQuality: quality 90 stays within a mean absolute error of 2
// (of 255) on a smooth image, and lower quality is smaller and worse.
func TestWebPLossyQuality(t *testing.T) {
	p := smoothImage(256, 256)
	var prevSize int
	var prevDiff float64
	for _, q := range []int{30, 90} {
		var buf bytes.Buffer
		if err := mustEncoder(t, "webp", EncoderOptions{Quality: q}).Encode(&buf, p); err != nil {
			t.Fatal(err)
		}
		size := buf.Len()
		m, err := decodeLossyWebP(&buf)
		if err != nil {
			t.Fatal(err)
		}
		d := meanAbsDiff(p, m)
		t.Logf("quality %d: %d bytes, mean abs diff %.2f", q, size, d)
		if q == 90 && d > 2 {
			t.Errorf("quality 90: mean absolute difference %.2f, want at most 2", d)
		}
		if prevSize != 0 && (size <= prevSize || d >= prevDiff) {
			t.Errorf("quality %d: %d bytes, diff %.2f; lower quality gave %d bytes, diff %.2f", q, size, d, prevSize, prevDiff)
		}
		prevSize, prevDiff = size, d
	}
	if _, err := NewEncoder("webp", EncoderOptions{Quality: 101}); !errors.Is(err, ErrOption) {
		t.Errorf("quality 101: %v", err)
	}
	var w countingWriter
	big := &Pixels{W: 16384, H: 1, C: 1, Pix: make([]byte, 16384)}
	if err := mustEncoder(t, "webp", EncoderOptions{}).Encode(&w, big); err == nil || w.n != 0 {
		t.Errorf("16384 wide: %v after %d bytes", err, w.n)
	}
}

// pngChunks lists the chunks of a PNG file: type and data.
func pngChunks(t *testing.T, b []byte) [][2]string {
	t.Helper()
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatal("no PNG signature")
	}
	var out [][2]string
	for b = b[8:]; len(b) >= 12; {
		n := int(binary.BigEndian.Uint32(b))
		typ, data := string(b[4:8]), b[8:8+n]
		if crc := binary.BigEndian.Uint32(b[8+n:]); crc != crc32.ChecksumIEEE(b[4:8+n]) {
			t.Fatalf("chunk %s: bad CRC", typ)
		}
		out = append(out, [2]string{typ, string(data)})
		b = b[12+n:]
	}
	return out
}

func TestPNGTextChunks(t *testing.T) {
	p := photoLike(64, 48, 3, 2)
	e := mustEncoder(t, "png", EncoderOptions{}).(TextEncoder)
	var buf bytes.Buffer
	text := []TextChunk{
		{"prompt", `{"1": {"class_type": "SaveImage"}}`},
		{"workflow", "caf\u00e9"},         // Latin-1: tEXt
		{"comment", "\u65e5\u672c\u8a9e"}, // beyond Latin-1: iTXt, as Pillow
	}
	if err := e.EncodeText(&buf, p, text); err != nil {
		t.Fatal(err)
	}
	m, err := png.Decode(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if d := diffPixels(p, m); d != "" {
		t.Fatal(d)
	}
	chunks := pngChunks(t, buf.Bytes())
	var types []string
	for _, c := range chunks {
		types = append(types, c[0])
	}
	if got := strings.Join(types, " "); !strings.HasPrefix(got, "IHDR tEXt tEXt iTXt IDAT") || !strings.HasSuffix(got, "IEND") {
		t.Errorf("chunk order %s", got)
	}
	want := []string{"prompt\x00" + text[0].Text, "workflow\x00caf\xe9", "comment\x00\x00\x00\x00\x00" + text[2].Text}
	for i, w := range want {
		if chunks[1+i][1] != w {
			t.Errorf("chunk %d = %q, want %q", 1+i, chunks[1+i][1], w)
		}
	}
	for _, bad := range []string{"", " lead", "trail ", strings.Repeat("k", 80), "nul\x00", "tab\t", "\u65e5"} {
		var w countingWriter
		if err := e.EncodeText(&w, p, []TextChunk{{bad, "x"}}); !errors.Is(err, ErrOption) || w.n != 0 {
			t.Errorf("keyword %q: %v after %d bytes", bad, err, w.n)
		}
	}
}

// TestLevelCompactChoosesBySample: level 3 for the photo, 7 for the flat
// image, and each file is what that level alone writes.
func TestLevelCompactChoosesBySample(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    *Pixels
		want Level
	}{
		{"photo", photoLike(512, 512, 3, 9), 3},
		{"flat", flatImage(512, 512), 7},
	} {
		st := &pngState{}
		src, err := rowsOf("png", tc.p, pngMaxSide)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.chooseCompact(src); got != int(tc.want) {
			t.Errorf("%s: chose level %d, want %d", tc.name, got, tc.want)
		}
		var compact, fixed bytes.Buffer
		if err := mustEncoder(t, "png", EncoderOptions{Level: LevelCompact}).Encode(&compact, tc.p); err != nil {
			t.Fatal(err)
		}
		if err := mustEncoder(t, "png", EncoderOptions{Level: tc.want}).Encode(&fixed, tc.p); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(compact.Bytes(), fixed.Bytes()) {
			t.Errorf("%s: LevelCompact wrote %d bytes, level %d alone %d", tc.name, compact.Len(), tc.want, fixed.Len())
		}
		m, err := png.Decode(&compact)
		if err != nil {
			t.Fatal(err)
		}
		if d := diffPixels(tc.p, m); d != "" {
			t.Errorf("%s: %s", tc.name, d)
		}
	}
}
