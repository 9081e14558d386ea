package builtin

import (
	"encoding/binary"
	"errors"
	"sync"
)

// inflate decodes a raw deflate stream (RFC 1951) into a buffer that holds
// the whole output, which is also the window: no 32 KiB dictionary, no copy
// out of it, the bits read 8 bytes at a time and each Huffman code found by
// one table lookup (two for the rare long codes). On a photo's IDAT stream
// it is the decode's critical path, which the unfilter goroutine follows.
//
// It is stricter than compress/flate, never laxer: any stream it refuses is
// decoded again by image/png, whose errors the caller reports. The adler32
// of the output is checked by the caller.

// errInflate is any fault in the stream; image/png says which.
var errInflate = errors.New("inflate: corrupt or unexpected deflate stream")

// inflater is the state of one decode.
type inflater struct {
	in   []byte
	pos  int    // next byte of in to load into bits
	pad  int    // zero bytes loaded past the end of in
	bits uint64 // loaded bits, the next one lowest
	nb   uint   // number of loaded bits
	out  []byte // the whole output; its length is the size the stream must have
	n    int    // bytes written to out

	// report, when set, is told how many bytes of out are final, about
	// every reportEvery bytes; it returns false to stop the decode.
	report     func(n int) bool
	nextReport int

	lit, dist huffTable
}

const reportEvery = 64 << 10

// inflateInto decodes the deflate stream at the start of in into out, which
// the stream must fill exactly, and returns how many bytes of in the stream
// took (whole bytes: its last byte's unused bits included).
func inflateInto(out, in []byte, report func(n int) bool) (int, error) {
	f := &inflater{in: in, out: out, report: report, nextReport: reportEvery}
	for {
		f.need(3)
		final := f.bits&1 == 1
		typ := (f.bits >> 1) & 3
		f.drop(3)
		var err error
		switch typ {
		case 0:
			err = f.stored()
		case 1:
			fixed := fixedTables()
			err = f.huffmanBlock(&fixed.lit, &fixed.dist)
		case 2:
			if err = f.dynamicTables(); err == nil {
				err = f.huffmanBlock(&f.lit, &f.dist)
			}
		default:
			err = errInflate
		}
		if err != nil {
			return 0, err
		}
		if final {
			break
		}
	}
	if f.n != len(f.out) {
		return 0, errInflate // too little pixel data
	}
	f.drop(f.nb % 8) // the rest of the last byte
	used := f.pos + f.pad - int(f.nb/8)
	if used > len(f.in) {
		return 0, errInflate // the stream ran past its input
	}
	if f.report != nil {
		f.report(f.n)
	}
	return used, nil
}

// need makes sure at least k ≤ 56 bits are loaded, padding with zero bytes
// past the end of the input (inflateInto checks that none was used).
func (f *inflater) need(k uint) {
	for f.nb < k {
		if f.pos < len(f.in) {
			f.bits |= uint64(f.in[f.pos]) << f.nb
			f.pos++
		} else {
			f.pad++
		}
		f.nb += 8
	}
}

func (f *inflater) drop(k uint) {
	f.bits >>= k
	f.nb -= k
}

// take reads k ≤ 32 bits.
func (f *inflater) take(k uint) uint32 {
	f.need(k)
	v := uint32(f.bits & (1<<k - 1))
	f.drop(k)
	return v
}

// stored copies a stored block.
func (f *inflater) stored() error {
	f.drop(f.nb % 8)
	// Give the whole loaded bytes back, then read from in itself.
	f.pos = f.pos + f.pad - int(f.nb/8)
	f.pad, f.bits, f.nb = 0, 0, 0
	if f.pos+4 > len(f.in) {
		return errInflate
	}
	n := int(binary.LittleEndian.Uint16(f.in[f.pos:]))
	if uint16(n) != ^binary.LittleEndian.Uint16(f.in[f.pos+2:]) {
		return errInflate
	}
	f.pos += 4
	if f.pos+n > len(f.in) || f.n+n > len(f.out) {
		return errInflate
	}
	copy(f.out[f.n:], f.in[f.pos:f.pos+n])
	f.pos += n
	f.n += n
	return f.reported()
}

