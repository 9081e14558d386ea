package sendimage

import (
	"bytes"
	"encoding/binary"
	"hash/adler32"
	"hash/crc32"
	"image"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/flate"
)

// Level is a PNG compression level.
type Level int

// Compression levels. 1..9 are klauspost/compress/flate's levels in between.
//
// LevelDefault picks, per image, whichever of LevelFast and LevelHuffmanOnly
// compresses a sample of the filtered rows smaller: on noisy, photo-like
// images (what generation produces) level 1 leaves them 40% larger than
// Huffman-only does, on flat images Huffman-only is 10-20× larger; both run
// at about the same speed.
const (
	LevelDefault     Level = 0  // level 1 or Huffman-only, by sample
	LevelFast        Level = 1  // flate level 1: matches, fast
	LevelBest        Level = 9  // flate level 9: small files, several times slower
	LevelNone        Level = -1 // stored blocks: no compression at all
	LevelHuffmanOnly Level = -2 // no match search: fast and good on photos, poor on flat images
)

// flateLevel maps a Level to klauspost/compress/flate's level.
func (l Level) flateLevel() int {
	switch l {
	case LevelDefault:
		return levelAuto
	case LevelNone:
		return flate.NoCompression
	case LevelHuffmanOnly:
		return flate.HuffmanOnly
	case LevelCompact:
		return levelAutoCompact
	}
	return int(l)
}

// zlibHeader returns the two zlib header bytes for a flate level: deflate
// with a 32 KiB window, FLEVEL as zlib sets it, and the FCHECK that makes
// the pair a multiple of 31.
func zlibHeader(level int) [2]byte {
	const cmf = 0x78
	var flevel byte
	switch {
	case level < 2: // also stored and Huffman-only
		flevel = 0
	case level < 6:
		flevel = 1
	case level == 6:
		flevel = 2
	default:
		flevel = 3
	}
	flg := flevel << 6
	flg += byte(31 - (uint(cmf)<<8|uint(flg))%31)
	return [2]byte{cmf, flg}
}

// pngEncoder writes 8-bit gray, RGB or RGBA PNGs with the Up filter on every
// row and a klauspost/compress flate stream; large images are compressed in
// parallel stripes that form one zlib stream.
type pngEncoder struct {
	level     int // flate level, or levelAuto
	workers   int // 1 = serial
	minStripe int // filtered bytes per parallel stripe, at least
}

func newPNGEncoder(opts EncoderOptions) (Encoder, error) {
	if opts.Level < LevelCompact || opts.Level > LevelBest {
		return nil, &OptionError{Owner: "png", Option: "Level", Value: opts.Level, Reason: "want -3 (compact), -2 (Huffman only), -1 (none), 0 (default) or 1..9"}
	}
	if opts.Workers < 0 {
		return nil, &OptionError{Owner: "png", Option: "Workers", Value: opts.Workers, Reason: "want 0 (GOMAXPROCS) or more"}
	}
	w := opts.Workers
	if w == 0 {
		w = runtime.GOMAXPROCS(0)
	}
	return &pngEncoder{level: opts.Level.flateLevel(), workers: w, minStripe: minStripeBytes}, nil
}

func (*pngEncoder) Name() string      { return "png" }
func (*pngEncoder) MIME() string      { return "image/png" }
func (*pngEncoder) Extension() string { return ".png" }

// pngMaxSide is the largest width or height the PNG format can hold.
const pngMaxSide = 1<<31 - 1

// Encode writes m as a PNG. Pixels, *image.Gray and *image.NRGBA are read in
// place; any other image is converted to Pixels first.
func (e *pngEncoder) Encode(w io.Writer, m image.Image) error {
	src, err := rowsOf("png", m, pngMaxSide)
	if err != nil {
		return err
	}
	return e.encodeRowsText(w, src, nil)
}

// rows is an 8-bit image with interleaved channels and any row stride.
type rows struct {
	w, h, c, stride int
	pix             []byte
}

func (r *rows) row(y int) []byte {
	o := y * r.stride
	return r.pix[o : o+r.w*r.c : o+r.w*r.c]
}

// rowsOf checks m for encoder name and returns its rows, without copying
// when it can.
func rowsOf(name string, m image.Image, maxSide int) (*rows, error) {
	if err := checkImage(name, m, maxSide); err != nil {
		return nil, err
	}
	b := m.Bounds()
	switch src := m.(type) {
	case *Pixels:
		return &rows{w: src.W, h: src.H, c: src.C, stride: src.W * src.C, pix: src.Pix}, nil
	case *image.Gray:
		o := src.PixOffset(b.Min.X, b.Min.Y)
		return &rows{w: b.Dx(), h: b.Dy(), c: 1, stride: src.Stride, pix: src.Pix[o:]}, nil
	case *image.NRGBA:
		o := src.PixOffset(b.Min.X, b.Min.Y)
		return &rows{w: b.Dx(), h: b.Dy(), c: 4, stride: src.Stride, pix: src.Pix[o:]}, nil
	}
	p := FromImage(m)
	return &rows{w: p.W, h: p.H, c: p.C, stride: p.W * p.C, pix: p.Pix}, nil
}

