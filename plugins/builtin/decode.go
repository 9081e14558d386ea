package builtin

import (
	"bufio"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/gif"
	"io"

	"github.com/nodecast/nodecast/plugins"
)

// image.Decode here reads the formats that sendimage registers (see
// sendimage.IsImageFile), which this package imports.

// knownFormats lists the formats the loaders read, for error messages.
var knownFormats = []string{"png", "jpeg", "gif", "webp", "bmp", "tiff"}

// decoded is one image file: a frame per batch entry (several for an
// animated GIF), all width×height.
type decoded struct {
	format   string
	w, h     int
	frames   []image.Image
	hasAlpha bool // whether Pillow would see an "A" band (or a transparent palette)
}

// imageHeader reads only the header of an image: its format and size.
func imageHeader(r io.Reader, source string) (image.Config, string, error) {
	cfg, format, err := image.DecodeConfig(r)
	if err != nil {
		if errors.Is(err, image.ErrFormat) {
			format = ""
		}
		return cfg, format, &DecodeError{Source: source, Format: format, Err: err}
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return cfg, format, &DecodeError{Source: source, Format: format,
			Err: fmt.Errorf("empty image %dx%d", cfg.Width, cfg.Height)}
	}
	return cfg, format, nil
}

// decodeBytes is what decoding n frames of w×h pixels takes at most: the
// decoded pixels (4 bytes each) and the IMAGE and MASK tensors made from
// them (float32 RGB and alpha).
func decodeBytes(n, w, h int) int64 {
	return int64(n) * int64(w) * int64(h) * (4 + 3*4 + 4)
}

// decodeImage checks the header of the image in r against lim (and, for
// animations, the batch limit of opts) before it decodes a single pixel,
// then decodes it.
func decodeImage(r io.ReadSeeker, source string, limits plugins.Limits, opts Options) (*decoded, error) {
	lim := limits.Image
	cfg, format, err := imageHeader(bufio.NewReader(r), source)
	if err != nil {
		return nil, err
	}
	if err := lim.CheckSize(cfg.Width, cfg.Height); err != nil {
		return nil, fmt.Errorf("builtin: %s: %w", source, err)
	}
	if format != "gif" {
		if err := limits.CheckTensorBytes("decoding "+source, decodeBytes(1, cfg.Width, cfg.Height)); err != nil {
			return nil, err
		}
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	d := &decoded{format: format, w: cfg.Width, h: cfg.Height}
	if format == "gif" {
		n, err := gifFrameCount(bufio.NewReader(r))
		if err != nil {
			return nil, &DecodeError{Source: source, Format: format, Err: err}
		}
		if err := opts.checkBatch(n, cfg.Width, cfg.Height); err != nil {
			return nil, fmt.Errorf("builtin: %s: %w", source, err)
		}
		if err := limits.CheckTensorBytes("decoding "+source, decodeBytes(n, cfg.Width, cfg.Height)); err != nil {
			return nil, err
		}
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		g, err := gif.DecodeAll(bufio.NewReader(r))
		if err != nil {
			return nil, &DecodeError{Source: source, Format: format, Err: err}
		}
		d.frames, d.hasAlpha = compositeGIF(g, cfg.Width, cfg.Height)
		return d, nil
	}
	var m image.Image
	if format == "png" {
		m, err = decodePNG(r)
	} else {
		m, _, err = image.Decode(bufio.NewReader(r))
	}
	if err != nil {
		return nil, &DecodeError{Source: source, Format: format, Err: err}
	}
	if b := m.Bounds(); b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return nil, &DecodeError{Source: source, Format: format,
			Err: fmt.Errorf("decoded %dx%d, header said %dx%d", b.Dx(), b.Dy(), cfg.Width, cfg.Height)}
	}
	d.frames = []image.Image{m}
	d.hasAlpha = hasAlphaBand(m, format)
	return d, nil
}

// compositeGIF renders each frame of an animation onto the canvas, honouring
// disposal, as Pillow's ImageSequence does (it hands out whole frames, not the
// patches a GIF stores). hasAlpha is true when any frame has a transparent colour.
func compositeGIF(g *gif.GIF, w, h int) (frames []image.Image, hasAlpha bool) {
	canvas := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i, f := range g.Image {
		if !hasAlpha && paletteHasAlpha(f.Palette) {
			hasAlpha = true
		}
		var disposal byte
		if i < len(g.Disposal) {
			disposal = g.Disposal[i]
		}
		var saved *image.NRGBA
		if disposal == gif.DisposalPrevious {
			saved = cloneNRGBA(canvas)
		}
		draw.Draw(canvas, f.Bounds(), f, f.Bounds().Min, draw.Over)
		frames = append(frames, cloneNRGBA(canvas))
		switch disposal {
		case gif.DisposalBackground:
			draw.Draw(canvas, f.Bounds(), image.Transparent, image.Point{}, draw.Src)
		case gif.DisposalPrevious:
			canvas = saved
		}
	}
	return frames, hasAlpha
}

