package builtin

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"testing"

	"github.com/nodecast/nodecast/internal/testimage"
)

// pngSpec describes a hand-built PNG: every colour type, bit depth and
// interlace image/png reads, with all five row filters and split IDATs.
type pngSpec struct {
	w, h         int
	depth, ctype byte
	interlace    bool
	plte         int    // palette entries (colour type 3)
	trns         []byte // tRNS chunk data, if any
	idats        int    // IDAT chunks the zlib stream is split into
}

func channelsOf(ctype byte) int {
	return map[byte]int{0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
}

// adam7 lists the passes' (x0, y0, dx, dy).
var adam7 = [7][4]int{{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}}

// buildPNG writes s with random samples, each row under a filter chosen in
// turn, so that every filter is decoded.
func buildPNG(s pngSpec, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	bitsPP := int(s.depth) * channelsOf(s.ctype)
	bpp := max(1, bitsPP/8)
	var raw bytes.Buffer
	filterNo := 0
	writePass := func(w, h int) {
		if w == 0 || h == 0 {
			return
		}
		rowBytes := (w*bitsPP + 7) / 8
		prev := make([]byte, rowBytes)
		for y := 0; y < h; y++ {
			row := make([]byte, rowBytes)
			for i := range row {
				row[i] = byte(rng.Uint32())
			}
			if s.ctype == 3 && s.depth == 8 {
				for i := range row {
					row[i] %= byte(s.plte)
				}
			}
			f := byte(filterNo % 5)
			filterNo++
			raw.WriteByte(f)
			raw.Write(filterRow(f, row, prev, bpp))
			prev = row
		}
	}
	if s.interlace {
		for _, p := range adam7 {
			writePass((s.w-p[0]+p[2]-1)/p[2], (s.h-p[1]+p[3]-1)/p[3])
		}
	} else {
		writePass(s.w, s.h)
	}
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(raw.Bytes())
	zw.Close()

	var out bytes.Buffer
	out.Write(pngSignature)
	chunk := func(typ string, data []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(data)))
		out.Write(n[:])
		out.WriteString(typ)
		out.Write(data)
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		binary.BigEndian.PutUint32(n[:], crc.Sum32())
		out.Write(n[:])
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr, uint32(s.w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(s.h))
	ihdr[8], ihdr[9] = s.depth, s.ctype
	if s.interlace {
		ihdr[12] = 1
	}
	chunk("IHDR", ihdr)
	chunk("tEXt", []byte("Comment\x00built by the test"))
	if s.plte > 0 {
		p := make([]byte, 3*s.plte)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		chunk("PLTE", p)
	}
	if s.trns != nil {
		chunk("tRNS", s.trns)
	}
	data := z.Bytes()
	parts := max(1, s.idats)
	for i := 0; i < parts; i++ {
		chunk("IDAT", data[i*len(data)/parts:(i+1)*len(data)/parts])
	}
	chunk("IEND", nil)
	return out.Bytes()
}

// filterRow applies PNG filter f to row (the encoder's side).
func filterRow(f byte, row, prev []byte, bpp int) []byte {
	out := make([]byte, len(row))
	for i := range row {
		var a, c byte
		if i >= bpp {
			a, c = row[i-bpp], prev[i-bpp]
		}
		b := prev[i]
		switch f {
		case 0:
			out[i] = row[i]
		case 1:
			out[i] = row[i] - a
		case 2:
			out[i] = row[i] - b
		case 3:
			out[i] = row[i] - byte((int(a)+int(b))/2)
		case 4:
			out[i] = row[i] - paethRef(a, b, c)
		}
	}
	return out
}

// paethRef is the PNG specification's predictor, as written there.
func paethRef(a, b, c byte) byte {
	p := int(a) + int(b) - int(c)
	abs := func(x int) int {
		if x < 0 {
			return -x
		}
		return x
	}
	pa, pb, pc := abs(p-int(a)), abs(p-int(b)), abs(p-int(c))
	if pa <= pb && pa <= pc {
		return a
	} else if pb <= pc {
		return b
	}
	return c
}