// encodeRowsText writes the whole PNG, with the ready-made text chunks
// between IHDR and IDAT. Nothing is written before the input has been
// checked, and the stream is written in a few large writes.
func (e *pngEncoder) encodeRowsText(w io.Writer, r *rows, text [][]byte) error {
	st := pngStatePool.Get().(*pngState)
	defer func() {
		st.idat.w = nil // keep no reference to the caller's writer in the pool
		pngStatePool.Put(st)
	}()
	st.reset(w)

	var colorType byte
	switch r.c {
	case 1:
		colorType = 0 // gray
	case 3:
		colorType = 2 // truecolour
	case 4:
		colorType = 6 // truecolour with alpha
	}
	var head [8 + 8 + 13 + 4]byte
	copy(head[:8], "\x89PNG\r\n\x1a\n")
	ihdr := head[8:]
	binary.BigEndian.PutUint32(ihdr[0:], 13)
	copy(ihdr[4:], "IHDR")
	binary.BigEndian.PutUint32(ihdr[8:], uint32(r.w))
	binary.BigEndian.PutUint32(ihdr[12:], uint32(r.h))
	ihdr[16] = 8 // bit depth
	ihdr[17] = colorType
	// compression 0, filter method 0, no interlace
	binary.BigEndian.PutUint32(ihdr[21:], crc32.ChecksumIEEE(ihdr[4:21]))
	if _, err := w.Write(head[:]); err != nil {
		return err
	}
	for _, c := range text {
		if _, err := w.Write(c); err != nil {
			return err
		}
	}

	level := e.level
	switch level {
	case levelAuto:
		var ratio float64
		level, ratio = st.chooseLevel(r)
		// Size a buffer destination once, from the sample's compressed
		// size: grown as it fills, a 2048² photo's 7 MB were copied and
		// cleared more than once.
		if bb, ok := w.(*bytes.Buffer); ok {
			raw := float64(r.h) * float64(1+r.w*r.c)
			bb.Grow(int(raw*ratio*1.05) + 64<<10)
		}
	case levelAutoCompact:
		level = st.chooseCompact(r)
	}
	zh := zlibHeader(level)
	st.idat.Write(zh[:])
	var sum uint32
	var err error
	if stripes := e.stripes(r); stripes > 1 {
		sum, err = e.compressParallel(&st.idat, r, level, stripes)
	} else {
		sum, err = st.compressSerial(&st.idat, r, level, 0, r.h, true)
	}
	if err != nil {
		return err
	}
	var tail [4]byte
	binary.BigEndian.PutUint32(tail[:], sum)
	st.idat.Write(tail[:])
	if err := st.idat.flush(); err != nil {
		return err
	}
	_, err = w.Write([]byte("\x00\x00\x00\x00IEND\xae\x42\x60\x82"))
	return err
}

// Parallel compression pays only for large images: below this many filtered
// bytes per stripe the goroutines and the lost matches at the seams cost more
// than they save.
const minStripeBytes = 512 << 10

// stripes is how many parallel stripes to cut r into: 1 means serial.
func (e *pngEncoder) stripes(r *rows) int {
	if e.workers <= 1 {
		return 1
	}
	total := r.h * (1 + r.w*r.c)
	n := min(total/max(e.minStripe, 1), 2*e.workers, r.h)
	return max(n, 1)
}

// pngState is the reusable memory of one encode: the flate writer, the
// buffer of filtered rows and the IDAT chunk buffer.
type pngState struct {
	fw       *flate.Writer
	fwLevel  int
	filtered []byte
	idat     chunkWriter
}

var pngStatePool = sync.Pool{New: func() any { return &pngState{} }}

func (st *pngState) reset(w io.Writer) {
	st.idat.w = w
	st.idat.n = 0
	st.idat.err = nil
	if st.idat.buf == nil {
		st.idat.buf = make([]byte, 8+idatChunkSize+4)
	}
}

// flateWriter returns st's flate writer at level, writing to w.
func (st *pngState) flateWriter(w io.Writer, level int) (*flate.Writer, error) {
	if st.fw == nil || st.fwLevel != level {
		fw, err := flate.NewWriter(w, level)
		if err != nil { // cannot happen: levels are checked when the encoder is made
			return nil, err
		}
		st.fw, st.fwLevel = fw, level
		return fw, nil
	}
	st.fw.Reset(w)
	return st.fw, nil
}

// filterBatchBytes is how many filtered bytes are handed to flate at once:
// big enough to amortise the call, small enough to stay in L2.
const filterBatchBytes = 128 << 10

