package sendimage

import (
	"image"
	"image/color"
	"image/draw"

	"github.com/nodecast/nodecast/protocol"
)

// FromImage returns m as Pixels: one channel for gray images, three for
// opaque images and four (not premultiplied) otherwise. A *Pixels is returned
// as is; every other image is copied.
func FromImage(m image.Image) *Pixels {
	if p, ok := m.(*Pixels); ok {
		return p
	}
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	switch src := m.(type) {
	case *image.Gray:
		p := NewPixels(w, h, 1)
		for y := range h {
			copy(p.Row(y), src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):])
		}
		return p
	case *image.NRGBA:
		if !src.Opaque() {
			p := NewPixels(w, h, 4)
			for y := range h {
				copy(p.Row(y), src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):])
			}
			return p
		}
		return dropAlpha(src.Pix, src.Stride, src.PixOffset(b.Min.X, b.Min.Y), w, h)
	case *image.RGBA:
		if src.Opaque() { // premultiplied and opaque: the colours are already straight
			return dropAlpha(src.Pix, src.Stride, src.PixOffset(b.Min.X, b.Min.Y), w, h)
		}
	}
	switch m.ColorModel() {
	case color.GrayModel, color.Gray16Model:
		p := NewPixels(w, h, 1)
		i := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				p.Pix[i] = color.GrayModel.Convert(m.At(x, y)).(color.Gray).Y
				i++
			}
		}
		return p
	}
	if o, ok := m.(interface{ Opaque() bool }); ok && o.Opaque() {
		// draw has fast paths from YCbCr (JPEG) and paletted images to RGBA.
		rgba := image.NewRGBA(image.Rect(0, 0, w, h))
		draw.Draw(rgba, rgba.Bounds(), m, b.Min, draw.Src)
		return dropAlpha(rgba.Pix, rgba.Stride, 0, w, h)
	}
	p := NewPixels(w, h, 4)
	i := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(m.At(x, y)).(color.NRGBA)
			p.Pix[i], p.Pix[i+1], p.Pix[i+2], p.Pix[i+3] = c.R, c.G, c.B, c.A
			i += 4
		}
	}
	return p
}

// dropAlpha copies the colour bytes of 4-byte pixels into a 3-channel image.
func dropAlpha(pix []byte, stride, off, w, h int) *Pixels {
	p := NewPixels(w, h, 3)
	for y := range h {
		src := pix[off+y*stride : off+y*stride+4*w]
		dst := p.Row(y)
		for x := 0; x < w; x++ {
			dst[3*x], dst[3*x+1], dst[3*x+2] = src[4*x], src[4*x+1], src[4*x+2]
		}
	}
	return p
}

// byteToFloat[v] is float32(v)/255, the value numpy gives for
// np.array(img).astype(np.float32) / 255.0.
var byteToFloat = func() (t [256]float32) {
	for v := range t {
		t[v] = float32(v) / 255
	}
	return
}()

// ImageToTensor converts a decoded image to an IMAGE tensor [1,H,W,C] as
// ComfyUI's loaders do (PIL convert("RGB"), then /255 in float32): gray is
// replicated to RGB and alpha is dropped without premultiplying. With
// keepAlpha the tensor has four channels, alpha included (1 for opaque
// images). Images over protocol's default limits are refused.
func ImageToTensor(m image.Image, keepAlpha bool) (*protocol.Tensor, error) {
	if m == nil {
		return nil, &PixelsError{Reason: "nil image"}
	}
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 {
		return nil, &PixelsError{Reason: "empty image " + b.String()}
	}
	if err := (protocol.ImageLimits{}).CheckSize(w, h); err != nil {
		return nil, err
	}
	p := FromImage(m)
	if err := p.Validate(); err != nil {
		return nil, err
	}
	c := 3
	if keepAlpha {
		c = 4
	}
	out := make([]float32, w*h*c)
	switch {
	case p.C == 1:
		for i, v := range p.Pix {
			f := byteToFloat[v]
			o := out[i*c : i*c+c : i*c+c]
			o[0], o[1], o[2] = f, f, f
			if c == 4 {
				o[3] = 1
			}
		}
	case p.C == c:
		for i, v := range p.Pix {
			out[i] = byteToFloat[v]
		}
	default: // 3 -> 4 or 4 -> 3
		for i := range w * h {
			s := p.Pix[i*p.C : i*p.C+p.C : i*p.C+p.C]
			o := out[i*c : i*c+c : i*c+c]
			o[0], o[1], o[2] = byteToFloat[s[0]], byteToFloat[s[1]], byteToFloat[s[2]]
			if c == 4 {
				o[3] = 1
			}
		}
	}
	return protocol.FromFloat32(out, 1, h, w, c), nil
}

// AlphaMask returns the MASK tensor [1,H,W] that ComfyUI's loaders take from
// an image's alpha channel: 1 - alpha/255, so transparent pixels are 1. An
// image without transparency gives all zeros. A nil, empty or invalid image
// gives nil.
func AlphaMask(m image.Image) *protocol.Tensor {
	if m == nil {
		return nil
	}
	if p, ok := m.(*Pixels); ok && p.Validate() != nil {
		return nil
	}
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 {
		return nil
	}
	out := make([]float32, w*h)
	var lut [256]float32
	for a := range lut {
		lut[a] = 1 - byteToFloat[a]
	}
	if o, ok := m.(interface{ Opaque() bool }); ok && o.Opaque() {
		return protocol.FromFloat32(out, 1, h, w) // no transparency: zeros
	}
	switch src := m.(type) {
	case *Pixels: // not opaque, so four channels
		for i := range out {
			out[i] = lut[src.Pix[4*i+3]]
		}
	case *image.NRGBA:
		for y := range h {
			row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
			dst := out[y*w : (y+1)*w]
			for x := range dst {
				dst[x] = lut[row[4*x+3]]
			}
		}
	default:
		for y := range h {
			dst := out[y*w : (y+1)*w]
			for x := range dst {
				_, _, _, a := m.At(b.Min.X+x, b.Min.Y+y).RGBA()
				dst[x] = lut[a>>8]
			}
		}
	}
	return protocol.FromFloat32(out, 1, h, w)
}
