package protocol

import (
	"math"
	"math/bits"
	"strconv"
	"sync"
	"unsafe"
)

// DType is a tensor's element type.
type DType string

const (
	Float32 DType = "float32" // ComfyUI's IMAGE and MASK: values in 0..1
	Uint8   DType = "uint8"   // already-converted pixels, 0..255
	// Unorm8 is an 8-bit image as ComfyUI loads it, kept in its bytes: the
	// element v stands for the float32 float32(v)/255 (Unorm8Float[v]),
	// which is what np.array(img).astype(np.float32) / 255.0 makes. A
	// sender converts it with ComfyUI's float path, so the pixels sent are
	// those of the float32 tensor it stands for; Float32s converts it once.
	Unorm8 DType = "unorm8"
)

// Unorm8Float maps a Unorm8 element to the float32 it stands for: a float32
// division, as numpy divides a float32 array by 255.0.
var Unorm8Float = func() (u [256]float32) {
	for i := range u {
		u[i] = float32(i) / 255
	}
	return
}()

// Size is the number of bytes of one element, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case Float32:
		return 4
	case Uint8, Unorm8:
		return 1
	}
	return 0
}

// Tensor is a dense, row-major tensor. Data holds the elements in little-endian
// order, exactly len = product(Shape) * DType.Size() bytes.
//
// ComfyUI's IMAGE is float32 [B,H,W,C] with C 1, 3 or 4; MASK is float32 [B,H,W].
type Tensor struct {
	DType DType
	Shape []int
	Data  []byte
	// Items, when not nil, makes the tensor a view: item i of the first
	// dimension is Items[i] (each exactly one item's bytes), Data is nil,
	// and the items share the memory of the tensors they came from, so a
	// repeated or joined batch costs no pixel bytes. Read a view with Item or
	// Bytes; a node that writes calls Writable first (copy on write).
	Items [][]byte

	// floats caches the float32 form of a Unorm8 tensor, made once by
	// Float32s for the nodes that compute in floats.
	floats *[]float32
}

// floatsMu guards every Tensor's floats cache; conversions are rare and
// short next to the nodes that ask for them.
var floatsMu sync.Mutex

// NewFloat32 returns a zeroed float32 tensor of the given shape. It does not
// validate the shape; call Validate before trusting one from outside.
func NewFloat32(shape ...int) *Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return FromFloat32(make([]float32, n), shape...)
}

// FromFloat32 wraps v as a float32 tensor without copying it.
func FromFloat32(v []float32, shape ...int) *Tensor {
	var data []byte
	if len(v) > 0 {
		data = unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*4)
	}
	return &Tensor{DType: Float32, Shape: append([]int(nil), shape...), Data: data}
}

// FromUint8 wraps v as a uint8 tensor without copying it.
func FromUint8(v []byte, shape ...int) *Tensor {
	return &Tensor{DType: Uint8, Shape: append([]int(nil), shape...), Data: v}
}

// Item returns the bytes of item i of the first dimension (one image of a
// batch), from Data or from a view's Items. Do not modify them.
func (t *Tensor) Item(i int) []byte {
	if t.Items != nil {
		return t.Items[i]
	}
	n := len(t.Data) / t.Shape[0]
	return t.Data[i*n : (i+1)*n : (i+1)*n]
}

// IsView reports whether t shares its items' memory with other tensors.
func (t *Tensor) IsView() bool { return t.Items != nil }

// ByteLen is the size of the elements in bytes, for a view too.
func (t *Tensor) ByteLen() int {
	if t.Items == nil {
		return len(t.Data)
	}
	n := 0
	for _, it := range t.Items {
		n += len(it)
	}
	return n
}

// OwnBytes is the memory t holds of its own: len(Data), and 0 for a view,
// whose items belong to the tensors it was made from.
func (t *Tensor) OwnBytes() int64 { return int64(len(t.Data)) }

// Bytes returns the elements as one slice: Data itself, or, for a view, a
// new contiguous copy (4-byte aligned) that t does not keep.
func (t *Tensor) Bytes() []byte {
	if t.Items == nil {
		return t.Data
	}
	out := alignedBytes(t.ByteLen())
	off := 0
	for _, it := range t.Items {
		off += copy(out[off:], it)
	}
	return out
}

// Writable makes t own its elements before a node writes them: a view is
// copied into Data once (copy on write) and stops sharing; a tensor that
// already owns its Data is left as it is.
func (t *Tensor) Writable() []byte {
	if t.Items != nil {
		t.Data = t.Bytes()
		t.Items = nil
	}
	floatsMu.Lock()
	t.floats = nil // the writer may change what the cached floats stand for
	floatsMu.Unlock()
	return t.Data
}

func alignedBytes(n int) []byte {
	if n == 0 {
		return nil
	}
	f := make([]float32, (n+3)/4)
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), n)
}

// FromUnorm8 wraps v as a Unorm8 tensor without copying it.
func FromUnorm8(v []byte, shape ...int) *Tensor {
	return &Tensor{DType: Unorm8, Shape: append([]int(nil), shape...), Data: v}
}

// Float32s returns the data of a float32 tensor as []float32, sharing memory
// when Data is 4-byte aligned (it always is when the tensor was made by this
// package or by the plugin transport) and copying otherwise. For a Unorm8
// tensor it returns the float32 values the bytes stand for, converted on the
// first call and kept with the tensor: do not modify them.
func (t *Tensor) Float32s() []float32 {
	if t.DType == Unorm8 {
		return t.unorm8Floats()
	}
	if t.Items != nil {
		return Float32sOf(t.Bytes())
	}
	return Float32sOf(t.Data)
}

