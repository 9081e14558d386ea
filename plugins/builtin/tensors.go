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

// imageTensors converts decoded frames into ComfyUI's IMAGE (float32
// [N,H,W,3], RGB) and MASK (float32 [N,H,W] = 1 - alpha, or [N,64,64] zeros
// when the image has no alpha).
func imageTensors(d *decoded) (img, mask *protocol.Tensor) {
	n, w, h := len(d.frames), d.w, d.h
	rgb := make([]float32, n*h*w*3)
	var alpha []float32
	if d.hasAlpha {
		alpha = make([]float32, n*h*w)
	}
	row := make([]byte, 4*w)
	for f, m := range d.frames {
		read := nrgbaRows(m)
		for y := 0; y < h; y++ {
			read(y, row)
			out := rgb[((f*h)+y)*w*3:][:w*3]
			for x := 0; x < w; x++ {
				out[3*x] = unit8[row[4*x]]
				out[3*x+1] = unit8[row[4*x+1]]
				out[3*x+2] = unit8[row[4*x+2]]
			}
			if alpha != nil {
				am := alpha[((f*h)+y)*w:][:w]
				for x := range am {
					am[x] = oneMinusUnit8[row[4*x+3]]
				}
			}
		}
	}
	img = protocol.FromFloat32(rgb, n, h, w, 3)
	if alpha != nil {
		return img, protocol.FromFloat32(alpha, n, h, w)
	}
	return img, protocol.NewFloat32(n, noAlphaMaskSide, noAlphaMaskSide)
}

// firstChannelMask converts the first frame into a MASK [1,H,W] holding the
// first channel as ETN_LoadMaskBase64 does (np.array(img)[..., 0] / 255): the
// grey level of a greyscale image, the red channel of a colour one. For a
// palette image this takes the red of the palette colour, where numpy would
// see the palette index.
func firstChannelMask(d *decoded) *protocol.Tensor {
	w, h := d.w, d.h
	out := make([]float32, w*h)
	row := make([]byte, 4*w)
	read := nrgbaRows(d.frames[0])
	for y := 0; y < h; y++ {
		read(y, row)
		o := out[y*w:][:w]
		for x := range o {
			o[x] = unit8[row[4*x]]
		}
	}
	return protocol.FromFloat32(out, 1, h, w)
}

// float32Data returns the elements of a float32 or uint8 IMAGE tensor as
// float32, converting uint8 by /255 as ComfyUI would.
func float32Data(t *protocol.Tensor) []float32 {
	if t.DType == protocol.Float32 {
		return t.Float32s()
	}
	out := make([]float32, len(t.Data))
	for i, v := range t.Data {
		out[i] = unit8[v]
	}
	return out
}
