package sendimage

import (
	"encoding/binary"
	"math"
	"unsafe"

	"github.com/nodecast/nodecast/protocol"
)

// ConvertOptions say which IMAGE tensors NewImages accepts. The zero value
// applies protocol's default limits and refuses NaN and ±Inf.
type ConvertOptions struct {
	Limits protocol.ImageLimits // zero value: protocol.DefaultMaxSide and DefaultMaxPixels
	// AllowNonFinite converts NaN to 0, +Inf to 255 and -Inf to 0, as ComfyUI
	// does, instead of refusing the tensor with a *protocol.NonFiniteError.
	// Default false: a NaN is almost always a broken workflow, and a black
	// image hides it.
	AllowNonFinite bool
}

// Images is a checked IMAGE tensor [B,H,W,C] whose images convert to Pixels
// one at a time, so a batch never needs all its pixels in memory at once.
type Images struct {
	Batch, Height, Width, Channels int

	t     *protocol.Tensor
	same  []int      // per image: the first image of the batch that is the same memory (itself if none)
	float bool       // float32 data (else bytes, read as they are or through table)
	exact []bool     // per image: holds values for which only the exact kernel is right
	table *[256]byte // Unorm8 whose float path changes some values: map bytes through it
}

// unorm8Pixels is ComfyUI's float path for every Unorm8 byte:
// uint8(clip(255 * float32(v/255))), computed by the same kernel as float32
// tensors, so a Unorm8 tensor sends exactly the pixels of the float32 tensor
// it stands for. unorm8Identity says that the path gives every byte back
// (it does with float32 arithmetic), so a Unorm8 image is sent from its own
// memory without a copy; the table stays for platforms where it would not.
var unorm8Pixels, unorm8Identity = func() (t [256]byte, id bool) {
	convertExact(t[:], protocol.Unorm8Float[:])
	id = true
	for i, v := range t {
		id = id && int(v) == i
	}
	return t, id
}()

// NewImages checks t (shape, dtype, data length, limits and, unless
// AllowNonFinite, finiteness of every element) before anything is converted.
// A NaN or ±Inf is reported as a *protocol.NonFiniteError whose Index is the
// element's index in the flat data of the whole tensor.
func NewImages(t *protocol.Tensor, opts ConvertOptions) (*Images, error) {
	if t == nil {
		return nil, &protocol.ShapeError{Reason: "nil IMAGE tensor"}
	}
	b, h, w, c, err := t.ImageDims(opts.Limits)
	if err != nil {
		return nil, err
	}
	im := &Images{Batch: b, Height: h, Width: w, Channels: c, t: t, same: sameMemory(t, b)}
	if t.DType == protocol.Unorm8 && !unorm8Identity {
		im.table = &unorm8Pixels
	}
	if t.DType != protocol.Float32 {
		return im, nil
	}
	im.float = true
	im.exact = make([]bool, b)
	n := h * w * c
	for i := range b {
		if j := im.same[i]; j != i { // checked as image j, whose bytes these are
			im.exact[i] = im.exact[j]
			continue
		}
		if !outsideFastRange(t.Item(i)) {
			continue
		}
		im.exact[i] = true
		if opts.AllowNonFinite {
			continue
		}
		if err := checkFinite(protocol.Float32sOf(t.Item(i)), i*n); err != nil {
			return nil, err
		}
	}
	return im, nil
}

// sameMemory maps each item of t's first dimension to the first item whose
// bytes are the same memory (same address and length; one tensor has one
// dtype and shape): the items of a view that repeats an image, as
// RepeatImageBatch makes. A tensor that owns its Data has distinct items.
func sameMemory(t *protocol.Tensor, b int) []int {
	same := make([]int, b)
	var first map[*byte]int
	if t.IsView() {
		first = make(map[*byte]int, 1)
	}
	for i := range same {
		same[i] = i
		if first == nil {
			continue
		}
		it := t.Item(i)
		if len(it) == 0 {
			continue
		}
		p := unsafe.SliceData(it)
		if j, ok := first[p]; ok {
			same[i] = j
		} else {
			first[p] = i
		}
	}
	return same
}

// SameAs returns the first image of the batch whose pixels are the same
// memory as image i's, i itself when there is none. Images i and SameAs(i)
// convert and encode to the same bytes, so a sender encodes only the first.
// The tensor's memory is read-only while Images uses it; a node that writes
// an item makes its tensor Writable first, which gives every item its own
// memory (copy on write), so no two items of it are the same any more.
func (im *Images) SameAs(i int) int { return im.same[i] }

// Len is the number of images in the batch.
func (im *Images) Len() int { return im.Batch }

// Pixels converts image i of the batch. It reuses dst's buffer when dst is
// not nil and its buffer is large enough. For a uint8 tensor (and a Unorm8
// one whose float path is the identity) the result is a
// new view of the tensor's data, not a copy (do not modify it), and dst is
// not touched.
func (im *Images) Pixels(i int, dst *Pixels) (*Pixels, error) {
	if i < 0 || i >= im.Batch {
		return nil, &protocol.LimitError{What: "image index", Value: int64(i), Limit: int64(im.Batch - 1)}
	}
	if im.table != nil {
		dst = im.reuse(dst)
		for j, v := range im.t.Item(i) {
			dst.Pix[j] = im.table[v]
		}
		return dst, nil
	}
	if !im.float { // dst is left alone: its buffer must never become a view of the tensor
		return &Pixels{W: im.Width, H: im.Height, C: im.Channels, Pix: im.t.Item(i)}, nil
	}
	dst = im.reuse(dst)
	src := protocol.Float32sOf(im.t.Item(i))
	if im.exact[i] {
		convertExact(dst.Pix, src)
	} else {
		convertInRange(dst.Pix, src)
	}
	return dst, nil
}