func cloneNRGBA(m *image.NRGBA) *image.NRGBA {
	c := *m
	c.Pix = append([]byte(nil), m.Pix...)
	return &c
}

// gifFrameCount counts the image descriptors of a GIF by walking its blocks
// without decompressing anything, so that an animation's size can be
// checked before its frames are decoded.
func gifFrameCount(r *bufio.Reader) (int, error) {
	var hdr [13]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, fmt.Errorf("reading header: %w", err)
	}
	if flags := hdr[10]; flags&0x80 != 0 {
		if _, err := r.Discard(3 << ((flags & 7) + 1)); err != nil {
			return 0, fmt.Errorf("reading global colour table: %w", err)
		}
	}
	n := 0
	for {
		b, err := r.ReadByte()
		if err == io.EOF {
			return n, nil // a missing trailer is the decoder's business
		} else if err != nil {
			return 0, err
		}
		switch b {
		case 0x21: // extension: a label, then sub-blocks
			if _, err := r.ReadByte(); err != nil {
				return n, nil
			}
			if err := skipSubBlocks(r); err != nil {
				return n, nil
			}
		case 0x2C: // image descriptor
			var desc [9]byte
			if _, err := io.ReadFull(r, desc[:]); err != nil {
				return n + 1, nil
			}
			n++
			if flags := desc[8]; flags&0x80 != 0 {
				if _, err := r.Discard(3 << ((flags & 7) + 1)); err != nil {
					return n, nil
				}
			}
			if _, err := r.ReadByte(); err != nil { // LZW minimum code size
				return n, nil
			}
			if err := skipSubBlocks(r); err != nil {
				return n, nil
			}
		case 0x3B: // trailer
			return n, nil
		default:
			return n, fmt.Errorf("unknown block 0x%02x after %d frames", b, n)
		}
	}
}

func skipSubBlocks(r *bufio.Reader) error {
	for {
		size, err := r.ReadByte()
		if err != nil {
			return err
		}
		if size == 0 {
			return nil
		}
		if _, err := r.Discard(int(size)); err != nil {
			return err
		}
	}
}

func paletteHasAlpha(p color.Palette) bool {
	for _, c := range p {
		if _, _, _, a := c.RGBA(); a != 0xffff {
			return true
		}
	}
	return false
}

// hasAlphaBand reports whether Pillow would open m with an alpha band (or a
// transparent palette), which is when ComfyUI's loaders make the mask from
// alpha instead of returning a 64×64 zero mask. For PNG the colour type
// decides, as it does in Pillow; for formats whose alpha flag Go's decoders do
// not expose (WebP lossless, 32-bit BMP, TIFF) any non-opaque pixel does.
func hasAlphaBand(m image.Image, format string) bool {
	switch m := m.(type) {
	case *image.Paletted:
		return paletteHasAlpha(m.Palette)
	case *image.NYCbCrA, *image.Alpha, *image.Alpha16:
		return true
	case *image.NRGBA, *image.NRGBA64:
		if format == "png" {
			return true
		}
		return !isOpaque(m)
	case *image.RGBA, *image.RGBA64:
		if format == "png" {
			return false
		}
		return !isOpaque(m)
	}
	return false
}

func isOpaque(m image.Image) bool {
	if o, ok := m.(interface{ Opaque() bool }); ok {
		return o.Opaque()
	}
	return true
}

// rowFunc writes row y (0-based, relative to the image's bounds) of an image
// as 8-bit non-premultiplied RGBA into dst, 4 bytes per pixel.
type rowFunc func(y int, dst []byte)