// compressSerial filters rows [y0,y1) of r with the Up filter and writes them
// as deflate blocks to dst. The last stripe ends the deflate stream; the
// others end with a sync flush, byte-aligned, so stripes can be concatenated.
// It returns the Adler-32 of the filtered bytes.
func (st *pngState) compressSerial(dst io.Writer, r *rows, level, y0, y1 int, last bool) (uint32, error) {
	fw, err := st.flateWriter(dst, level)
	if err != nil {
		return 0, err
	}
	rowLen := 1 + r.w*r.c
	per := max(1, filterBatchBytes/rowLen)
	if need := per * rowLen; cap(st.filtered) < need {
		st.filtered = make([]byte, need)
	}
	sum := uint32(1)
	for y := y0; y < y1; {
		n := min(per, y1-y)
		buf := st.filtered[:n*rowLen]
		for i := range n {
			filterUp(buf[i*rowLen:(i+1)*rowLen], r, y+i)
		}
		sum = adler32Combine(sum, adler32.Checksum(buf), int64(len(buf)))
		if _, err := fw.Write(buf); err != nil {
			return 0, err
		}
		y += n
	}
	if last {
		err = fw.Close()
	} else {
		err = fw.Flush()
	}
	fw.Reset(nil) // drop the reference to dst
	return sum, err
}

// levelAuto stands for LevelDefault until an image's sample decides.
const levelAuto = -100

// Sampling for LevelDefault: up to probeWindows runs of consecutive rows of
// about probeBytes filtered bytes each, spread over the image. Consecutive
// rows keep the matches level 1 would find; a few windows keep one odd band
// from deciding for the whole image. Capped at an eighth of the image.
const (
	probeWindows = 3
	probeBytes   = 48 << 10
)

// chooseLevel compresses a sample of r's filtered rows at flate level 1 and
// Huffman-only and returns the level that made the smaller output, and the
// ratio of that output to the sample.
func (st *pngState) chooseLevel(r *rows) (int, float64) {
	sample := st.sample(r)
	fast := probeSize(flate.BestSpeed, sample)
	huff := probeSize(flate.HuffmanOnly, sample)
	n := float64(max(len(sample), 1))
	if huff < fast {
		return flate.HuffmanOnly, float64(huff) / n
	}
	return flate.BestSpeed, float64(fast) / n
}

// sample returns probeWindows runs of r's filtered rows, in st's buffer.
func (st *pngState) sample(r *rows) []byte {
	rowLen := 1 + r.w*r.c
	perWindow := max(1, min(probeBytes, r.h*rowLen/(8*probeWindows))/rowLen)
	if perWindow*probeWindows >= r.h {
		perWindow = max(1, r.h/probeWindows)
	}
	if need := probeWindows * perWindow * rowLen; cap(st.filtered) < need {
		st.filtered = make([]byte, need)
	}
	sample := st.filtered[:0]
	for k := range probeWindows {
		y0 := (r.h - perWindow) * (2*k + 1) / (2 * probeWindows)
		for y := y0; y < min(y0+perWindow, r.h); y++ {
			n := len(sample)
			sample = sample[:n+rowLen]
			filterUp(sample[n:], r, y)
		}
	}
	return sample
}

// countWriter counts the bytes written to it.
type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// probeWriters keeps one flate writer per probed level: each holds hundreds
// of KiB of state, too much to make for every image.
var probeWriters = map[int]*sync.Pool{
	flate.BestSpeed:   {New: func() any { w, _ := flate.NewWriter(nil, flate.BestSpeed); return w }},
	flate.HuffmanOnly: {New: func() any { w, _ := flate.NewWriter(nil, flate.HuffmanOnly); return w }},
	compactLevel:      {New: func() any { w, _ := flate.NewWriter(nil, compactLevel); return w }},
}

// probeSize is the compressed size of b at flate level.
func probeSize(level int, b []byte) int64 {
	pool := probeWriters[level]
	fw := pool.Get().(*flate.Writer)
	defer pool.Put(fw)
	var n countWriter
	fw.Reset(&n)
	fw.Write(b)
	fw.Close()
	fw.Reset(nil)
	return int64(n)
}

// filterUp writes the filter-type byte and row y of r, Up-filtered (each
// byte minus the byte above it), to dst. Row 0 has nothing above it, so the
// filter leaves it as is.
func filterUp(dst []byte, r *rows, y int) {
	dst[0] = 2 // Up
	cur := r.row(y)
	out := dst[1 : 1+len(cur)]
	if y == 0 {
		copy(out, cur)
		return
	}
	subBytes(out, cur, r.row(y-1))
}

