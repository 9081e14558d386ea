// Package executortest provides an in-memory Runner and a recording
// Broadcaster, so the executor and the HTTP API can be tested without plugin
// processes (internal: test support, not the host's API). The Runner behaves
// like the supervisor: tensors are handles it holds until released, and its
// one pack can be made to die (Die), which loses every tensor it held, as a
// plugin process that exits does.
//
// It must never import sendimage or a node implementation.
package executortest

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/nodecast/nodecast/host/supervisor"
	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// Class names of the Runner's nodes.
const (
	ClassEmptyImage = "EmptyImage"           // width, height, batch_size -> IMAGE
	ClassLoadImage  = "LoadImage"            // image (an uploaded file) -> IMAGE, MASK
	ClassInvertMask = "InvertMask"           // mask -> MASK
	ClassPrimitive  = "PrimitiveInt"         // value -> INT
	ClassRepeat     = "RepeatImageBatch"     // image, amount -> IMAGE
	ClassSender     = "SendImageOnWebSocket" // output node: emits two parts per image and reports progress
	ClassFailing    = "FailingNode"          // output node: fails with a NodeFailure
	ClassSlow       = "SlowNode"             // output node: runs until its context ends
	// ClassSecrets is an output node that declares the secret hidden inputs
	// (auth_token_comfy_org, api_key_comfy_org, and "custom_secret" of
	// plugins.TypeSecret), then fails, so tests can check that the secrets
	// reached it (Calls) and that its execution_error does not show them.
	ClassSecrets = "SecretsNode"
	// PackName is the pack every handle names.
	PackName = "fake"
)

// Runner is an in-memory executor.Runner.
type Runner struct {
	// Started receives the node id of every SlowNode when it starts
	// (buffered; sends never block the node).
	Started chan string

	mu      sync.Mutex
	classes map[string]supervisor.Class
	next    int
	gen     int // the pack's generation: 1, plus one per death
	live    map[string]supervisor.Handle
	calls   []supervisor.Call
	deaths  []Death
}

// Death is a planned death of the Runner's pack, as a plugin process that
// exits in the middle of a call.
type Death struct {
	// ClassType: the death strikes in the next call of this class. "" = the
	// next call of any class.
	ClassType string
	// AfterImages: a SendImageOnWebSocket call hands on this many whole
	// images of its batch, and the first part of the next one, before it
	// dies. Other classes die before doing anything.
	AfterImages int
}

// NewRunner returns a Runner serving the classes named above.
func NewRunner() *Runner {
	r := &Runner{Started: make(chan string, 64), classes: map[string]supervisor.Class{}, gen: 1, live: map[string]supervisor.Handle{}}
	for _, s := range Specs() {
		r.classes[s.ClassType] = supervisor.Class{Spec: s, Pack: PackName}
	}
	return r
}

func intInput(name string, def, lo, hi int64) plugins.Input {
	return plugins.Input{Name: name, Type: plugins.TypeInt, Options: map[string]any{"default": def, "min": lo, "max": hi}}
}

