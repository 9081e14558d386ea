package builtin

import (
	"bufio"
	"encoding/binary"
	"errors"
	"hash"
	"hash/adler32"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"io"
	"slices"
	"sync/atomic"
)

// decodePNG decodes a PNG. The common photo case, 8 bits per sample without
// interlacing and without tRNS (grey, grey+alpha, RGB, RGBA), is decoded by
// fastPNG: klauspost/compress's inflate (faster than compress/zlib) and the
// rows unfiltered straight into the image LoadImage reads, RGB kept at 3
// bytes a pixel. Everything else, and any file the fast path finds a fault
// in, is decoded by image/png from the start, so errors and every other
// colour type, depth and interlace are exactly image/png's; a test checks the
// fast path's pixels against image/png's on a corpus and a fuzz target.
func decodePNG(r io.ReadSeeker) (image.Image, error) {
	size, err := r.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if m, err := fastPNGDecode(bufio.NewReaderSize(r, 64<<10), size); err == nil {
		return m, nil
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return png.Decode(bufio.NewReader(r))
}

// errNotFast sends a file back to image/png: not a case fastPNG decodes, or
// something wrong that image/png should report in its own words.
var errNotFast = errors.New("png: not for the fast path")

// rgbImage is an 8-bit RGB image, 3 bytes a pixel, what an RGB PNG holds and
// an IMAGE tensor wants. It reads as image/png's *image.RGBA with opaque alpha.
type rgbImage struct {
	Pix    []byte
	Stride int
	Rect   image.Rectangle
}

func (m *rgbImage) ColorModel() color.Model { return color.RGBAModel }
func (m *rgbImage) Bounds() image.Rectangle { return m.Rect }
func (m *rgbImage) Opaque() bool            { return true }
func (m *rgbImage) At(x, y int) color.Color {
	if !(image.Point{x, y}.In(m.Rect)) {
		return color.RGBA{}
	}
	i := (y-m.Rect.Min.Y)*m.Stride + (x-m.Rect.Min.X)*3
	return color.RGBA{m.Pix[i], m.Pix[i+1], m.Pix[i+2], 0xff}
}

// pngChunks reads PNG chunks, checking each one's CRC.
type pngChunks struct {
	r   *bufio.Reader
	crc hash.Hash32
	tmp [8]byte
}

// next reads a chunk's length and type.
func (c *pngChunks) next() (uint32, string, error) {
	if _, err := io.ReadFull(c.r, c.tmp[:8]); err != nil {
		return 0, "", err
	}
	n := binary.BigEndian.Uint32(c.tmp[:4])
	if n > 0x7fffffff {
		return 0, "", errNotFast
	}
	c.crc.Reset()
	c.crc.Write(c.tmp[4:8])
	return n, string(c.tmp[4:8]), nil
}

// body reads a whole chunk's data (small chunks only) and checks its CRC.
func (c *pngChunks) body(n uint32) ([]byte, error) {
	if n > 1<<20 {
		return nil, errNotFast
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		return nil, err
	}
	c.crc.Write(b)
	return b, c.checkCRC()
}

// skip discards a chunk's data and checks its CRC.
func (c *pngChunks) skip(n uint32) error {
	var buf [4096]byte
	for n > 0 {
		k, err := io.ReadFull(c.r, buf[:min(int(n), len(buf))])
		if err != nil {
			return err
		}
		c.crc.Write(buf[:k])
		n -= uint32(k)
	}
	return c.checkCRC()
}

func (c *pngChunks) checkCRC() error {
	if _, err := io.ReadFull(c.r, c.tmp[:4]); err != nil {
		return err
	}
	if binary.BigEndian.Uint32(c.tmp[:4]) != c.crc.Sum32() {
		return errNotFast
	}
	return nil
}

// idat reads the data of the run of consecutive IDAT chunks that starts
// with one of n bytes, checking each one's CRC, and returns it with the
// offsets where each chunk ends. The chunk after the run is read as far as
// its length and type, returned too.
func (c *pngChunks) idat(n uint32, maxBytes int64) (data []byte, ends []int, nextLen uint32, nextType string, err error) {
	data = make([]byte, 0, maxBytes) // the file's size, or what the pixels could take
	for {
		if int64(len(data))+int64(n) > maxBytes {
			return nil, nil, 0, "", errNotFast
		}
		off := len(data)
		data = append(data, make([]byte, n)...)
		if _, err := io.ReadFull(c.r, data[off:]); err != nil {
			return nil, nil, 0, "", err
		}
		c.crc.Write(data[off:])
		if err := c.checkCRC(); err != nil {
			return nil, nil, 0, "", err
		}
		ends = append(ends, len(data))
		var typ string
		if n, typ, err = c.next(); err != nil {
			return nil, nil, 0, "", err
		}
		if typ != "IDAT" {
			return data, ends, n, typ, nil
		}
	}
}

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// fastPNGDecode decodes the cases decodePNG describes, from a file of size
// bytes; any error sends the file to image/png.
func fastPNGDecode(r *bufio.Reader, size int64) (image.Image, error) {
	var sig [8]byte
	if _, err := io.ReadFull(r, sig[:]); err != nil || string(sig[:]) != string(pngSignature) {
		return nil, errNotFast
	}
	c := &pngChunks{r: r, crc: crc32.NewIEEE()}
	n, typ, err := c.next()
	if err != nil || typ != "IHDR" || n != 13 {
		return nil, errNotFast
	}
	ihdr, err := c.body(n)
	if err != nil {
		return nil, err
	}
	w, h := binary.BigEndian.Uint32(ihdr[0:]), binary.BigEndian.Uint32(ihdr[4:])
	depth, ctype := ihdr[8], ihdr[9]
	if depth != 8 || ihdr[10] != 0 || ihdr[11] != 0 || ihdr[12] != 0 || w == 0 || h == 0 || w > 1<<24 || h > 1<<24 {
		return nil, errNotFast // image/png decodes (or refuses) the rest
	}
	var bpp int
	switch ctype {
	case 0:
		bpp = 1
	case 2:
		bpp = 3
	case 4:
		bpp = 2
	case 6:
		bpp = 4
	default:
		return nil, errNotFast
	}
	if uint64(w)*uint64(h)*uint64(bpp) > 1<<34 {
		return nil, errNotFast
	}
	// Chunks before the pixels: ancillary ones are skipped as image/png
	// skips them; PLTE, tRNS and a misplaced IHDR or IEND go to image/png.
	for {
		n, typ, err = c.next()
		if err != nil {
			return nil, err
		}
		if typ == "IDAT" {
			break
		}
		switch typ {
		case "IHDR", "PLTE", "tRNS", "IEND":
			return nil, errNotFast
		}
		if err := c.skip(n); err != nil {
			return nil, err
		}
	}
	// The compressed pixels, read whole (a fraction of the decoded size;
	// inflate then reads bytes from memory, not through a chunk reader).
	raw := int(h) * (1 + int(w)*bpp)
	data, ends, n, typ, err := c.idat(n, min(int64(raw+raw/8+1<<20), size))
	if err != nil {
		return nil, err
	}
	m, err := fastPNGPixels(data, ends, int(w), int(h), ctype, bpp)
	if err != nil {
		return nil, err
	}
	// After the pixels: more IDAT chunks are ignored, as image/png does;
	// IEND ends the file.
	for first := true; ; first = false {
		if !first {
			if n, typ, err = c.next(); err != nil {
				return nil, err
			}
		}
		switch typ {
		case "IEND":
			if n != 0 {
				return nil, errNotFast
			}
			return m, c.checkCRC()
		case "IHDR", "PLTE", "tRNS":
			return nil, errNotFast
		}
		if err := c.skip(n); err != nil {
			return nil, err
		}
	}
}

// fastPNGPixels inflates and unfilters the rows into the image image/png
// would return (an rgbImage for RGB).
//
// The rows are inflated into one buffer of filtered rows (1 filter byte and
// the row each), by inflateInto, whose window is that buffer; each row is
// then unfiltered into its final place at the start of the same buffer, one
// byte per row further left, so the pixels need no second buffer. The
// zlib wrapper is read here, and the adler32 of the inflated bytes is
// computed by the goroutine that unfilters them, not by inflate, which
// alone is what a photo's decode waits for.
func fastPNGPixels(data []byte, ends []int, w, h int, ctype byte, bpp int) (image.Image, error) {
	if !zlibHeaderOK(data) {
		return nil, errNotFast // image/png reports it (or a preset dictionary) in its words
	}
	rect := image.Rect(0, 0, w, h)
	stride := w * bpp
	buf := make([]byte, h*(stride+1))
	sum := adler32.New()
	var (
		used int
		err  error
	)
	if h >= 2*pipelineRows {
		used, err = inflateAlongside(data[2:], buf, stride, h, bpp, sum)
	} else {
		used, err = inflateInto(buf, data[2:], nil)
		zero := make([]byte, stride)
		for y := 0; y < h && err == nil; y++ {
			if !unfilterPacked(buf, y, stride, bpp, zero, sum) {
				err = errNotFast
			}
		}
	}
	if err != nil {
		return nil, errNotFast
	}
	// The zlib stream must end here, its checksum right, at the end of an
	// IDAT chunk: image/png refuses data left in the chunk the stream ends in,
	// and ignores the IDAT chunks after it.
	end := 2 + used + 4
	if end > len(data) || binary.BigEndian.Uint32(data[end-4:]) != sum.Sum32() || !slices.Contains(ends, end) {
		return nil, errNotFast
	}
	pix := buf[: h*stride : h*stride]
	switch ctype {
	case 0:
		return &image.Gray{Pix: pix, Stride: stride, Rect: rect}, nil
	case 2:
		return &rgbImage{Pix: pix, Stride: stride, Rect: rect}, nil
	case 6:
		return &image.NRGBA{Pix: pix, Stride: stride, Rect: rect}, nil
	}
	m := image.NewNRGBA(rect) // grey+alpha widens to NRGBA
	for i, o := 0, 0; i < len(pix); i, o = i+2, o+4 {
		g, a := pix[i], pix[i+1]
		m.Pix[o], m.Pix[o+1], m.Pix[o+2], m.Pix[o+3] = g, g, g, a
	}
	return m, nil
}

// unfilterPacked adds filtered row y of buf (rows of 1+stride bytes) to the
// checksum, moves it to its unfiltered place, y*stride, just after row y-1
// (already unfiltered there, or zero for row 0), and unfilters it in place.
func unfilterPacked(buf []byte, y, stride, bpp int, zero []byte, sum hash.Hash32) bool {
	src := buf[y*(stride+1) : (y+1)*(stride+1)]
	sum.Write(src)
	f := src[0]
	cur := buf[y*stride : (y+1)*stride]
	copy(cur, src[1:]) // overlapping: copy moves
	prev := zero
	if y > 0 {
		prev = buf[(y-1)*stride : y*stride]
	}
	return unfilter(f, cur, prev, bpp)
}

// zlibHeaderOK checks a zlib header as compress/zlib does: deflate with a
// window of at most 32 KiB, the check bits right, and no preset dictionary
// (which a PNG never has, and image/png refuses).
func zlibHeaderOK(data []byte) bool {
	if len(data) < 2 {
		return false
	}
	cmf, flg := data[0], data[1]
	return cmf&0x0f == 8 && cmf>>4 <= 7 && (uint(cmf)<<8|uint(flg))%31 == 0 && flg&0x20 == 0
}

// pipelineRows: images of fewer than twice as many rows are decoded serially.
const pipelineRows = 16

// inflateAlongside inflates src into buf on another goroutine while this
// one unfilters the rows already there: inflate is the slower of the two
// and the machine has a second core. A row is unfiltered only once inflate
// is 32 KiB (its longest reach back) past the row's end, since unfiltering
// moves it over bytes inflate may still copy from.
func inflateAlongside(src, buf []byte, stride, h, bpp int, sum hash.Hash32) (int, error) {
	const window = 32 << 10
	var (
		avail      atomic.Int64 // bytes of buf inflate has finished
		stop       atomic.Bool
		used       int
		inflateErr error
	)
	wake := make(chan struct{}, 1)
	go func() {
		defer close(wake) // after used and inflateErr are set
		used, inflateErr = inflateInto(buf, src, func(n int) bool {
			avail.Store(int64(n))
			select {
			case wake <- struct{}{}:
			default:
			}
			return !stop.Load()
		})
	}()
	zero := make([]byte, stride)
	y, bad := 0, false
	for {
		_, open := <-wake
		n := int(avail.Load())
		for ; y < h && !bad; y++ {
			end := (y + 1) * (stride + 1)
			if end > n || (open && end+window > n) {
				break
			}
			if !unfilterPacked(buf, y, stride, bpp, zero, sum) {
				bad = true
				stop.Store(true) // inflate stops at its next report
			}
		}
		if !open {
			break
		}
	}
	if inflateErr != nil || bad || y != h {
		return 0, errNotFast
	}
	return used, nil
}

// unfilter reverses a row's PNG filter in place; false for an unknown filter.
func unfilter(f byte, cur, prev []byte, bpp int) bool {
	switch f {
	case 0:
	case 1: // Sub
		for i := bpp; i < len(cur); i++ {
			cur[i] += cur[i-bpp]
		}
	case 2: // Up
		prev = prev[:len(cur)]
		for i, p := range prev {
			cur[i] += p
		}
	case 3: // Average
		prev = prev[:len(cur)]
		for i := 0; i < bpp; i++ {
			cur[i] += prev[i] / 2
		}
		for i := bpp; i < len(cur); i++ {
			cur[i] += uint8((int(cur[i-bpp]) + int(prev[i])) / 2)
		}
	case 4:
		unfilterPaeth(cur, prev[:len(cur)], bpp)
	default:
		return false
	}
	return true
}

// unfilterPaeth walks each channel on its own, keeping the left (a) and
// upper-left (c) samples in registers; absolute values and the predictor's
// choice are written so that they compile to conditional moves, since on a
// photo the choice is close to random and branches mispredict.
func unfilterPaeth(cur, prev []byte, bpp int) {
	prev = prev[:len(cur)]
	switch {
	case bpp == 3 && len(cur)%3 == 0:
		unfilterPaeth3(cur, prev)
		return
	case bpp == 4 && len(cur)%4 == 0:
		unfilterPaeth4(cur, prev)
		return
	}
	for k := 0; k < bpp; k++ {
		var a, c int32
		for j := k; j < len(cur); j += bpp {
			b := int32(prev[j])
			pa := b - c
			pb := a - c
			pc := pa + pb
			pa = (pa ^ (pa >> 31)) - (pa >> 31)
			pb = (pb ^ (pb >> 31)) - (pb >> 31)
			pc = (pc ^ (pc >> 31)) - (pc >> 31)
			p := b
			if pc < pb {
				p = c
			}
			if pa <= min(pb, pc) {
				p = a
			}
			a = (int32(cur[j]) + p) & 0xff
			cur[j] = uint8(a)
			c = b
		}
	}
}

// unfilterPaeth3 runs the three channels of RGB side by side: three
// independent dependency chains the CPU overlaps, where one channel at a
// time waits on each sample before the next. (Written out by hand: the
// compiler does not inline a paeth function this size.)
func unfilterPaeth3(cur, prev []byte) {
	var a0, a1, a2, c0, c1, c2 int32
	for j := 0; j+3 <= len(cur); j += 3 {
		cu := cur[j : j+3 : j+3]
		pr := prev[j : j+3 : j+3]
		{
			b := int32(pr[0])
			pa := b - c0
			pb := a0 - c0
			pc := pa + pb
			pa = (pa ^ (pa >> 31)) - (pa >> 31)
			pb = (pb ^ (pb >> 31)) - (pb >> 31)
			pc = (pc ^ (pc >> 31)) - (pc >> 31)
			p := b
			if pc < pb {
				p = c0
			}
			if pa <= min(pb, pc) {
				p = a0
			}
			a0 = (int32(cu[0]) + p) & 0xff
			cu[0] = byte(a0)
			c0 = b
		}
		{
			b := int32(pr[1])
			pa := b - c1
			pb := a1 - c1
			pc := pa + pb
			pa = (pa ^ (pa >> 31)) - (pa >> 31)
			pb = (pb ^ (pb >> 31)) - (pb >> 31)
			pc = (pc ^ (pc >> 31)) - (pc >> 31)
			p := b
			if pc < pb {
				p = c1
			}
			if pa <= min(pb, pc) {
				p = a1
			}
			a1 = (int32(cu[1]) + p) & 0xff
			cu[1] = byte(a1)
			c1 = b
		}
		{
			b := int32(pr[2])
			pa := b - c2
			pb := a2 - c2
			pc := pa + pb
			pa = (pa ^ (pa >> 31)) - (pa >> 31)
			pb = (pb ^ (pb >> 31)) - (pb >> 31)
			pc = (pc ^ (pc >> 31)) - (pc >> 31)
			p := b
			if pc < pb {
				p = c2
			}
			if pa <= min(pb, pc) {
				p = a2
			}
			a2 = (int32(cu[2]) + p) & 0xff
			cu[2] = byte(a2)
			c2 = b
		}
	}
}

// unfilterPaeth4 is unfilterPaeth3 for RGBA.
func unfilterPaeth4(cur, prev []byte) {
	var a0, a1, a2, a3, c0, c1, c2, c3 int32
	for j := 0; j+4 <= len(cur); j += 4 {
		cu := cur[j : j+4 : j+4]
		pr := prev[j : j+4 : j+4]
		{
			b := int32(pr[0])
			pa := b - c0
			pb := a0 - c0
			pc := pa + pb
			pa = (pa ^ (pa >> 31)) - (pa >> 31)
			pb = (pb ^ (pb >> 31)) - (pb >> 31)
			pc = (pc ^ (pc >> 31)) - (pc >> 31)
			p := b
			if pc < pb {
				p = c0
			}
			if pa <= min(pb, pc) {
				p = a0
			}
			a0 = (int32(cu[0]) + p) & 0xff
			cu[0] = byte(a0)
			c0 = b
		}
		{
			b := int32(pr[1])
			pa := b - c1
			pb := a1 - c1
			pc := pa + pb
			pa = (pa ^ (pa >> 31)) - (pa >> 31)
			pb = (pb ^ (pb >> 31)) - (pb >> 31)
			pc = (pc ^ (pc >> 31)) - (pc >> 31)
			p := b
			if pc < pb {
				p = c1
			}
			if pa <= min(pb, pc) {
				p = a1
			}
			a1 = (int32(cu[1]) + p) & 0xff
			cu[1] = byte(a1)
			c1 = b
		}
		{
			b := int32(pr[2])
			pa := b - c2
			pb := a2 - c2
			pc := pa + pb
			pa = (pa ^ (pa >> 31)) - (pa >> 31)
			pb = (pb ^ (pb >> 31)) - (pb >> 31)
			pc = (pc ^ (pc >> 31)) - (pc >> 31)
			p := b
			if pc < pb {
				p = c2
			}
			if pa <= min(pb, pc) {
				p = a2
			}
			a2 = (int32(cu[2]) + p) & 0xff
			cu[2] = byte(a2)
			c2 = b
		}
		{
			b := int32(pr[3])
			pa := b - c3
			pb := a3 - c3
			pc := pa + pb
			pa = (pa ^ (pa >> 31)) - (pa >> 31)
			pb = (pb ^ (pb >> 31)) - (pb >> 31)
			pc = (pc ^ (pc >> 31)) - (pc >> 31)
			p := b
			if pc < pb {
				p = c3
			}
			if pa <= min(pb, pc) {
				p = a3
			}
			a3 = (int32(cu[3]) + p) & 0xff
			cu[3] = byte(a3)
			c3 = b
		}
	}
}
