package builtin

import (
	"github.com/nodecast/nodecast/protocol"
)

// unit8 maps a byte to its float32 value in 0..1 exactly as ComfyUI computes
// it: np.array(img).astype(np.float32) / 255.0, a float32 division.
// oneMinusUnit8 is 1 - unit8, ComfyUI's mask from alpha.
var unit8, oneMinusUnit8 = func() (u, m [256]float32) {
	for i := range u {
		u[i] = float32(i) / 255
		m[i] = 1 - u[i]
	}
	return
}()

// noAlphaMaskSide is the side of the all-zero mask ComfyUI's loaders return
// for images without alpha.
const noAlphaMaskSide = 64

// imageTensors converts decoded frames into ComfyUI's IMAGE (Unorm8
// [N,H,W,3], RGB: the bytes of the file, standing for ComfyUI's float32
// v/255) and MASK (float32 [N,H,W] = 1 - alpha, or [N,64,64] zeros when the
// image has no alpha). The mask stays float32: 1 - v/255 is not v'/255 for
// any byte v' in 159 of the 256 cases, so no byte form would be exact.
func imageTensors(d *decoded) (img, mask *protocol.Tensor) {
	n, w, h := len(d.frames), d.w, d.h
	if m, ok := d.frames[0].(*rgbImage); ok && n == 1 && !d.hasAlpha && m.Stride == 3*w && len(m.Pix) == 3*w*h {
		// The decoder's RGB rows are the tensor: no copy at all.
		return protocol.FromUnorm8(m.Pix, 1, h, w, 3), protocol.NewFloat32(1, noAlphaMaskSide, noAlphaMaskSide)
	}
	rgb := make([]byte, n*h*w*3)
	var alpha []float32
	if d.hasAlpha {
		alpha = make([]float32, n*h*w)
	}
	row := make([]byte, 4*w)
	for f, m := range d.frames {
		if m, ok := m.(*rgbImage); ok && alpha == nil {
			// The decoder's rows are the tensor's: one copy per row.
			for y := 0; y < h; y++ {
				copy(rgb[((f*h)+y)*w*3:][:w*3], m.Pix[y*m.Stride:][:w*3])
			}
			continue
		}
		read := nrgbaRows(m)
		for y := 0; y < h; y++ {
			out := rgb[((f*h)+y)*w*3:][:w*3]
			read(y, row)
			for x := 0; x < w; x++ {
				out[3*x] = row[4*x]
				out[3*x+1] = row[4*x+1]
				out[3*x+2] = row[4*x+2]
			}
			if alpha != nil {
				am := alpha[((f*h)+y)*w:][:w]
				for x := range am {
					am[x] = oneMinusUnit8[row[4*x+3]]
				}
			}
		}
	}
	img = protocol.FromUnorm8(rgb, n, h, w, 3)
	if alpha != nil {
		return img, protocol.FromFloat32(alpha, n, h, w)
	}
	return img, protocol.NewFloat32(n, noAlphaMaskSide, noAlphaMaskSide)
}

// firstChannelMask converts the first frame into a MASK [1,H,W] holding the
// first channel as ETN_LoadMaskBase64 does (np.array(img)[..., 0] / 255): the
// grey level of a greyscale image, the red channel of a colour one, as a
// Unorm8 tensor (exactly v/255). For a palette image this takes the red of
// the palette colour, where numpy would see the palette index.
func firstChannelMask(d *decoded) *protocol.Tensor {
	w, h := d.w, d.h
	out := make([]byte, w*h)
	row := make([]byte, 4*w)
	read := nrgbaRows(d.frames[0])
	for y := 0; y < h; y++ {
		read(y, row)
		o := out[y*w:][:w]
		for x := range o {
			o[x] = row[4*x]
		}
	}
	return protocol.FromUnorm8(out, 1, h, w)
}

// float32Data returns the elements of a float32, Unorm8 or uint8 IMAGE
// tensor as float32, converting bytes by /255 as ComfyUI would, once per
// tensor (protocol.Tensor.AsFloat32 caches it).
func float32Data(t *protocol.Tensor) []float32 {
	return t.AsFloat32().Float32s()
}
