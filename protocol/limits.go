package protocol

// DefaultMessageLimit is the size that stock aiohttp clients refuse: a WebSocket
// message must be strictly smaller than this, header included.
const DefaultMessageLimit = 4 << 20 // 4,194,304

// Image size limits. MaxPixels is Pillow's MAX_IMAGE_PIXELS, the bound ComfyUI's
// loaders inherit; MaxSide is the largest side ComfyUI's own nodes accept.
const (
	DefaultMaxSide   = 16384
	DefaultMaxPixels = 89_478_485
)

// ImageLimits bounds the images a node accepts. The zero value applies the
// defaults above; a negative field disables that check.
type ImageLimits struct {
	MaxSide   int   // largest width or height; 0 means DefaultMaxSide
	MaxPixels int64 // largest width*height; 0 means DefaultMaxPixels
}

func (l ImageLimits) side() int {
	if l.MaxSide == 0 {
		return DefaultMaxSide
	}
	return l.MaxSide
}

func (l ImageLimits) pixels() int64 {
	if l.MaxPixels == 0 {
		return DefaultMaxPixels
	}
	return l.MaxPixels
}

// CheckSize reports a *LimitError when a width×height image is over the limits.
func (l ImageLimits) CheckSize(width, height int) error {
	if s := l.side(); s > 0 {
		if width > s {
			return &LimitError{What: "image width", Value: int64(width), Limit: int64(s)}
		}
		if height > s {
			return &LimitError{What: "image height", Value: int64(height), Limit: int64(s)}
		}
	}
	if p := l.pixels(); p > 0 && int64(width)*int64(height) > p {
		return &LimitError{What: "image pixels", Value: int64(width) * int64(height), Limit: p}
	}
	return nil
}