// subBytes sets dst[i] = a[i] - b[i] (mod 256), eight bytes at a time: the
// high bit of every byte is handled apart so that no borrow crosses bytes.
func subBytes(dst, a, b []byte) {
	const hi = 0x8080808080808080
	n := len(dst) &^ 7
	for i := 0; i < n; i += 8 {
		x := binary.LittleEndian.Uint64(a[i:])
		y := binary.LittleEndian.Uint64(b[i:])
		binary.LittleEndian.PutUint64(dst[i:], ((x|hi)-(y&^hi))^((x^^y)&hi))
	}
	for i := n; i < len(dst); i++ {
		dst[i] = a[i] - b[i]
	}
}

// compressParallel compresses r in stripes on up to e.workers goroutines and
// writes them to dst in order as they complete. Each stripe is an
// independent run of deflate blocks ending byte-aligned (pigz's method), so
// their concatenation is one deflate stream; the Adler-32 values of the
// stripes are combined into the stream's.
func (e *pngEncoder) compressParallel(dst io.Writer, r *rows, level, stripes int) (uint32, error) {
	type stripe struct {
		out  *growBuffer
		sum  uint32
		n    int64 // filtered bytes
		err  error
		done chan struct{}
	}
	all := make([]stripe, stripes)
	for i := range all {
		all[i].done = make(chan struct{})
	}
	bounds := func(i int) (int, int) { return r.h * i / stripes, r.h * (i + 1) / stripes }
	next := make(chan int, stripes)
	for i := range stripes {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range min(e.workers, stripes) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := pngStatePool.Get().(*pngState)
			defer pngStatePool.Put(st)
			for i := range next {
				s := &all[i]
				y0, y1 := bounds(i)
				s.out = stripePool.Get().(*growBuffer)
				s.out.b = s.out.b[:0]
				s.sum, s.err = st.compressSerial(s.out, r, level, y0, y1, i == stripes-1)
				s.n = int64(y1-y0) * int64(1+r.w*r.c)
				close(s.done)
			}
		}()
	}
	defer wg.Wait()

	sum := uint32(1)
	var firstErr error
	for i := range all {
		s := &all[i]
		<-s.done
		if firstErr == nil {
			firstErr = s.err
		}
		if firstErr == nil {
			if _, err := dst.Write(s.out.b); err != nil {
				firstErr = err
			}
		}
		sum = adler32Combine(sum, s.sum, s.n)
		stripePool.Put(s.out)
	}
	return sum, firstErr
}

// stripePool recycles the compressed output of stripes between encodes.
var stripePool = sync.Pool{New: func() any { return new(growBuffer) }}

// growBuffer is a minimal append-only writer.
type growBuffer struct{ b []byte }

func (g *growBuffer) Write(p []byte) (int, error) {
	g.b = append(g.b, p...)
	return len(p), nil
}

const adlerBase = 65521

// adler32Combine returns the Adler-32 of A+B from the sums of A and of B
// and the length of B, as zlib's adler32_combine.
func adler32Combine(a, b uint32, lenB int64) uint32 {
	rem := uint32(lenB % adlerBase)
	s1 := a & 0xffff
	s2 := uint32(uint64(rem) * uint64(s1) % adlerBase)
	s1 += (b & 0xffff) + adlerBase - 1
	s2 += (a >> 16) + (b >> 16) + adlerBase - rem
	if s1 >= adlerBase {
		s1 -= adlerBase
	}
	if s1 >= adlerBase {
		s1 -= adlerBase
	}
	if s2 >= adlerBase<<1 {
		s2 -= adlerBase << 1
	}
	if s2 >= adlerBase {
		s2 -= adlerBase
	}
	return s1 | s2<<16
}

// idatChunkSize is the data size of each full IDAT chunk.
const idatChunkSize = 256 << 10

// chunkWriter cuts what is written to it into IDAT chunks. Errors are
// sticky: after the first, writes are dropped and flush reports it.
type chunkWriter struct {
	w   io.Writer
	buf []byte // 8 header bytes, up to idatChunkSize data bytes, 4 CRC bytes
	n   int    // data bytes in buf
	err error
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 && c.err == nil {
		k := copy(c.buf[8+c.n:8+idatChunkSize], p)
		c.n += k
		p = p[k:]
		if c.n == idatChunkSize {
			c.writeChunk()
		}
	}
	if c.err != nil {
		return 0, c.err
	}
	return total, nil
}

func (c *chunkWriter) writeChunk() {
	if c.n == 0 || c.err != nil {
		return
	}
	binary.BigEndian.PutUint32(c.buf[0:], uint32(c.n))
	copy(c.buf[4:8], "IDAT")
	binary.BigEndian.PutUint32(c.buf[8+c.n:], crc32.ChecksumIEEE(c.buf[4:8+c.n]))
	_, c.err = c.w.Write(c.buf[:8+c.n+4])
	c.n = 0
}

func (c *chunkWriter) flush() error {
	c.writeChunk()
	return c.err
}