// Specs returns the Specs of the Runner's classes.
func Specs() []plugins.Spec {
	image := plugins.Output{Name: "IMAGE", Type: plugins.TypeImage}
	mask := plugins.Output{Name: "MASK", Type: plugins.TypeMask}
	return []plugins.Spec{
		{
			ClassType: ClassEmptyImage, DisplayName: "Empty Image", Category: "image",
			Inputs: []plugins.Input{
				intInput("width", 64, 1, 16384), intInput("height", 64, 1, 16384), intInput("batch_size", 1, 1, 4096),
			},
			Outputs: []plugins.Output{image},
		},
		{
			ClassType: ClassLoadImage, DisplayName: "Load Image", Category: "image",
			Inputs:  []plugins.Input{{Name: "image", Type: plugins.TypeCombo, Options: map[string]any{"image_upload": true}}},
			Outputs: []plugins.Output{image, mask},
		},
		{
			ClassType: ClassInvertMask, DisplayName: "Invert Mask", Category: "mask",
			Inputs:  []plugins.Input{{Name: "mask", Type: plugins.TypeMask}},
			Outputs: []plugins.Output{mask},
		},
		{
			ClassType: ClassRepeat, DisplayName: "Repeat Image Batch", Category: "image/batch",
			Inputs:  []plugins.Input{{Name: "image", Type: plugins.TypeImage}, intInput("amount", 1, 1, 4096)},
			Outputs: []plugins.Output{image},
		},
		{
			ClassType: ClassPrimitive, DisplayName: "Int", Category: "utils",
			Inputs:  []plugins.Input{intInput("value", 1, -1000, 1000)},
			Outputs: []plugins.Output{{Name: "INT", Type: plugins.TypeInt}},
		},
		{
			ClassType: ClassSender, DisplayName: "Send Image (WebSocket)", Category: "nodecast", OutputNode: true,
			Description: "Sends images to clients.",
			Inputs: []plugins.Input{
				{Name: "images", Type: plugins.TypeImage},
				{Name: "event", Type: plugins.TypeString, Options: map[string]any{"default": "spec.default"}},
				{Name: "encoder", Type: plugins.TypeCombo, Choices: []string{"png", "jpeg", "webp"}, Options: map[string]any{"default": "png"}},
				{Name: "wire", Type: plugins.TypeCombo, Choices: []string{"comfy", "b64parts", "parts"}, Options: map[string]any{"default": "comfy"}},
				{Name: "part_size", Type: plugins.TypeInt, Optional: true, Options: map[string]any{"default": int64(0), "min": int64(0), "max": int64(1 << 30)}},
			},
		},
		{
			ClassType: ClassFailing, DisplayName: "Failing", Category: "testing", OutputNode: true,
			Inputs: []plugins.Input{{Name: "images", Type: plugins.TypeImage}},
		},
		{
			ClassType: ClassSecrets, DisplayName: "Secrets", Category: "testing", OutputNode: true,
			Inputs: []plugins.Input{
				{Name: "auth_token_comfy_org", Type: plugins.TypeAuthTokenComfyOrg, Optional: true},
				{Name: "api_key_comfy_org", Type: plugins.TypeAPIKeyComfyOrg, Optional: true},
				{Name: "custom_secret", Type: plugins.TypeSecret, Optional: true},
			},
		},
		{
			ClassType: ClassSlow, DisplayName: "Slow", Category: "testing", OutputNode: true,
			Inputs: []plugins.Input{{Name: "images", Type: plugins.TypeImage, Optional: true}},
		},
	}
}

// Class returns a class by name.
func (r *Runner) Class(name string) (supervisor.Class, bool) {
	c, ok := r.classes[name]
	return c, ok
}

// Classes lists every class, sorted by name.
func (r *Runner) Classes() []supervisor.Class {
	out := make([]supervisor.Class, 0, len(r.classes))
	for _, c := range r.classes {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.ClassType < out[j].Spec.ClassType })
	return out
}

// Held returns how many tensors are held (made, not released, and not lost
// with a dead pack).
func (r *Runner) Held() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live)
}

// Live reports whether h was made by the pack's running generation, as
// supervisor.Supervisor.Live does.
func (r *Runner) Live(h supervisor.Handle) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return h.Pack == PackName && h.Gen == r.gen
}

// Generation returns the pack's generation: 1, plus one per death.
func (r *Runner) Generation() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gen
}

// Die plans a death of the pack. Planned deaths strike in the order they
// were planned, one per call: the call fails with a *plugins.CallError of
// plugins.ErrUnavailable, and every tensor the pack held is lost.
func (r *Runner) Die(d Death) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deaths = append(r.deaths, d)
}

// die kills the pack now: its tensors are gone and its handles dead.
func (r *Runner) die() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	clear(r.live)
	return &plugins.CallError{Op: "Run", Kind: plugins.ErrUnavailable, Reason: "plugin process exited"}
}

// Calls returns every call run so far.
func (r *Runner) Calls() []supervisor.Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]supervisor.Call(nil), r.calls...)
}

