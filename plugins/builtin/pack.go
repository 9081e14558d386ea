package builtin

import (
	"os"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/sendimage"
)

// PackName is the name of the built-in node pack.
const PackName = "builtin"

// DefaultMaxBatchPixels bounds the pixels of all images of one batch that a
// node makes (EmptyImage, RepeatImageBatch, an animated GIF's frames...):
// four of Pillow's largest images, about 4.3 GB as float32 RGB.
const DefaultMaxBatchPixels = 4 * protocol.DefaultMaxPixels

// Options configure the pack. The zero value works.
type Options struct {
	// InputDir is LoadImage's folder. Empty means the value of $NODECAST_INPUT_DIR,
	// read at each run, so a host may set it after the pack is built.
	InputDir string
	// MaxBatchPixels bounds width*height*batch of every tensor a node makes.
	// 0 means DefaultMaxBatchPixels; negative disables the check.
	MaxBatchPixels int64
	// Registry holds the encoders the senders offer and use. nil means
	// sendimage.Default.
	Registry *sendimage.Registry
	// OutputDir is SaveImage's folder, TempDir PreviewImage's. Empty means
	// the value of $NODECAST_OUTPUT_DIR / $NODECAST_TEMP_DIR, read at each run.
	OutputDir, TempDir string
}

func (o Options) registry() *sendimage.Registry {
	if o.Registry != nil {
		return o.Registry
	}
	return sendimage.Default
}

func (o Options) inputDir() string {
	if o.InputDir != "" {
		return o.InputDir
	}
	return os.Getenv(plugins.InputDirEnv)
}

func (o Options) batchPixels() int64 {
	if o.MaxBatchPixels == 0 {
		return DefaultMaxBatchPixels
	}
	return o.MaxBatchPixels
}

// checkBatch refuses a batch of n images of w×h pixels over the batch limit.
func (o Options) checkBatch(n, w, h int) error {
	lim := o.batchPixels()
	if lim < 0 {
		return nil
	}
	if total := int64(n) * int64(w) * int64(h); total > lim {
		return &protocol.LimitError{What: "batch pixels", Value: total, Limit: lim}
	}
	return nil
}

// Pack returns the built-in node pack with default options.
func Pack() plugins.Pack { return NewPack(Options{}) }

// NewPack returns the built-in node pack configured by opts.
func NewPack(opts Options) plugins.Pack {
	return plugins.Pack{
		Name: PackName,
		Nodes: []plugins.Node{
			&loadImage{opts: opts},
			&emptyImage{opts: opts},
			&repeatImageBatch{opts: opts},
			&imageBatch{opts: opts},
			&loadImageBase64{opts: opts, class: "ETN_LoadImageBase64", display: "Load Image (Base64)"},
			&loadMaskBase64{opts: opts, class: "ETN_LoadMaskBase64", display: "Load Mask (Base64)"},
			&loadImageBase64{opts: opts, class: "NTL_LoadImageBase64", display: "ntl Load Image (Base64)"},
			&loadMaskBase64{opts: opts, class: "NTL_LoadMaskBase64", display: "ntl Load Mask (Base64)"},
			&loadImagesBase64{opts: opts},
			&sendImageOnWebSocket{opts: opts},
			&etnSendImageWebSocket{opts: opts},
			&saveImageWebsocket{opts: opts},
			&ntlSendImageWebSocket{opts: opts, class: "NTL_SendImageWebSocket", display: "ntl Send Image (WebSocket)"},
			&ntlSendImageWebSocket{opts: opts, class: "NTL_SendImagesWebSocket", display: "ntl Send Images (WebSocket)"},
			&saveImage{opts: opts},
			&saveImage{opts: opts, preview: true},
		},
	}
}

// Categories, as ComfyUI and the original node packs file these classes.
const (
	categoryImage    = "image"
	categoryBatch    = "image/batch"
	categoryExternal = "external_tooling"
	categoryAPI      = "api node/image"
)

// Helpers that keep the specs short.

func imageInput(name, tooltip string) plugins.Input {
	return plugins.Input{Name: name, Type: plugins.TypeImage, Options: map[string]any{"tooltip": tooltip}}
}

func intInput(name string, def, lo, hi int64, tooltip string) plugins.Input {
	return plugins.Input{Name: name, Type: plugins.TypeInt, Options: map[string]any{
		"default": def, "min": lo, "max": hi, "step": int64(1), "tooltip": tooltip,
	}}
}

func stringInput(name string, def *string, tooltip string) plugins.Input {
	opts := map[string]any{"multiline": false, "tooltip": tooltip}
	if def != nil {
		opts["default"] = *def
	}
	return plugins.Input{Name: name, Type: plugins.TypeString, Options: opts}
}

func comboInput(name string, choices []string, def, tooltip string) plugins.Input {
	return plugins.Input{Name: name, Type: plugins.TypeCombo, Choices: choices, Options: map[string]any{
		"default": def, "tooltip": tooltip,
	}}
}

var (
	imageOut = plugins.Output{Name: "IMAGE", Type: plugins.TypeImage}
	maskOut  = plugins.Output{Name: "MASK", Type: plugins.TypeMask}
)