// pngCorpus is every colour type, bit depth and interlace, hand-built, plus
// files from image/png's own encoder.
func pngCorpus(t testing.TB) map[string][]byte {
	files := map[string][]byte{}
	depths := map[byte][]byte{0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}
	for ctype, ds := range depths {
		for _, d := range ds {
			for _, il := range []bool{false, true} {
				for _, size := range [][2]int{{1, 1}, {3, 5}, {33, 17}, {64, 9}, {10, 70}} { // 70 rows: inflate runs alongside unfiltering
					s := pngSpec{w: size[0], h: size[1], depth: d, ctype: ctype, interlace: il, idats: 1 + size[0]%3}
					if ctype == 3 {
						s.plte = 1 << d
						if d == 8 {
							s.plte = 200
						}
					}
					name := fmt.Sprintf("ct%d-d%d-i%v-%dx%d", ctype, d, il, s.w, s.h)
					files[name] = buildPNG(s, uint64(len(files)))
				}
			}
		}
	}
	// tRNS on grey, RGB and palette images.
	files["ct0-d8-trns"] = buildPNG(pngSpec{w: 9, h: 4, depth: 8, ctype: 0, trns: []byte{0, 7}}, 1)
	files["ct2-d8-trns"] = buildPNG(pngSpec{w: 9, h: 4, depth: 8, ctype: 2, trns: []byte{0, 1, 0, 2, 0, 3}}, 2)
	files["ct3-d8-trns"] = buildPNG(pngSpec{w: 9, h: 4, depth: 8, ctype: 3, plte: 200, trns: []byte{0, 128, 255}}, 3)
	// image/png's encoder, at each compression level.
	photo := testimage.PhotoLike(67, 41)
	opaque := image.NewRGBA(photo.Rect)
	for i := range opaque.Pix {
		opaque.Pix[i] = photo.Pix[i] | 0
		if i%4 == 3 {
			opaque.Pix[i] = 0xff
		}
	}
	gray := image.NewGray(photo.Rect)
	copy(gray.Pix, photo.Pix)
	for _, lvl := range []png.CompressionLevel{png.DefaultCompression, png.NoCompression, png.BestSpeed, png.BestCompression} {
		for name, m := range map[string]image.Image{"nrgba": photo, "rgb": opaque, "gray": gray} {
			var buf bytes.Buffer
			if err := (&png.Encoder{CompressionLevel: lvl}).Encode(&buf, m); err != nil {
				t.Fatal(err)
			}
			files[fmt.Sprintf("enc-%s-%d", name, lvl)] = buf.Bytes()
		}
	}
	return files
}

// samePNG decodes data with decodePNG and image/png and fails unless both
// refuse it or both give the same pixels.
func samePNG(t testing.TB, name string, data []byte) {
	t.Helper()
	want, wantErr := png.Decode(bytes.NewReader(data))
	got, gotErr := decodePNG(bytes.NewReader(data))
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("%s: image/png err %v, ours %v", name, wantErr, gotErr)
	}
	if wantErr != nil {
		if wantErr.Error() != gotErr.Error() {
			t.Fatalf("%s: image/png says %q, ours %q", name, wantErr, gotErr)
		}
		return
	}
	if got.Bounds() != want.Bounds() {
		t.Fatalf("%s: bounds %v, image/png %v", name, got.Bounds(), want.Bounds())
	}
	if hasAlphaBand(got, "png") != hasAlphaBand(want, "png") {
		t.Fatalf("%s: alpha band %v, image/png %v", name, hasAlphaBand(got, "png"), hasAlphaBand(want, "png"))
	}
	b := want.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			g := color.NRGBA64Model.Convert(got.At(x, y))
			w := color.NRGBA64Model.Convert(want.At(x, y))
			if g != w {
				t.Fatalf("%s: pixel (%d,%d) = %v, image/png %v", name, x, y, g, w)
			}
		}
	}
	// The rows LoadImage reads agree too.
	rg, rw := make([]byte, 4*b.Dx()), make([]byte, 4*b.Dx())
	readG, readW := nrgbaRows(got), nrgbaRows(want)
	for y := 0; y < b.Dy(); y++ {
		readG(y, rg)
		readW(y, rw)
		if !bytes.Equal(rg, rw) {
			t.Fatalf("%s: row %d reads %v, image/png's %v", name, y, rg, rw)
		}
	}
}

func TestDecodePNGMatchesImagePNG(t *testing.T) {
	fast := 0
	for name, data := range pngCorpus(t) {
		samePNG(t, name, data)
		var ctype, depth, interlace byte
		var ok bool
		if len(data) > 29 {
			depth, ctype, interlace = data[24], data[25], data[28]
		}
		_, err := fastPNGDecode(bufioReader(data), int64(len(data)))
		ok = err == nil
		want := depth == 8 && ctype != 3 && interlace == 0 && !bytes.Contains(data, []byte("tRNS"))
		if ok != want {
			t.Errorf("%s: fast path %v (%v), want %v", name, ok, err, want)
		}
		if ok {
			fast++
		}
	}
	t.Logf("%d files decoded by the fast path", fast)
}

