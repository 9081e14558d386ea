package builtin

import (
	"context"
	"errors"
	"fmt"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/sendimage"
)

// Event names of the senders whose event is not an input.
const (
	// DefaultEvent is SendImageOnWebSocket's event when the prompt sets none.
	DefaultEvent = "image"
	// EventETN names the PART frames of ETN_SendImageWebSocket (clients
	// without PART support get type 1 frames, which carry no event).
	EventETN = "etn_image"
	// EventSaveImageWebsocket names the PART frames of SaveImageWebsocket.
	EventSaveImageWebsocket = "save_image_websocket"
	// EventNTL is the type of the NTL senders' base64 JSON parts, the one the
	// ntlb64part client listens for.
	EventNTL = "ntlb64part"
)

// DefaultPartLen is the NTL senders' default partlen: base64 characters per part.
const DefaultPartLen = 1 << 20

// wireChoices are the values of SendImageOnWebSocket's wire input.
var wireChoices = []string{string(protocol.WireComfy), string(protocol.WireB64Parts), string(protocol.WireParts)}

// sendOptions fills the fields every sender sets the same way.
func (o Options) sendOptions(call *plugins.Call) sendimage.SendOptions {
	return sendimage.SendOptions{
		Registry:     o.registry(),
		MessageLimit: call.Limits.MessageLimit,
		Limits:       call.Limits.Image,
		PromptID:     call.PromptID,
		Node:         call.NodeID,
	}
}

// send runs sendimage.Send with call's emitter. Progress is reported by Send,
// one step per image.
func send(ctx context.Context, call *plugins.Call, opts sendimage.SendOptions) ([]sendimage.SentImage, error) {
	images, err := call.Tensor("images")
	if err != nil {
		return nil, err
	}
	if call.Emitter == nil {
		return nil, errors.New("builtin: the call has no Emitter to send images through")
	}
	return sendimage.Send(ctx, images, opts, call.Emitter)
}

// websocketUI is the "ui" output of ETN_SendImageWebSocket, which clients
// match to the images they received, by index.
func websocketUI(sent []sendimage.SentImage) map[string]any {
	list := make([]any, len(sent))
	for i, s := range sent {
		list[i] = map[string]any{"source": "websocket", "content-type": s.MIME, "type": "output"}
	}
	return map[string]any{"images": list}
}

var imagesInput = imageInput("images", "The images to send; each image of the batch is sent on its own.")

// sendImageOnWebSocket is SendImageOnWebSocket (ComfyUI-TensorOps), grown
// the options nodecast adds: encoder, wire and part size.
type sendImageOnWebSocket struct{ opts Options }

func (n *sendImageOnWebSocket) Spec() plugins.Spec {
	def := DefaultEvent
	encoders := n.opts.registry().Names()
	quality := intInput("quality", sendimage.DefaultJPEGQuality, 1, 100, "JPEG quality; other encoders ignore it.")
	quality.Optional = true
	return plugins.Spec{
		ClassType:   "SendImageOnWebSocket",
		DisplayName: "Send Image on WebSocket",
		Category:    categoryAPI,
		Description: "Encodes each image and sends it to the prompt's client under an event name, split into parts that fit one WebSocket message.",
		OutputNode:  true,
		Inputs: []plugins.Input{
			imagesInput,
			stringInput("event", &def, "Event name clients listen for: [A-Za-z0-9_.:-]{1,64}, not a ComfyUI message type."),
			comboInput("encoder", encoders, sendimage.DefaultEncoder, "Image file format."),
			comboInput("wire", wireChoices, string(protocol.WireParts),
				"parts: PART frames, base64 JSON for clients without them; b64parts: always base64 JSON; comfy: whole images as type 1 frames."),
			intInput("part_size", 0, 0, 1<<30, "Bytes of image per part; 0 is the largest that fits one message."),
			quality,
		},
	}
}

func (n *sendImageOnWebSocket) Run(ctx context.Context, call *plugins.Call) (plugins.Result, error) {
	event, err := call.String("event", DefaultEvent)
	if err != nil {
		return plugins.Result{}, err
	}
	encoder, err := call.String("encoder", sendimage.DefaultEncoder)
	if err != nil {
		return plugins.Result{}, err
	}
	wireName, err := call.String("wire", string(protocol.WireParts))
	if err != nil {
		return plugins.Result{}, err
	}
	wire, err := protocol.ParseWire(wireName)
	if err != nil {
		return plugins.Result{}, &plugins.InputError{Node: call.NodeID, Input: "wire", Reason: err.Error()}
	}
	partSize, err := intIn(call, "part_size", 0, 0, 1<<30)
	if err != nil {
		return plugins.Result{}, err
	}
	quality, err := intIn(call, "quality", sendimage.DefaultJPEGQuality, 1, 100)
	if err != nil {
		return plugins.Result{}, err
	}
	opts := n.opts.sendOptions(call)
	opts.Event, opts.Encoder, opts.Wire, opts.PartSize = event, encoder, wire, partSize
	opts.EncoderOptions = sendimage.EncoderOptions{Quality: quality}
	sent, err := send(ctx, call, opts)
	if err != nil {
		return plugins.Result{}, err
	}
	return plugins.Result{UI: websocketUI(sent)}, nil
}

// etnSendImageWebSocket is ETN_SendImageWebSocket: whole images as type 1
// frames (PART frames to clients that asked for them), PNG at the fast default level
// (where ComfyUI uses compress_level 1), or JPEG at quality 95.
type etnSendImageWebSocket struct{ opts Options }

