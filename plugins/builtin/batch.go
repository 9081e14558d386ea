package builtin

import (
	"context"
	"math"
	"slices"
	"strconv"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// maxResolution is ComfyUI's MAX_RESOLUTION, the largest width or height its
// nodes accept.
const maxResolution = 16384

// emptyImage is ComfyUI's EmptyImage: a batch of one solid colour.
type emptyImage struct{ opts Options }

func (n *emptyImage) Spec() plugins.Spec {
	color := intInput("color", 0, 0, 0xFFFFFF, "Fill colour as 0xRRGGBB.")
	color.Options["display"] = "color"
	return plugins.Spec{
		ClassType:   "EmptyImage",
		DisplayName: "EmptyImage",
		Category:    categoryImage,
		Description: "Makes a batch of images filled with one colour.",
		Inputs: []plugins.Input{
			intInput("width", 512, 1, maxResolution, "Width in pixels."),
			intInput("height", 512, 1, maxResolution, "Height in pixels."),
			intInput("batch_size", 1, 1, 4096, "Number of images."),
			color,
		},
		Outputs: []plugins.Output{imageOut},
	}
}

func (n *emptyImage) Run(ctx context.Context, call *plugins.Call) (plugins.Result, error) {
	w, err := intIn(call, "width", 512, 1, maxResolution)
	if err != nil {
		return plugins.Result{}, err
	}
	h, err := intIn(call, "height", 512, 1, maxResolution)
	if err != nil {
		return plugins.Result{}, err
	}
	b, err := intIn(call, "batch_size", 1, 1, 4096)
	if err != nil {
		return plugins.Result{}, err
	}
	c, err := intIn(call, "color", 0, 0, 0xFFFFFF)
	if err != nil {
		return plugins.Result{}, err
	}
	if err := call.Limits.Image.CheckSize(w, h); err != nil {
		return plugins.Result{}, err
	}
	if err := n.opts.checkBatch(b, w, h); err != nil {
		return plugins.Result{}, err
	}
	if err := call.Limits.CheckTensorBytes("EmptyImage output", int64(b)*int64(h)*int64(w)*3*4); err != nil {
		return plugins.Result{}, err
	}
	// ComfyUI: torch.full(..., ((color >> 16) & 0xFF) / 0xFF), a Python
	// float division rounded to float32.
	rgb := [3]float32{
		float32(float64((c>>16)&0xFF) / 0xFF),
		float32(float64((c>>8)&0xFF) / 0xFF),
		float32(float64(c&0xFF) / 0xFF),
	}
	data := make([]float32, b*h*w*3)
	for i := 0; i < len(data); i += 3 {
		data[i], data[i+1], data[i+2] = rgb[0], rgb[1], rgb[2]
	}
	return plugins.Result{Outputs: []any{protocol.FromFloat32(data, b, h, w, 3)}}, nil
}

// repeatImageBatch is ComfyUI's RepeatImageBatch: the whole batch, amount
// times over (image.repeat((amount,1,1,1))), in the input's dtype.
type repeatImageBatch struct{ opts Options }

func (n *repeatImageBatch) Spec() plugins.Spec {
	return plugins.Spec{
		ClassType:   "RepeatImageBatch",
		DisplayName: "RepeatImageBatch",
		Category:    categoryBatch,
		Description: "Repeats a batch of images.",
		Inputs: []plugins.Input{
			imageInput("image", "The batch to repeat."),
			intInput("amount", 1, 1, 4096, "How many times the batch appears in the output."),
		},
		Outputs: []plugins.Output{imageOut},
	}
}

func (n *repeatImageBatch) Run(ctx context.Context, call *plugins.Call) (plugins.Result, error) {
	t, err := call.Tensor("image")
	if err != nil {
		return plugins.Result{}, err
	}
	amount, err := intIn(call, "amount", 1, 1, 4096)
	if err != nil {
		return plugins.Result{}, err
	}
	b, h, w, _, err := t.ImageDims(call.Limits.Image)
	if err != nil {
		return plugins.Result{}, err
	}
	if err := n.opts.checkBatch(b*amount, w, h); err != nil {
		return plugins.Result{}, err
	}
	// The output is a view: amount × b items sharing the input's memory, as
	// torch's repeat would not but nothing downstream can tell (nodes that
	// write call Writable, which copies). It costs no new tensor bytes.
	out := &protocol.Tensor{DType: t.DType, Shape: append([]int{b * amount}, t.Shape[1:]...),
		Items: make([][]byte, 0, b*amount)}
	for range amount {
		for i := range b {
			out.Items = append(out.Items, t.Item(i))
		}
	}
	return plugins.Result{Outputs: []any{out}}, nil
}

// imageBatch is ComfyUI's ImageBatch: image2 appended to image1. When the
// sizes differ, image2 is resized to image1's with common_upscale(...,
// "bilinear", "center"): the centre cropped to image1's aspect ratio, then
// torch's bilinear interpolation (align_corners=False, no antialiasing).
// RGB and RGBA mix by giving the RGB batch an opaque alpha channel, as
// ComfyUI does; other channel mismatches are an error.
type imageBatch struct{ opts Options }

func (n *imageBatch) Spec() plugins.Spec {
	return plugins.Spec{
		ClassType:   "ImageBatch",
		DisplayName: "Batch Images",
		Category:    categoryImage,
		Description: "Appends image2 to image1; image2 is resized (centre crop, bilinear) when the sizes differ.",
		Inputs: []plugins.Input{
			imageInput("image1", "The first images of the batch; their size is the batch's."),
			imageInput("image2", "Images appended after image1, resized to image1's size if needed."),
		},
		Outputs: []plugins.Output{imageOut},
	}
}

func (n *imageBatch) Run(ctx context.Context, call *plugins.Call) (plugins.Result, error) {
	t1, err := call.Tensor("image1")
	if err != nil {
		return plugins.Result{}, err
	}
	t2, err := call.Tensor("image2")
	if err != nil {
		return plugins.Result{}, err
	}
	b1, h1, w1, c1, err := t1.ImageDims(call.Limits.Image)
	if err != nil {
		return plugins.Result{}, err
	}
	b2, h2, w2, c2, err := t2.ImageDims(call.Limits.Image)
	if err != nil {
		return plugins.Result{}, err
	}
	c := c1
	if c1 != c2 {
		if !(c1 == 3 && c2 == 4 || c1 == 4 && c2 == 3) {
			return plugins.Result{}, &BatchError{Node: "ImageBatch", Index: 1,
				Got: strconv.Itoa(c2) + " channels", Want: strconv.Itoa(c1) + " channels"}
		}
		c = 4
	}
	if err := n.opts.checkBatch(b1+b2, w1, h1); err != nil {
		return plugins.Result{}, err
	}
	if c1 == c2 && h1 == h2 && w1 == w2 && t1.DType == t2.DType {
		// Nothing to convert: a view of both batches' images, no new bytes.
		out := &protocol.Tensor{DType: t1.DType, Shape: slices.Clone(t1.Shape), Items: make([][]byte, 0, b1+b2)}
		out.Shape[0] = b1 + b2
		for i := range b1 {
			out.Items = append(out.Items, t1.Item(i))
		}
		for i := range b2 {
			out.Items = append(out.Items, t2.Item(i))
		}
		return plugins.Result{Outputs: []any{out}}, nil
	}
	if err := call.Limits.CheckTensorBytes("ImageBatch output", imageBatchBytes(t1, t2, b1, b2, h1, w1, h2, w2, c1, c2, c)); err != nil {
		return plugins.Result{}, err
	}
	d1, d2 := float32Data(t1), float32Data(t2)
	if c1 != c {
		d1 = padAlpha(d1, c1)
	}
	if c2 != c {
		d2 = padAlpha(d2, c2)
	}
	if h2 != h1 || w2 != w1 {
		d2 = resizeBatch(d2, b2, h2, w2, c, h1, w1)
	}
	out := make([]float32, 0, len(d1)+len(d2))
	out = append(append(out, d1...), d2...)
	return plugins.Result{Outputs: []any{protocol.FromFloat32(out, b1+b2, h1, w1, c)}}, nil
}

// imageBatchBytes is what ImageBatch allocates: its output, and the
// float32 copies, alpha padding and resize it makes of its inputs on the way.
func imageBatchBytes(t1, t2 *protocol.Tensor, b1, b2, h1, w1, h2, w2, c1, c2, c int) int64 {
	need := int64(b1+b2) * int64(h1) * int64(w1) * int64(c) * 4
	for _, in := range []struct {
		t             *protocol.Tensor
		b, h, w, from int
		resize        bool
	}{{t1, b1, h1, w1, c1, false}, {t2, b2, h2, w2, c2, h2 != h1 || w2 != w1}} {
		if in.t.DType != protocol.Float32 {
			need += int64(in.b) * int64(in.h) * int64(in.w) * int64(in.from) * 4
		}
		if in.from != c {
			need += int64(in.b) * int64(in.h) * int64(in.w) * int64(c) * 4
		}
		if in.resize {
			need += int64(in.b) * int64(h1) * int64(w1) * int64(c) * 4
		}
	}
	return need
}

// padAlpha adds an opaque alpha channel to c-channel pixels.
func padAlpha(d []float32, c int) []float32 {
	n := len(d) / c
	out := make([]float32, n*(c+1))
	for i := 0; i < n; i++ {
		copy(out[i*(c+1):], d[i*c:(i+1)*c])
		out[i*(c+1)+c] = 1
	}
	return out
}

// resizeBatch is comfy.utils.common_upscale(s, tw, th, "bilinear", "center")
// on a [b,h,w,c] batch.
func resizeBatch(d []float32, b, h, w, c, th, tw int) []float32 {
	// Crop the centre to the target's aspect ratio, with Python's round
	// (half to even) on float64s, exactly as common_upscale computes it.
	x0, y0 := 0, 0
	oldAspect := float64(w) / float64(h)
	newAspect := float64(tw) / float64(th)
	if oldAspect > newAspect {
		x0 = int(math.RoundToEven((float64(w) - float64(w)*(newAspect/oldAspect)) / 2))
	} else if oldAspect < newAspect {
		y0 = int(math.RoundToEven((float64(h) - float64(h)*(oldAspect/newAspect)) / 2))
	}
	cw, ch := w-2*x0, h-2*y0
	out := make([]float32, b*th*tw*c)
	xs := bilinearTaps(cw, tw)
	ys := bilinearTaps(ch, th)
	for i := 0; i < b; i++ {
		src := d[i*h*w*c : (i+1)*h*w*c]
		dst := out[i*th*tw*c : (i+1)*th*tw*c]
		for oy, ty := range ys {
			r0 := src[((y0+ty.i0)*w+x0)*c:]
			r1 := src[((y0+ty.i1)*w+x0)*c:]
			o := dst[oy*tw*c : (oy+1)*tw*c]
			for ox, tx := range xs {
				for k := 0; k < c; k++ {
					top := tx.l0*r0[tx.i0*c+k] + tx.l1*r0[tx.i1*c+k]
					bot := tx.l0*r1[tx.i0*c+k] + tx.l1*r1[tx.i1*c+k]
					o[ox*c+k] = ty.l0*top + ty.l1*bot
				}
			}
		}
	}
	return out
}

// bilinearTap is where one output coordinate reads: indices i0, i1 and
// their weights l0, l1.
type bilinearTap struct {
	i0, i1 int
	l0, l1 float32
}

// bilinearTaps computes torch's upsample_bilinear2d source coordinates for
// align_corners=False: src = (dst + 0.5) * in/out - 0.5, clamped at 0.
func bilinearTaps(in, out int) []bilinearTap {
	scale := float32(in) / float32(out)
	taps := make([]bilinearTap, out)
	for o := range taps {
		src := scale*(float32(o)+0.5) - 0.5
		if src < 0 {
			src = 0
		}
		i0 := int(src)
		if i0 > in-1 {
			i0 = in - 1
		}
		i1 := i0
		if i0 < in-1 {
			i1 = i0 + 1
		}
		l1 := src - float32(i0)
		taps[o] = bilinearTap{i0: i0, i1: i1, l0: 1 - l1, l1: l1}
	}
	return taps
}

// intIn returns an integer input checked against the range the spec declares.
func intIn(call *plugins.Call, name string, def, lo, hi int64) (int, error) {
	v, err := call.Int(name, def)
	if err != nil {
		return 0, err
	}
	if v < lo || v > hi {
		return 0, &plugins.InputError{Node: call.NodeID, Input: name,
			Reason: "value " + strconv.FormatInt(v, 10) + " is outside " + strconv.FormatInt(lo, 10) + ".." + strconv.FormatInt(hi, 10)}
	}
	return int(v), nil
}
