package sendimage

import (
	"math"
	"sync"
)

// photoLike returns a deterministic w×h image with c channels that
// compresses like a photograph: smooth gradients, some edges and mild noise.
func photoLike(w, h, c int, seed uint64) *Pixels {
	p := NewPixels(w, h, c)
	s := seed*0x9e3779b97f4a7c15 + 1
	rnd := func() uint64 { // xorshift64*
		s ^= s >> 12
		s ^= s << 25
		s ^= s >> 27
		return s * 0x2545f4914f6cdd1d
	}
	fx, fy := 6/float64(w), 4/float64(h)
	i := 0
	for y := range h {
		for x := range w {
			u, v := float64(x)*fx, float64(y)*fy
			base := [4]float64{
				128 + 90*math.Sin(u+0.7*v),
				128 + 80*math.Cos(0.8*u-v),
				128 + 70*math.Sin(1.3*u*v/6+1),
				255,
			}
			if (x/97+y/61)%5 == 0 { // blocks with hard edges
				base[0], base[1] = base[1]*0.6, base[0]*0.6
			}
			n := rnd()
			lum := float64(int(n&7)) - 3.5 // sensor noise, shared by the channels
			for k := range c {
				v := base[k] + lum
				if n>>(8+k)&3 == 0 { // and a little per channel
					v++
				}
				if c == 4 && k == 3 {
					v = 255 - float64(x%256)/2
				}
				p.Pix[i+k] = uint8(max(0, min(255, v)))
			}
			i += c
		}
	}
	return p
}

var photoCache sync.Map

// cachedPhoto shares photoLike images between benchmarks; do not modify them.
func cachedPhoto(w, h, c int) *Pixels {
	type key struct{ w, h, c int }
	if p, ok := photoCache.Load(key{w, h, c}); ok {
		return p.(*Pixels)
	}
	p := photoLike(w, h, c, 1)
	photoCache.Store(key{w, h, c}, p)
	return p
}
