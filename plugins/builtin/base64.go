package builtin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nodecast/nodecast/plugins"
)

// decodeBase64 decodes an image sent inline in a prompt. It strips a
// "data:image/...;base64," prefix and whitespace, and accepts text with or
// without "=" padding.
func decodeBase64(s, input string) ([]byte, error) {
	if strings.HasPrefix(s, "data:") {
		if i := strings.Index(s, ";base64,"); i >= 0 {
			s = s[i+len(";base64,"):]
		} else if i := strings.IndexByte(s, ','); i >= 0 {
			s = s[i+1:]
		}
	}
	if strings.ContainsAny(s, " \t\r\n") {
		s = strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, s)
	}
	if s == "" {
		return nil, &Base64Error{Input: input, Offset: 0, Length: 0}
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err == nil {
		return b, nil
	}
	if len(s)%4 != 0 && !strings.HasSuffix(s, "=") {
		if b, rawErr := base64.RawStdEncoding.DecodeString(s); rawErr == nil {
			return b, nil
		}
	}
	var at base64.CorruptInputError
	if !errors.As(err, &at) {
		at = 0
	}
	return nil, &Base64Error{Input: input, Offset: int64(at), Length: len(s)}
}

// decodeInline decodes one base64 image input and checks its header
// against the limits before decoding pixels.
func decodeInline(s, input string, lim plugins.Limits, opts Options) (*decoded, error) {
	data, err := decodeBase64(s, input)
	if err != nil {
		return nil, err
	}
	return decodeImage(bytes.NewReader(data), input, lim, opts)
}

// inlineFirstFrame keeps only the first frame: Pillow's Image.open, used by
// the base64 loaders, reads one frame.
func inlineFirstFrame(d *decoded) *decoded {
	if len(d.frames) > 1 {
		d.frames = d.frames[:1]
	}
	return d
}

// loadImageBase64 is ETN_LoadImageBase64 and NTL_LoadImageBase64: a base64
// image in the prompt, as IMAGE (RGB) and MASK (1 - alpha, or 64×64 zeros).
type loadImageBase64 struct {
	opts           Options
	class, display string
}

func (n *loadImageBase64) Spec() plugins.Spec {
	return plugins.Spec{
		ClassType:   n.class,
		DisplayName: n.display,
		Category:    categoryExternal,
		Description: "Loads an image (PNG, JPEG, WebP, GIF, BMP or TIFF) sent as base64 text in the prompt.",
		Inputs: []plugins.Input{stringInput("image", nil,
			"Base64 of the image file, optionally with a data:image/...;base64, prefix.")},
		Outputs: []plugins.Output{imageOut, maskOut},
	}
}

func (n *loadImageBase64) Run(ctx context.Context, call *plugins.Call) (plugins.Result, error) {
	s, err := requiredString(call, "image")
	if err != nil {
		return plugins.Result{}, err
	}
	d, err := decodeInline(s, "image", call.Limits, n.opts)
	if err != nil {
		return plugins.Result{}, err
	}
	img, mask := imageTensors(inlineFirstFrame(d))
	return plugins.Result{Outputs: []any{img, mask}}, nil
}

// loadMaskBase64 is ETN_LoadMaskBase64 and NTL_LoadMaskBase64: the first
// channel of a base64 image as MASK [1,H,W], not inverted.
type loadMaskBase64 struct {
	opts           Options
	class, display string
}

func (n *loadMaskBase64) Spec() plugins.Spec {
	return plugins.Spec{
		ClassType:   n.class,
		DisplayName: n.display,
		Category:    categoryExternal,
		Description: "Loads a mask sent as a base64 image: the grey level of a greyscale image, the red channel of a colour one.",
		Inputs: []plugins.Input{stringInput("mask", nil,
			"Base64 of the mask image, optionally with a data:image/...;base64, prefix.")},
		Outputs: []plugins.Output{maskOut},
	}
}

func (n *loadMaskBase64) Run(ctx context.Context, call *plugins.Call) (plugins.Result, error) {
	s, err := requiredString(call, "mask")
	if err != nil {
		return plugins.Result{}, err
	}
	d, err := decodeInline(s, "mask", call.Limits, n.opts)
	if err != nil {
		return plugins.Result{}, err
	}
	return plugins.Result{Outputs: []any{firstChannelMask(d)}}, nil
}