// Release forgets tensors.
func (r *Runner) Release(_ context.Context, hs ...supervisor.Handle) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range hs {
		delete(r.live, h.Ref.ID)
	}
}

func (r *Runner) newTensor(dtype protocol.DType, shape ...int) supervisor.Handle {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	h := supervisor.Handle{Pack: PackName, Gen: r.gen, Ref: plugins.TensorRef{ID: fmt.Sprintf("t%d", r.next), DType: dtype, Shape: shape}}
	r.live[h.Ref.ID] = h
	return h
}

// tensor returns a live tensor input.
func (r *Runner) tensor(call supervisor.Call, name string) (supervisor.Handle, error) {
	h, ok := call.Inputs[name].(supervisor.Handle)
	if !ok {
		return h, &plugins.NodeFailure{ClassType: call.ClassType, ExceptionType: "TypeError", Message: fmt.Sprintf("input %q is %T, want a tensor handle", name, call.Inputs[name])}
	}
	r.mu.Lock()
	_, live := r.live[h.Ref.ID]
	gen := r.gen
	r.mu.Unlock()
	if h.Gen != gen {
		return h, fmt.Errorf("%w: input %q of node %s was made by pack %s generation %d, now %d",
			supervisor.ErrTensorLost, name, call.NodeID, h.Pack, h.Gen, gen)
	}
	if !live {
		return h, fmt.Errorf("%w: %s", plugins.ErrUnknownTensor, h.Ref.ID)
	}
	return h, nil
}

// Run runs one node.
func (r *Runner) Run(ctx context.Context, call supervisor.Call, h plugins.RunHandlers) (supervisor.Result, error) {
	r.mu.Lock()
	r.calls = append(r.calls, call)
	var death *Death
	if len(r.deaths) > 0 && (r.deaths[0].ClassType == "" || r.deaths[0].ClassType == call.ClassType) {
		death = &r.deaths[0]
		r.deaths = r.deaths[1:]
	}
	r.mu.Unlock()
	if call.ClassType == ClassSender {
		return r.send(ctx, call, h, death)
	}
	if death != nil {
		return supervisor.Result{}, r.die()
	}
	switch call.ClassType {
	case ClassEmptyImage:
		w, _ := call.Inputs["width"].(int64)
		ht, _ := call.Inputs["height"].(int64)
		b, _ := call.Inputs["batch_size"].(int64)
		return supervisor.Result{Outputs: []any{r.newTensor(protocol.Float32, int(b), int(ht), int(w), 3)}}, nil
	case ClassLoadImage:
		return supervisor.Result{Outputs: []any{r.newTensor(protocol.Float32, 1, 8, 8, 3), r.newTensor(protocol.Float32, 1, 8, 8)}}, nil
	case ClassInvertMask:
		m, err := r.tensor(call, "mask")
		if err != nil {
			return supervisor.Result{}, err
		}
		return supervisor.Result{Outputs: []any{r.newTensor(m.Ref.DType, m.Ref.Shape...)}}, nil
	case ClassRepeat:
		img, err := r.tensor(call, "image")
		if err != nil {
			return supervisor.Result{}, err
		}
		amount, _ := call.Inputs["amount"].(int64)
		shape := append([]int(nil), img.Ref.Shape...)
		if len(shape) == 0 {
			return supervisor.Result{}, &plugins.NodeFailure{ClassType: call.ClassType, ExceptionType: "ValueError", Message: "image has no batch dimension"}
		}
		shape[0] *= int(amount)
		return supervisor.Result{Outputs: []any{r.newTensor(img.Ref.DType, shape...)}}, nil
	case ClassPrimitive:
		return supervisor.Result{Outputs: []any{call.Inputs["value"]}}, nil
	case ClassSecrets:
		return supervisor.Result{}, &plugins.NodeFailure{ClassType: call.ClassType, ExceptionType: "PermissionError", Message: "refused"}
	case ClassFailing:
		return supervisor.Result{}, &plugins.NodeFailure{ClassType: call.ClassType, ExceptionType: "ValueError", Message: "boom", Traceback: []string{"  File \"fake.go\", line 1, in Run\n"}}
	case ClassSlow:
		select {
		case r.Started <- call.NodeID:
		default:
		}
		<-ctx.Done()
		return supervisor.Result{}, fmt.Errorf("slow node stopped: %w", context.Cause(ctx))
	}
	return supervisor.Result{}, &plugins.NodeFailure{ClassType: call.ClassType, ExceptionType: plugins.ExceptionUnknownClass, Message: "no such class"}
}

