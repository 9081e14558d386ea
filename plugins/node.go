package plugins

import (
	"context"

	"github.com/nodecast/nodecast/protocol"
)

// Node is one node class served by a plugin. Implementations are plain Go:
// the bridge turns gRPC into calls of Run and back.
type Node interface {
	// Spec describes the class: its name, inputs and outputs, as ComfyUI's
	// /object_info shows them.
	Spec() Spec
	// Run executes the node once. Tensors in call.Inputs are *protocol.Tensor;
	// output tensors are returned as *protocol.Tensor and stay in this process
	// until another process needs them.
	Run(ctx context.Context, call *Call) (Result, error)
}

// Pack is what a plugin binary serves: a name and its node classes.
type Pack struct {
	Name  string
	Nodes []Node
}

// Spec describes a node class.
type Spec struct {
	ClassType   string // ComfyUI's class_type, unique across all loaded packs
	DisplayName string
	Category    string
	Description string
	OutputNode  bool // a node whose effect is the point (senders): a prompt needs one
	Inputs      []Input
	Outputs     []Output
}

// Link and widget types of inputs and outputs, as ComfyUI names them.
const (
	TypeImage   = "IMAGE"
	TypeMask    = "MASK"
	TypeInt     = "INT"
	TypeFloat   = "FLOAT"
	TypeString  = "STRING"
	TypeBoolean = "BOOLEAN"
	TypeCombo   = "COMBO"
)

// Input describes one input. Options is ComfyUI's option dictionary: "default",
// "min", "max", "step", "multiline", "tooltip" and so on; the host validates
// prompts against "min" and "max" and fills in "default" for absent inputs.
type Input struct {
	Name     string
	Type     string
	Optional bool
	Choices  []string // values of a COMBO input
	Options  map[string]any
}

// Output describes one output slot.
type Output struct {
	Name string
	Type string
}

// Call is one execution of a node.
type Call struct {
	NodeID   string
	PromptID string
	// Inputs by name: string, int64, float64, bool, *protocol.Tensor, or a
	// decoded JSON value (map[string]any, []any) for anything else.
	Inputs  map[string]any
	Limits  Limits
	Emitter Emitter
}

// Limits are the host's limits that a node must respect.
type Limits struct {
	MessageLimit int                  // every WebSocket message strictly smaller; 0 means protocol.DefaultMessageLimit
	Image        protocol.ImageLimits // sides and pixels of images a node accepts or makes
	// TensorBudget bounds the bytes of all tensors one prompt makes; a node
	// checks it with CheckTensorBytes before it allocates. 0 = no budget.
	TensorBudget int64
	// TensorHeld is what the prompt's earlier nodes still hold of the budget.
	TensorHeld int64
}

// Emitter carries what a running node sends to clients back to the host.
type Emitter interface {
	// EmitPart hands one part of an encoded image to the host's hub. The hub
	// shows an image to clients only when all its parts have arrived. It does
	// not modify p.Data, which the parts of a repeated image share.
	EmitPart(ctx context.Context, p *protocol.ImagePart) error
	// Progress reports value out of max units of work done.
	Progress(ctx context.Context, value, max int) error
}

// Result is what a node returns: one value per output slot (*protocol.Tensor
// for IMAGE and MASK), and the "ui" output that clients see in "executed".
type Result struct {
	Outputs []any
	UI      map[string]any
}

// InputDirEnv names the environment variable through which the host tells
// every plugin where uploaded images live (ComfyUI's input folder), so that
// loaders like LoadImage can open them.
const InputDirEnv = "NODECAST_INPUT_DIR"

// OutputDirEnv and TempDirEnv name the environment variables through which
// the host tells every plugin where SaveImage writes (ComfyUI's output
// folder) and where PreviewImage writes (its temp folder, emptied when the
// host starts).
const (
	OutputDirEnv = "NODECAST_OUTPUT_DIR"
	TempDirEnv   = "NODECAST_TEMP_DIR"
)

// Hidden input types: an input of one of these types is not a widget or a
// link but a value the host fills in, as ComfyUI fills its "hidden" inputs:
// the prompt being run (its API-format graph) and the request's
// extra_data.extra_pnginfo (the UI workflow, usually). Declare them
// Optional; a node gets them as decoded JSON (nil when the request had none).
const (
	TypePrompt       = "PROMPT"
	TypeExtraPNGInfo = "EXTRA_PNGINFO"
)

// Hidden input types for the request's secrets, the extra_data keys ComfyUI
// strips before it shows a prompt (execution.py SENSITIVE_EXTRA_DATA_KEYS)
// and hands to nodes as the hidden inputs "auth_token_comfy_org" and
// "api_key_comfy_org". TypeSecret gets the secret named by the input's own
// Name (any key the host's config adds to the list). A node gets the string,
// or nil when the request had none; the host never shows or logs it.
const (
	TypeAuthTokenComfyOrg = "AUTH_TOKEN_COMFY_ORG"
	TypeAPIKeyComfyOrg    = "API_KEY_COMFY_ORG"
	TypeSecret            = "SECRET"
)

// IsHidden reports whether the host fills in input in (see TypePrompt).
func IsHidden(in Input) bool {
	switch in.Type {
	case TypePrompt, TypeExtraPNGInfo, TypeAuthTokenComfyOrg, TypeAPIKeyComfyOrg, TypeSecret:
		return true
	}
	return false
}