// etnFormats maps ETN's format choices to encoders. WEBP and RAW are
// nodecast's: type 1 frames have no code for them, so clients without
// preview metadata or PART support get them as base64 parts.
var etnFormats = map[string]string{"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "RAW": "raw"}

func (n *etnSendImageWebSocket) Spec() plugins.Spec {
	return plugins.Spec{
		ClassType:   "ETN_SendImageWebSocket",
		DisplayName: "Send Image (WebSocket)",
		Category:    categoryExternal,
		Description: "Sends each image to the prompt's client as a binary WebSocket message.",
		OutputNode:  true,
		Inputs: []plugins.Input{
			imagesInput,
			comboInput("format", []string{"PNG", "JPEG", "WEBP", "RAW"}, "PNG", "Image file format (WEBP at the JPEG quality, RAW is netpbm PPM/PGM/PAM)."),
		},
	}
}

func (n *etnSendImageWebSocket) Run(ctx context.Context, call *plugins.Call) (plugins.Result, error) {
	format, err := call.String("format", "PNG")
	if err != nil {
		return plugins.Result{}, err
	}
	encoder, ok := etnFormats[format]
	if !ok {
		return plugins.Result{}, &plugins.InputError{Node: call.NodeID, Input: "format",
			Reason: fmt.Sprintf("%q is not PNG, JPEG, WEBP or RAW", format)}
	}
	opts := n.opts.sendOptions(call)
	opts.Event, opts.Encoder, opts.Wire = EventETN, encoder, protocol.WireComfy
	opts.EncoderOptions = sendimage.EncoderOptions{Quality: sendimage.DefaultJPEGQuality}
	sent, err := send(ctx, call, opts)
	if err != nil {
		return plugins.Result{}, err
	}
	return plugins.Result{UI: websocketUI(sent)}, nil
}

// saveImageWebsocket is ComfyUI's SaveImageWebsocket (its websocket_image_save
// example node): each image as a type 1 PNG frame, and no UI output.
type saveImageWebsocket struct{ opts Options }

func (n *saveImageWebsocket) Spec() plugins.Spec {
	return plugins.Spec{
		ClassType:   "SaveImageWebsocket",
		DisplayName: "SaveImageWebsocket",
		Category:    categoryAPI,
		Description: "Sends each image to the prompt's client as a binary PNG message instead of saving it.",
		OutputNode:  true,
		Inputs:      []plugins.Input{imagesInput},
	}
}

func (n *saveImageWebsocket) Run(ctx context.Context, call *plugins.Call) (plugins.Result, error) {
	opts := n.opts.sendOptions(call)
	opts.Event, opts.Encoder, opts.Wire = EventSaveImageWebsocket, "png", protocol.WireComfy
	opts.EncoderOptions = sendimage.EncoderOptions{}
	if _, err := send(ctx, call, opts); err != nil {
		return plugins.Result{}, err
	}
	return plugins.Result{}, nil
}

// ntlSendImageWebSocket is NTL_SendImageWebSocket and NTL_SendImagesWebSocket
// (the ntlb64part rewrite of ETN's sender; the two are the same node): PNG,
// base64 JSON parts of at most partlen characters, event "ntlb64part",
// grouped by nodelabel.
type ntlSendImageWebSocket struct {
	opts           Options
	class, display string
}

func (n *ntlSendImageWebSocket) Spec() plugins.Spec {
	return plugins.Spec{
		ClassType:   n.class,
		DisplayName: n.display,
		Category:    categoryExternal,
		Description: "Sends each image as PNG in base64 JSON parts of at most partlen characters (event ntlb64part).",
		OutputNode:  true,
		Inputs: []plugins.Input{
			imagesInput,
			stringInput("nodelabel", nil, "Label the client groups parts by; empty means the node id."),
			intInput("partlen", DefaultPartLen, 4, 1<<30,
				"Most base64 characters per part; rounded down to a multiple of 4, and each part must fit one WebSocket message."),
		},
	}
}

func (n *ntlSendImageWebSocket) Run(ctx context.Context, call *plugins.Call) (plugins.Result, error) {
	label, err := call.String("nodelabel", "")
	if err != nil {
		return plugins.Result{}, err
	}
	partLen, err := call.Int("partlen", DefaultPartLen)
	if err != nil {
		return plugins.Result{}, err
	}
	if partLen < 4 {
		return plugins.Result{}, &PartLenError{PartLen: partLen, Reason: "want at least 4 (one base64 quantum)"}
	}
	if partLen > 1<<30 {
		return plugins.Result{}, &PartLenError{PartLen: partLen, Reason: "over 1073741824"}
	}
	opts := n.opts.sendOptions(call)
	opts.Event, opts.Encoder, opts.Wire, opts.Label = EventNTL, "png", protocol.WireB64Parts, label
	// Every part but the last is a whole number of 3-byte groups, so its
	// base64 has no padding and the parts' strings join into the image's.
	opts.PartSize = int(partLen / 4 * 3)
	sent, err := send(ctx, call, opts)
	if err != nil {
		var le *protocol.LimitError
		if errors.As(err, &le) && le.What == "part size" {
			return plugins.Result{}, &PartLenError{PartLen: partLen, Err: err, Reason: fmt.Sprintf(
				"a part of %d base64 characters does not fit a WebSocket message under %d bytes; the largest partlen that fits is %d",
				partLen/4*4, call.Limits.MessageLimitOrDefault(), le.Limit/3*4)}
		}
		return plugins.Result{}, err
	}
	return plugins.Result{UI: websocketUI(sent)}, nil
}