// Float32sOf views little-endian float32 bytes as []float32, sharing them
// when 4-byte aligned and copying otherwise.
func Float32sOf(data []byte) []float32 {
	n := len(data) / 4
	if n == 0 {
		return nil
	}
	p := unsafe.Pointer(&data[0])
	if uintptr(p)%4 == 0 {
		return unsafe.Slice((*float32)(p), n)
	}
	out := make([]float32, n)
	for i := range out {
		b := data[4*i:]
		out[i] = math.Float32frombits(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
	}
	return out
}

func (t *Tensor) unorm8Floats() []float32 {
	floatsMu.Lock()
	defer floatsMu.Unlock()
	if t.floats != nil && len(*t.floats) == t.ByteLen() {
		return *t.floats
	}
	data := t.Bytes()
	out := make([]float32, len(data))
	for i, v := range data {
		out[i] = Unorm8Float[v]
	}
	t.floats = &out
	return out
}

// AsFloat32 returns t as a float32 tensor: t itself when it is one, else a
// tensor sharing the float32 values Float32s converts once and caches (a
// Uint8 tensor's bytes read as Unorm8's). A
// node that computes in floats takes its inputs through it.
func (t *Tensor) AsFloat32() *Tensor {
	if t.DType == Float32 {
		return t
	}
	return FromFloat32(t.unorm8Floats(), t.Shape...) // Uint8 IMAGEs too stand for v/255 in float nodes
}

// maxElements keeps byte counts (elements × 4) far inside int, also where int
// is 32 bits.
const maxElements = min(math.MaxInt32*(1<<16), math.MaxInt/8)

// Elements returns the product of the shape, refusing zero or negative
// dimensions and products that overflow int.
func (t *Tensor) Elements() (int, error) {
	if len(t.Shape) == 0 {
		return 0, &ShapeError{Shape: t.Shape, Reason: "no dimensions"}
	}
	n := uint64(1)
	for _, d := range t.Shape {
		if d <= 0 {
			return 0, &ShapeError{Shape: t.Shape, Reason: "every dimension must be at least 1"}
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > maxElements {
			return 0, &ShapeError{Shape: t.Shape, Reason: "element count exceeds limit " + strconv.FormatUint(maxElements, 10)}
		}
		n = lo
	}
	return int(n), nil
}

// Validate checks that the dtype is known and that Data has exactly the length
// the shape promises.
func (t *Tensor) Validate() error {
	size := t.DType.Size()
	if size == 0 {
		return &DTypeError{DType: t.DType}
	}
	n, err := t.Elements()
	if err != nil {
		return err
	}
	if t.Items != nil {
		if t.Data != nil {
			return &ShapeError{Shape: t.Shape, Reason: "a view has Items and no Data"}
		}
		if len(t.Items) != t.Shape[0] {
			return &ShapeError{Shape: t.Shape, Reason: "view has " + strconv.Itoa(len(t.Items)) + " items, shape needs " + strconv.Itoa(t.Shape[0])}
		}
		per := n / t.Shape[0] * size
		for i, it := range t.Items {
			if len(it) != per {
				return &ShapeError{Shape: t.Shape, Reason: "view item " + strconv.Itoa(i) + " is " + strconv.Itoa(len(it)) + " bytes, shape needs " + strconv.Itoa(per)}
			}
		}
		return nil
	}
	if want := n * size; len(t.Data) != want {
		return &ShapeError{Shape: t.Shape, Reason: "data is " + strconv.Itoa(len(t.Data)) + " bytes, shape needs " + strconv.Itoa(want)}
	}
	return nil
}

// ImageDims returns batch, height, width and channels of an IMAGE tensor
// [B,H,W,C] after checking it: Validate, rank 4, C in {1,3,4}, and each image
// within lim.
func (t *Tensor) ImageDims(lim ImageLimits) (b, h, w, c int, err error) {
	if err = t.Validate(); err != nil {
		return
	}
	if len(t.Shape) != 4 {
		err = &ShapeError{Shape: t.Shape, Reason: "IMAGE must be [batch,height,width,channels]"}
		return
	}
	b, h, w, c = t.Shape[0], t.Shape[1], t.Shape[2], t.Shape[3]
	if c != 1 && c != 3 && c != 4 {
		err = &ShapeError{Shape: t.Shape, Reason: "channels must be 1, 3 or 4, got " + strconv.Itoa(c)}
		return
	}
	err = lim.CheckSize(w, h)
	return
}

// MaskDims returns batch, height and width of a MASK tensor [B,H,W] after
// checking it like ImageDims.
func (t *Tensor) MaskDims(lim ImageLimits) (b, h, w int, err error) {
	if err = t.Validate(); err != nil {
		return
	}
	if len(t.Shape) != 3 {
		err = &ShapeError{Shape: t.Shape, Reason: "MASK must be [batch,height,width]"}
		return
	}
	b, h, w = t.Shape[0], t.Shape[1], t.Shape[2]
	err = lim.CheckSize(w, h)
	return
}

// CheckFinite returns a *NonFiniteError for the first NaN or ±Inf of a float32
// tensor, and nil for any other dtype.
func (t *Tensor) CheckFinite() error {
	if t.DType != Float32 {
		return nil
	}
	for i, v := range t.Float32s() {
		if v-v != 0 { // NaN or ±Inf
			return &NonFiniteError{Index: i, Value: v}
		}
	}
	return nil
}