// loadImagesBase64 is NTL_LoadImagesBase64: a JSON array of base64 images,
// all the same size, as one IMAGE batch (RGB; no mask, as in the original).
type loadImagesBase64 struct{ opts Options }

func (n *loadImagesBase64) Spec() plugins.Spec {
	return plugins.Spec{
		ClassType:   "NTL_LoadImagesBase64",
		DisplayName: "ntl Load Images (Base64)",
		Category:    categoryExternal,
		Description: "Loads a batch of images sent as a JSON array of base64 strings; all images must have the same size.",
		Inputs: []plugins.Input{stringInput("images", nil,
			"A JSON array of base64 image files, e.g. [\"iVBORw0...\", \"iVBORw0...\"].")},
		Outputs: []plugins.Output{imageOut},
	}
}

func (n *loadImagesBase64) Run(ctx context.Context, call *plugins.Call) (plugins.Result, error) {
	list, err := base64List(call, "images")
	if err != nil {
		return plugins.Result{}, err
	}
	// Decode the base64 and read every header first: a size mismatch or an
	// oversize batch is refused before any pixel is decoded.
	datas := make([][]byte, len(list))
	var w, h int
	for i, s := range list {
		input := "images[" + strconv.Itoa(i) + "]"
		if datas[i], err = decodeBase64(s, input); err != nil {
			return plugins.Result{}, err
		}
		cfg, _, err := imageHeader(bytes.NewReader(datas[i]), input)
		if err != nil {
			return plugins.Result{}, err
		}
		if err := call.Limits.Image.CheckSize(cfg.Width, cfg.Height); err != nil {
			return plugins.Result{}, fmt.Errorf("builtin: %s: %w", input, err)
		}
		if i == 0 {
			w, h = cfg.Width, cfg.Height
		} else if cfg.Width != w || cfg.Height != h {
			return plugins.Result{}, &BatchError{Node: "NTL_LoadImagesBase64", Index: i,
				Got: sizeString(cfg.Width, cfg.Height), Want: sizeString(w, h)}
		}
	}
	if err := n.opts.checkBatch(len(list), w, h); err != nil {
		return plugins.Result{}, err
	}
	if err := call.Limits.CheckTensorBytes("NTL_LoadImagesBase64 output", decodeBytes(len(list), w, h)); err != nil {
		return plugins.Result{}, err
	}
	all := &decoded{w: w, h: h}
	for i, data := range datas {
		if err := ctx.Err(); err != nil {
			return plugins.Result{}, err
		}
		d, err := decodeImage(bytes.NewReader(data), "images["+strconv.Itoa(i)+"]", call.Limits, n.opts)
		if err != nil {
			return plugins.Result{}, err
		}
		all.frames = append(all.frames, d.frames[0])
		datas[i] = nil
	}
	img, _ := imageTensors(all)
	return plugins.Result{Outputs: []any{img}}, nil
}

func sizeString(w, h int) string { return strconv.Itoa(w) + "x" + strconv.Itoa(h) }

// requiredString returns a string input that must be present and non-empty.
func requiredString(call *plugins.Call, name string) (string, error) {
	s, err := call.String(name, "")
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", &plugins.InputError{Node: call.NodeID, Input: name, Reason: "missing"}
	}
	return s, nil
}

// base64List reads NTL_LoadImagesBase64's input: a JSON array of strings as
// text (what the original node parses), or an already decoded array.
func base64List(call *plugins.Call, name string) ([]string, error) {
	bad := func(format string, args ...any) error {
		return &plugins.InputError{Node: call.NodeID, Input: name, Reason: fmt.Sprintf(format, args...)}
	}
	var list []string
	switch v := call.Inputs[name].(type) {
	case nil:
		return nil, bad("missing")
	case string:
		if err := json.Unmarshal([]byte(v), &list); err != nil {
			return nil, bad("want a JSON array of base64 strings: %v", err)
		}
	case []any:
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, bad("element %d is %T, want a base64 string", i, e)
			}
			list = append(list, s)
		}
	case []string:
		list = v
	default:
		return nil, bad("want a JSON array of base64 strings, got %T", v)
	}
	if len(list) == 0 {
		return nil, bad("empty list: want at least one image")
	}
	return list, nil
}