// send emits, per image of its batch, two parts with a progress report
// before each, and returns what it was asked to do as its UI output. With a
// death planned, it dies after death.AfterImages whole images and the first
// part of the next.
func (r *Runner) send(ctx context.Context, call supervisor.Call, h plugins.RunHandlers, death *Death) (supervisor.Result, error) {
	img, err := r.tensor(call, "images")
	if err != nil {
		return supervisor.Result{}, err
	}
	event, _ := call.Inputs["event"].(string)
	batch := 1
	if len(img.Ref.Shape) > 0 {
		batch = img.Ref.Shape[0]
	}
	const parts = 2
	for i := range batch {
		for p := range parts {
			if err := ctx.Err(); err != nil {
				return supervisor.Result{}, err
			}
			if h.Progress != nil {
				h.Progress(i*parts+p+1, batch*parts)
			}
			data := []byte{byte(i), byte(p)}
			part := &protocol.ImagePart{
				PartHeader: protocol.PartHeader{
					Event: event, PromptID: call.PromptID, Node: call.NodeID, ImageID: fmt.Sprintf("%s-%d", call.NodeID, i),
					Index: i, Batch: batch, Part: p, Parts: parts, Offset: int64(p * len(data)), Size: int64(parts * len(data)), MIME: "image/png",
				},
				Wire: protocol.Wire(fmt.Sprint(call.Inputs["wire"])), Data: data,
			}
			if h.Part != nil {
				if err := h.Part(part); err != nil {
					return supervisor.Result{}, err
				}
			}
			if death != nil && i == death.AfterImages {
				return supervisor.Result{}, r.die()
			}
		}
	}
	if death != nil { // the batch had no more images than death.AfterImages
		return supervisor.Result{}, r.die()
	}
	ui := map[string]any{"images": []any{map[string]any{
		"event": event, "encoder": call.Inputs["encoder"], "wire": call.Inputs["wire"],
		"part_size": call.Inputs["part_size"], "batch": batch,
	}}}
	return supervisor.Result{UI: ui}, nil
}

// Message is one thing the Broadcaster was asked to do.
type Message struct {
	ClientID string
	Type     string // a ComfyUI message type, or TypePart / TypeAbort
	Data     any    // the message data, the *protocol.ImagePart, or the aborted prompt id
}

// Pseudo message types the Broadcaster records for Publish and AbortImages.
const (
	TypePart  = "PART"
	TypeAbort = "ABORT"
)

// Broadcaster records everything in order. PublishErr, when set, is
// returned by Publish.
type Broadcaster struct {
	mu         sync.Mutex
	msgs       []Message
	PublishErr error
}

// SendJSON records a JSON message.
func (b *Broadcaster) SendJSON(clientID, typ string, data any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, Message{ClientID: clientID, Type: typ, Data: data})
}

// Publish records an image part.
func (b *Broadcaster) Publish(clientID string, p *protocol.ImagePart) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.PublishErr != nil {
		return b.PublishErr
	}
	b.msgs = append(b.msgs, Message{ClientID: clientID, Type: TypePart, Data: p})
	return nil
}

// AbortImages records an abort.
func (b *Broadcaster) AbortImages(promptID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, Message{Type: TypeAbort, Data: promptID})
}

// Messages returns what was recorded so far.
func (b *Broadcaster) Messages() []Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Message(nil), b.msgs...)
}

// Reset forgets what was recorded.
func (b *Broadcaster) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = nil
}