// TestDecodePNGBrokenFiles: every truncation and a flipped byte in each
// region of a fast-path file fail exactly as image/png fails.
func TestDecodePNGBrokenFiles(t *testing.T) {
	for _, s := range []pngSpec{{w: 20, h: 7, depth: 8, ctype: 2, idats: 3}, {w: 6, h: 40, depth: 8, ctype: 6, idats: 2}} {
		data := buildPNG(s, 9)
		for n := 0; n < len(data); n++ {
			samePNG(t, fmt.Sprintf("%dx%d cut at %d", s.w, s.h, n), data[:n])
		}
		for i := 0; i < len(data); i++ {
			bad := bytes.Clone(data)
			bad[i] ^= 0x20
			samePNG(t, fmt.Sprintf("%dx%d byte %d flipped", s.w, s.h, i), bad)
		}
	}
}

// FuzzDecodePNG: on any input decodePNG and image/png agree. Seeds are the
// corpus's small files and testdata/fuzz/FuzzDecodePNG; CI replays them only.
func FuzzDecodePNG(f *testing.F) {
	for _, s := range []pngSpec{
		{w: 5, h: 3, depth: 8, ctype: 2, idats: 2},
		{w: 4, h: 4, depth: 8, ctype: 6},
		{w: 3, h: 3, depth: 8, ctype: 4},
		{w: 7, h: 2, depth: 8, ctype: 0},
		{w: 6, h: 6, depth: 16, ctype: 2, interlace: true},
		{w: 5, h: 5, depth: 2, ctype: 3, plte: 4},
	} {
		f.Add(buildPNG(s, 1))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		if cfg, err := png.DecodeConfig(bytes.NewReader(data)); err != nil || cfg.Width*cfg.Height > 1<<20 {
			return // LoadImage checks the header against the limits first
		}
		samePNG(t, "fuzz", data)
	})
}

// BenchmarkDecodePNG compares decodePNG with image/png on photos of 1024²
// and 2048²; SetBytes counts the RGB bytes decoded. NODECAST_PHOTO_1024 and
// NODECAST_PHOTO_2048 name real photos to use instead of generated ones.
func BenchmarkDecodePNG(b *testing.B) {
	for _, side := range []int{1024, 2048} {
		data := testimage.PhotoPNG(b, side, png.DefaultCompression)
		b.Run(fmt.Sprintf("ours/%d", side), func(b *testing.B) {
			b.SetBytes(int64(side * side * 3))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodePNG(bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("image-png/%d", side), func(b *testing.B) {
			b.SetBytes(int64(side * side * 3))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := png.Decode(bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func bufioReader(data []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(data)) }

// TestDecodePNGZlibChecksum: a byte flipped in the zlib stream, its chunk's
// CRC made right again, so that only inflate or the adler32 can tell, fails
// as image/png fails; on the pipelined path (40 rows) and the serial one.
func TestDecodePNGZlibChecksum(t *testing.T) {
	for _, s := range []pngSpec{{w: 20, h: 7, depth: 8, ctype: 2, idats: 2}, {w: 9, h: 40, depth: 8, ctype: 2, idats: 3},
		{w: 6, h: 40, depth: 8, ctype: 6}, {w: 5, h: 9, depth: 8, ctype: 4}} {
		data := buildPNG(s, 3)
		// The IDAT chunks' data, as offsets into the file.
		var spans [][2]int
		for p := 8; p+12 <= len(data); {
			n := int(binary.BigEndian.Uint32(data[p:]))
			if string(data[p+4:p+8]) == "IDAT" {
				spans = append(spans, [2]int{p + 8, p + 8 + n})
			}
			p += 12 + n
		}
		for _, sp := range spans {
			for i := sp[0]; i < sp[1]; i++ {
				bad := bytes.Clone(data)
				bad[i] ^= 0x01
				crc := crc32.NewIEEE()
				crc.Write(bad[sp[0]-4 : sp[1]])
				binary.BigEndian.PutUint32(bad[sp[1]:], crc.Sum32())
				samePNG(t, fmt.Sprintf("%dx%d ctype %d: zlib byte at %d flipped", s.w, s.h, s.ctype, i), bad)
			}
		}
	}
}
