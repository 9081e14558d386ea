package plugins

import (
	"errors"
	"io"
	"math"
	"strconv"

	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/protocol/pluginpb"
)

const (
	// chunkSize is the data carried by one TensorChunk: far below any gRPC
	// message limit, large enough that per-message costs vanish.
	chunkSize = 1 << 20
	// maxMessageBytes is the gRPC message limit both sides set, so a single
	// large JSON input never meets gRPC's 4 MiB default: a run request
	// carries its string inputs whole, and the host admits request bodies
	// up to MaxInputBytes.
	maxMessageBytes = MaxInputBytes + 64<<20
	// maxPartBytes bounds one image part, far below any message limit.
	maxPartBytes = 64<<20 - 64<<10
)

// transferError is a tensor stream that breaks the contract, as opposed to a
// transport error.
type transferError struct{ reason string }

func (e *transferError) Error() string { return e.reason }

// shapeFromProto converts a wire shape, refusing dimensions that do not fit an int.
func shapeFromProto(s []int64) ([]int, error) {
	out := make([]int, len(s))
	for i, d := range s {
		if d < 0 || d > math.MaxInt32*(1<<16) {
			return nil, &transferError{"dimension " + strconv.FormatInt(d, 10) + " is out of range"}
		}
		out[i] = int(d)
	}
	return out, nil
}

func shapeToProto(s []int) []int64 {
	out := make([]int64, len(s))
	for i, d := range s {
		out[i] = int64(d)
	}
	return out
}

// allocTensor allocates a zeroed tensor for a header, once, at its full size.
// Float32 data is allocated as []float32 so that it is 4-byte aligned and
// Float32s shares it instead of copying.
func allocTensor(h *pluginpb.TensorRef) (*protocol.Tensor, error) {
	shape, err := shapeFromProto(h.GetShape())
	if err != nil {
		return nil, err
	}
	t := &protocol.Tensor{DType: protocol.DType(h.GetDtype()), Shape: shape}
	if t.DType.Size() == 0 {
		return nil, &protocol.DTypeError{DType: t.DType}
	}
	n, err := t.Elements()
	if err != nil {
		return nil, err
	}
	switch t.DType {
	case protocol.Float32:
		return protocol.FromFloat32(make([]float32, n), shape...), nil
	default:
		t.Data = make([]byte, n*t.DType.Size())
		return t, nil
	}
}

// sendTensor streams t in chunks; the first carries header.
// A view's items are streamed one after the other, straight from the memory
// they share; the receiver gets one contiguous tensor.
func sendTensor(t *protocol.Tensor, header *pluginpb.TensorRef, send func(*pluginpb.TensorChunk) error) error {
	parts := t.Items
	if parts == nil {
		parts = [][]byte{t.Data}
	}
	first := true
	for _, data := range parts {
		for first || len(data) > 0 {
			n := min(len(data), chunkSize)
			c := &pluginpb.TensorChunk{Data: data[:n]}
			if first {
				c.Header = header
				first = false
			}
			if err := send(c); err != nil {
				return err
			}
			data = data[n:]
		}
	}
	return nil
}

// receiveTensor reads chunks until io.EOF into one allocation sized from the
// first chunk's header, refusing any byte count that disagrees with it. check,
// when not nil, vets the header before anything is allocated. Transport errors
// come back as they are; contract violations as *transferError or the
// protocol package's typed errors.
func receiveTensor(recv func() (*pluginpb.TensorChunk, error), check func(*pluginpb.TensorRef) error) (*protocol.Tensor, *pluginpb.TensorRef, error) {
	c, err := recv()
	if errors.Is(err, io.EOF) {
		return nil, nil, &transferError{"no chunks"}
	}
	if err != nil {
		return nil, nil, err
	}
	header := c.GetHeader()
	if header == nil {
		return nil, nil, &transferError{"first chunk has no header"}
	}
	if check != nil {
		if err := check(header); err != nil {
			return nil, nil, err
		}
	}
	t, err := allocTensor(header)
	if err != nil {
		return nil, nil, err
	}
	off := 0
	for i := 0; ; i++ {
		if i > 0 && c.GetHeader() != nil {
			return nil, nil, &transferError{"header in a chunk after the first"}
		}
		if len(c.GetData()) > len(t.Data)-off {
			return nil, nil, &transferError{"more than the " + strconv.Itoa(len(t.Data)) + " bytes the header's shape " +
				shapeString(t.Shape) + " promises"}
		}
		off += copy(t.Data[off:], c.GetData())
		c, err = recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
	}
	if off != len(t.Data) {
		return nil, nil, &transferError{"got " + strconv.Itoa(off) + " bytes, the header's shape " +
			shapeString(t.Shape) + " promises " + strconv.Itoa(len(t.Data))}
	}
	if err := t.Validate(); err != nil {
		return nil, nil, err
	}
	return t, header, nil
}

func shapeString(s []int) string {
	b := []byte{'['}
	for i, d := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(d), 10)
	}
	return string(append(b, ']'))
}