// reported tells report of the progress when it passed the next mark.
func (f *inflater) reported() error {
	if f.report != nil && f.n >= f.nextReport {
		f.nextReport = f.n + reportEvery
		if !f.report(f.n) {
			return errInflate
		}
	}
	return nil
}

// codeLengthOrder is the order of the code length code's lengths (RFC 1951 3.2.7).
var codeLengthOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

// dynamicTables reads a dynamic block's header into f.lit and f.dist.
func (f *inflater) dynamicTables() error {
	nlit := int(f.take(5)) + 257
	ndist := int(f.take(5)) + 1
	nclen := int(f.take(4)) + 4
	if nlit > 286 || ndist > 30 { // as compress/flate refuses them
		return errInflate
	}
	var clen [19]uint8
	for i := range nclen {
		clen[codeLengthOrder[i]] = uint8(f.take(3))
	}
	var cl huffTable
	if !cl.init(clen[:], 7) {
		return errInflate
	}
	var lens [286 + 30]uint8
	for i := 0; i < nlit+ndist; {
		f.need(7 + 7)
		e := cl.lookup(f.bits)
		l := uint(e & 0xff)
		if l == 0 {
			return errInflate
		}
		f.drop(l)
		sym := e >> 16 & 0x7fff
		if sym < 16 {
			lens[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var v uint8
		switch sym {
		case 16:
			if i == 0 {
				return errInflate
			}
			rep, v = 3+int(f.take(2)), lens[i-1]
		case 17:
			rep = 3 + int(f.take(3))
		default:
			rep = 11 + int(f.take(7))
		}
		if i+rep > nlit+ndist {
			return errInflate
		}
		for range rep {
			lens[i] = v
			i++
		}
	}
	if lens[256] == 0 { // a block that cannot end
		return errInflate
	}
	if !f.lit.init(lens[:nlit], litPrimaryBits) || !f.dist.init(lens[nlit:nlit+ndist], distPrimaryBits) {
		return errInflate
	}
	return nil
}

// Lengths and distances: base values and extra bits (RFC 1951 3.2.5).
var (
	lengthBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase    = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra   = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

// huffmanBlock decodes one block's symbols with the tables lt and dt. The
// literals, nearly all of a photo's symbols, have a loop of their own with
// as few live values as fit in registers: the bit reader, the tables, the
// output. Refills load 8 bytes at once while 8 remain (bits above nb are
// the next input bits, so loading them again changes nothing), byte by byte
// at the end, then zero padding that inflateInto refuses to have used.
func (f *inflater) huffmanBlock(lt, dt *huffTable) error {
	in, out := f.in, f.out
	pos, bits, nb, n := f.pos, f.bits, f.nb, f.n
	lprim := (*[1 << litPrimaryBits]uint32)(lt.entries)
	next := f.nextReport
	if f.report == nil {
		next = len(out) + 1
	}
	var err error
loop:
	for {
		var e uint32
		for {
			// 48 bits hold the longest length/distance pair: 15+5+15+13.
			if nb < 48 {
				if pos+8 <= len(in) {
					bits |= binary.LittleEndian.Uint64(in[pos:]) << nb
					k := (63 - nb) >> 3
					pos += int(k)
					nb += k << 3
				} else {
					pos, bits, nb = f.refillEnd(pos, bits, nb)
				}
			}
			e = lprim[bits&(1<<litPrimaryBits-1)]
			if e&linkFlag != 0 {
				e = lt.entries[int(e>>16&0x7fff)+int((bits>>litPrimaryBits)&(1<<(e>>8&0xff)-1))]
			}
			l := uint(e & 0xff)
			bits >>= l
			nb -= l
			if e >= 256<<16 {
				break
			}
			if n >= len(out) {
				err = errInflate // too much pixel data
				break loop
			}
			out[n] = byte(e >> 16)
			n++
		}
		sym := int(e >> 16 & 0x7fff)
		if sym == 256 {
			f.pos, f.bits, f.nb, f.n = pos, bits, nb, n
			return f.reported()
		}
		sym -= 257
		if sym >= 29 { // also invalidEntry
			err = errInflate
			break
		}
		ex := uint(lengthExtra[sym])
		length := int(lengthBase[sym]) + int(bits&(1<<ex-1))
		bits >>= ex
		nb -= ex

		e = dt.entries[bits&(1<<distPrimaryBits-1)]
		if e&linkFlag != 0 {
			e = dt.entries[int(e>>16&0x7fff)+int((bits>>distPrimaryBits)&(1<<(e>>8&0xff)-1))]
		}
		l := uint(e & 0xff)
		d := int(e >> 16 & 0x7fff)
		if d >= 30 {
			err = errInflate
			break
		}
		bits >>= l
		nb -= l
		ex = uint(distExtra[d])
		dist := int(distBase[d]) + int(bits&(1<<ex-1))
		bits >>= ex
		nb -= ex
		if dist > n || n+length > len(out) {
			err = errInflate
			break
		}
		if dist >= length {
			copy(out[n:n+length], out[n-dist:])
		} else if dist == 1 {
			b := out[n-1]
			s := out[n : n+length]
			for i := range s {
				s[i] = b
			}
		} else {
			s := out[n-dist : n+length]
			for i := dist; i < len(s); i++ {
				s[i] = s[i-dist]
			}
		}
		n += length
		if n >= next {
			f.n = n
			if err = f.reported(); err != nil {
				break
			}
			next = f.nextReport
		}
	}
	f.pos, f.bits, f.nb, f.n = pos, bits, nb, n
	return err
}

// refillEnd loads bytes one at a time near the end of the input, then zero
// padding, until more than 56 bits are loaded.
//
//go:noinline
func (f *inflater) refillEnd(pos int, bits uint64, nb uint) (int, uint64, uint) {
	for nb <= 56 {
		if pos < len(f.in) {
			bits |= uint64(f.in[pos]) << nb
			pos++
		} else {
			f.pad++
		}
		nb += 8
	}
	return pos, bits, nb
}

// Primary table sizes: codes up to this many bits take one lookup.
// Photos' literal codes run to 12 bits or so: 12 bits make the second
// lookup rare, and the table (16 KiB) stays in L1.
const (
	litPrimaryBits  = 12
	distPrimaryBits = 9
)

// linkFlag marks a primary entry that points to a subtable.
const linkFlag = 1 << 31

// invalidEntry stands where no code is: length 0 and a symbol no alphabet
// has, so the decode loop refuses it where it checks the symbol's range.
const invalidEntry = 0x7fff << 16

// huffTable decodes one canonical Huffman code, read LSB first. entries
// holds the primary table (1<<pbits entries) then the subtables. An entry
// is sym<<16 | length (the code's bits), invalidEntry, or, for a link,
// linkFlag | offset<<16 | subBits<<8.
type huffTable struct {
	entries []uint32
	pbits   uint
}

// lookup decodes the code at the bottom of bits (at least 15 bits loaded).
func (t *huffTable) lookup(bits uint64) uint32 {
	e := t.entries[bits&(1<<t.pbits-1)]
	if e&linkFlag != 0 {
		e = t.entries[int(e>>16&0x7fff)+int((bits>>t.pbits)&(1<<(e>>8&0xff)-1))]
	}
	return e
}

// init builds the table for code lengths (0 = unused symbol). It refuses
// what compress/flate refuses: an over-subscribed code, or an incomplete
// one other than a single code of length 1. A code with no symbols is
// accepted (a block with no distances); every lookup in it fails.
func (t *huffTable) init(lengths []uint8, pbits uint) bool {
	if len(lengths) > 288 || pbits > litPrimaryBits {
		return false
	}
	var count [16]int
	maxLen := 0
	for _, l := range lengths {
		if l > 15 {
			return false
		}
		count[l]++
		maxLen = max(maxLen, int(l))
	}
	count[0] = 0
	t.pbits = pbits
	size := 1 << t.pbits
	left := 1
	for l := 1; l <= 15; l++ {
		left = left<<1 - count[l]
		if left < 0 {
			return false
		}
	}
	if maxLen > 0 && left > 0 && !(maxLen == 1 && count[1] == 1) {
		return false
	}
	// A complete code writes every entry below; only an empty or a
	// degenerate one leaves some to mark invalid. (A photo has a dynamic
	// block every few KiB: clearing 4096 entries each time showed.)
	if cap(t.entries) >= size {
		t.entries = t.entries[:size]
	} else {
		t.entries = make([]uint32, size)
	}
	if maxLen == 0 || left > 0 {
		for i := range t.entries {
			t.entries[i] = invalidEntry
		}
	}
	if maxLen == 0 {
		return true
	}
	var next [16]int
	code := 0
	for l := 1; l <= 15; l++ {
		code = (code + count[l-1]) << 1
		next[l] = code
	}
	// Codes longer than pbits: the longest per primary prefix sizes its
	// subtable. (Arrays, not maps: a photo has a dynamic block every few
	// KiB, and each builds its tables.)
	pmask := size - 1
	var subLen [1 << litPrimaryBits]uint8
	var codes [288]uint16
	long := false
	for sym, l := range lengths {
		if l == 0 {
			continue
		}
		c := reverseBits(next[l], int(l))
		next[l]++
		codes[sym] = uint16(c)
		if uint(l) > t.pbits {
			long = true
			subLen[c&pmask] = max(subLen[c&pmask], l-uint8(t.pbits))
		}
	}
	for prefix := 0; long && prefix < size; prefix++ {
		sb := subLen[prefix]
		if sb == 0 {
			continue
		}
		off := len(t.entries)
		if off > 0x7fff {
			return false
		}
		for range 1 << sb {
			t.entries = append(t.entries, invalidEntry)
		}
		t.entries[prefix] = linkFlag | uint32(off)<<16 | uint32(sb)<<8
	}
	for sym, l := range lengths {
		if l == 0 {
			continue
		}
		c, e := int(codes[sym]), uint32(sym)<<16|uint32(l)
		if int(l) <= int(t.pbits) {
			for i := c; i < size; i += 1 << l {
				t.entries[i] = e
			}
			continue
		}
		link := t.entries[c&pmask]
		off, sb := int(link>>16&0x7fff), int(link>>8&0xff)
		sl := int(l) - int(t.pbits)
		for i := c >> t.pbits; i < 1<<sb; i += 1 << sl {
			t.entries[off+i] = e
		}
	}
	return true
}

// reverseBits reverses the low n bits of c: deflate sends Huffman codes
// most significant bit first into an LSB-first stream.
func reverseBits(c, n int) int {
	r := 0
	for range n {
		r = r<<1 | c&1
		c >>= 1
	}
	return r
}

// fixedTables are the tables of fixed-Huffman blocks (RFC 1951 3.2.6),
// built once.
var fixedTables = sync.OnceValue(func() *struct{ lit, dist huffTable } {
	var lens [288]uint8
	for i := range lens {
		switch {
		case i < 144:
			lens[i] = 8
		case i < 256:
			lens[i] = 9
		case i < 280:
			lens[i] = 7
		default:
			lens[i] = 8
		}
	}
	var dl [32]uint8
	for i := range dl {
		dl[i] = 5
	}
	t := &struct{ lit, dist huffTable }{}
	if !t.lit.init(lens[:], litPrimaryBits) || !t.dist.init(dl[:], distPrimaryBits) {
		panic("builtin: fixed Huffman tables")
	}
	return t
})