// nrgbaRows returns a rowFunc for m. 16-bit samples keep their high byte,
// which is what Pillow does when it opens a 16-bit-per-channel PNG as RGB(A).
// (Pillow opens 16-bit greyscale as mode I;16, whose conversion to RGB depends
// on the Pillow version; taking the high byte is the version-independent
// reading.)
func nrgbaRows(m image.Image) rowFunc {
	b := m.Bounds()
	w := b.Dx()
	switch m := m.(type) {
	case *rgbImage:
		return func(y int, dst []byte) {
			src := m.Pix[y*m.Stride:][:3*w]
			for x := 0; x < w; x++ {
				dst[4*x], dst[4*x+1], dst[4*x+2], dst[4*x+3] = src[3*x], src[3*x+1], src[3*x+2], 0xff
			}
		}
	case *image.NRGBA:
		return func(y int, dst []byte) {
			i := m.PixOffset(b.Min.X, b.Min.Y+y)
			copy(dst, m.Pix[i:i+4*w])
		}
	case *image.RGBA:
		return func(y int, dst []byte) {
			i := m.PixOffset(b.Min.X, b.Min.Y+y)
			src := m.Pix[i : i+4*w]
			for x := 0; x < w; x++ {
				s := src[4*x : 4*x+4 : 4*x+4]
				if s[3] == 0xff {
					copy(dst[4*x:], s)
					continue
				}
				c := color.NRGBAModel.Convert(color.RGBA{s[0], s[1], s[2], s[3]}).(color.NRGBA)
				dst[4*x], dst[4*x+1], dst[4*x+2], dst[4*x+3] = c.R, c.G, c.B, c.A
			}
		}
	case *image.Gray:
		return func(y int, dst []byte) {
			i := m.PixOffset(b.Min.X, b.Min.Y+y)
			for x, v := range m.Pix[i : i+w] {
				dst[4*x], dst[4*x+1], dst[4*x+2], dst[4*x+3] = v, v, v, 0xff
			}
		}
	case *image.Gray16:
		return func(y int, dst []byte) {
			i := m.PixOffset(b.Min.X, b.Min.Y+y)
			for x := 0; x < w; x++ {
				v := m.Pix[i+2*x]
				dst[4*x], dst[4*x+1], dst[4*x+2], dst[4*x+3] = v, v, v, 0xff
			}
		}
	case *image.NRGBA64:
		return func(y int, dst []byte) {
			i := m.PixOffset(b.Min.X, b.Min.Y+y)
			for x := 0; x < w; x++ {
				s := m.Pix[i+8*x : i+8*x+8 : i+8*x+8]
				dst[4*x], dst[4*x+1], dst[4*x+2], dst[4*x+3] = s[0], s[2], s[4], s[6]
			}
		}
	case *image.Paletted:
		var table [256]color.NRGBA
		for i := range table {
			table[i] = color.NRGBA{A: 0xff}
			if i < len(m.Palette) {
				table[i] = color.NRGBAModel.Convert(m.Palette[i]).(color.NRGBA)
			}
		}
		return func(y int, dst []byte) {
			i := m.PixOffset(b.Min.X, b.Min.Y+y)
			for x, v := range m.Pix[i : i+w] {
				c := table[v]
				dst[4*x], dst[4*x+1], dst[4*x+2], dst[4*x+3] = c.R, c.G, c.B, c.A
			}
		}
	case *image.YCbCr:
		return func(y int, dst []byte) {
			for x := 0; x < w; x++ {
				yi, ci := m.YOffset(b.Min.X+x, b.Min.Y+y), m.COffset(b.Min.X+x, b.Min.Y+y)
				r, g, bb := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				dst[4*x], dst[4*x+1], dst[4*x+2], dst[4*x+3] = r, g, bb, 0xff
			}
		}
	case *image.NYCbCrA:
		return func(y int, dst []byte) {
			for x := 0; x < w; x++ {
				px, py := b.Min.X+x, b.Min.Y+y
				yi, ci := m.YOffset(px, py), m.COffset(px, py)
				r, g, bb := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				dst[4*x], dst[4*x+1], dst[4*x+2], dst[4*x+3] = r, g, bb, m.A[m.AOffset(px, py)]
			}
		}
	case *image.CMYK:
		return func(y int, dst []byte) {
			i := m.PixOffset(b.Min.X, b.Min.Y+y)
			for x := 0; x < w; x++ {
				s := m.Pix[i+4*x : i+4*x+4 : i+4*x+4]
				r, g, bb := color.CMYKToRGB(s[0], s[1], s[2], s[3])
				dst[4*x], dst[4*x+1], dst[4*x+2], dst[4*x+3] = r, g, bb, 0xff
			}
		}
	}
	return func(y int, dst []byte) {
		for x := 0; x < w; x++ {
			c := color.NRGBAModel.Convert(m.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
			dst[4*x], dst[4*x+1], dst[4*x+2], dst[4*x+3] = c.R, c.G, c.B, c.A
		}
	}
}