// reuse sizes dst (a new Pixels when nil) for one of im's images, keeping
// its buffer when it is large enough.
func (im *Images) reuse(dst *Pixels) *Pixels {
	if dst == nil {
		dst = &Pixels{}
	}
	n := im.Height * im.Width * im.Channels
	dst.W, dst.H, dst.C = im.Width, im.Height, im.Channels
	if cap(dst.Pix) < n {
		dst.Pix = make([]byte, n)
	}
	dst.Pix = dst.Pix[:n]
	return dst
}

// ToPixels checks t like NewImages and converts its image i.
func ToPixels(t *protocol.Tensor, i int, opts ConvertOptions) (*Pixels, error) {
	im, err := NewImages(t, opts)
	if err != nil {
		return nil, err
	}
	return im.Pixels(i, nil)
}

// ConvertFloats writes uint8(clip(255*x, 0, 255)) of every src element to
// dst, truncating as ComfyUI's numpy code does; NaN becomes 0, +Inf 255 and
// -Inf 0. dst must be at least as long as src.
func ConvertFloats(dst []byte, src []float32) {
	dst = dst[:len(src)]
	const block = 1 << 14 // elements: 64 KiB of input stays in L2 between the scan and the conversion
	for len(src) > 0 {
		k := min(block, len(src))
		s := src[:k]
		if outsideFastRange(float32Bytes(s)) {
			convertExact(dst[:k], s)
		} else {
			convertInRange(dst[:k], s)
		}
		src, dst = src[k:], dst[k:]
	}
}

// fastLimitBits is the bit pattern of 2^23: below it in magnitude,
// int32(255*x) is exact, so convertInRange may clamp integers instead of floats.
const fastLimitBits = 0x4b000000

// outsideFastRange reports whether any little-endian float32 in b is NaN,
// ±Inf or at least 2^23 in magnitude. It tests two elements per 64-bit word:
// adding (2^31 - limit) to each masked half sets that half's top bit exactly
// when the half is at or above the limit, and no carry crosses the halves.
func outsideFastRange(b []byte) bool {
	const (
		mask = 0x7fffffff_7fffffff
		bias = (0x80000000 - fastLimitBits) * (1 + 1<<32)
		top  = 0x80000000_80000000
	)
	n := len(b) &^ 31
	var acc uint64
	for i := 0; i < n; i += 32 {
		s := b[i : i+32 : i+32]
		acc |= (binary.LittleEndian.Uint64(s)&mask + bias) | (binary.LittleEndian.Uint64(s[8:])&mask + bias) |
			(binary.LittleEndian.Uint64(s[16:])&mask + bias) | (binary.LittleEndian.Uint64(s[24:])&mask + bias)
	}
	for i := n; i+4 <= len(b); i += 4 {
		acc |= uint64(binary.LittleEndian.Uint32(b[i:])&0x7fffffff + (0x80000000 - fastLimitBits))
	}
	return acc&top != 0
}

// convertInRange is the fast kernel, valid only when every |x| < 2^23: the
// float-to-int conversion is then exact on every platform, and the clamps
// compile to conditional moves instead of unpredictable branches.
func convertInRange(dst []byte, src []float32) {
	n := len(src) &^ 3
	dst = dst[:len(src)]
	for i := 0; i < n; i += 4 {
		s := src[i : i+4 : i+4]
		d := dst[i : i+4 : i+4]
		a0 := int32(s[0] * 255)
		a1 := int32(s[1] * 255)
		a2 := int32(s[2] * 255)
		a3 := int32(s[3] * 255)
		d[0] = clampByte(a0)
		d[1] = clampByte(a1)
		d[2] = clampByte(a2)
		d[3] = clampByte(a3)
	}
	convertExact(dst[n:], src[n:])
}

func clampByte(a int32) byte {
	if a < 0 {
		a = 0
	}
	if a > 255 {
		a = 255
	}
	return byte(a)
}

// convertExact is right for every float32, NaN and infinities included.
func convertExact(dst []byte, src []float32) {
	dst = dst[:len(src)]
	for i, x := range src {
		v := x * 255 // float32 multiply, as numpy's 255.0 * float32 array
		switch {
		case v >= 255: // also +Inf
			dst[i] = 255
		case v > 0:
			dst[i] = uint8(v) // truncates toward zero
		default: // also NaN and -Inf
			dst[i] = 0
		}
	}
}

// float32Bytes views s as little-endian bytes (the layout of a tensor's Data).
func float32Bytes(s []float32) []byte {
	if len(s) == 0 {
		return nil
	}
	return protocol.FromFloat32(s, len(s)).Data
}

// checkFinite returns a *protocol.NonFiniteError for the first NaN or ±Inf.
func checkFinite(s []float32, base int) error {
	for j, v := range s {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return &protocol.NonFiniteError{Index: base + j, Value: v}
		}
	}
	return nil
}

// copies reports whether Pixels writes into a buffer (float32 data, or bytes
// through a table) rather than returning views of the tensor.
func (im *Images) copies() bool { return im.float || im.table != nil }
