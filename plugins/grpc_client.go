package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/protocol/pluginpb"
)

// TensorRef names a tensor held by a plugin. The tensor stays there until the
// host releases it; only its dtype and shape travel with the reference.
type TensorRef struct {
	ID    string
	DType protocol.DType
	Shape []int
	// View: the tensor shares the memory of tensors the plugin already
	// holds (a repeated or joined batch), so it costs the budget no bytes.
	View bool
}

// RunRequest asks a plugin to run one node.
type RunRequest struct {
	ClassType string
	NodeID    string
	PromptID  string
	// Inputs by name: string, int64 (or any integer), float64, bool, TensorRef
	// for a tensor already in this plugin, nil for absent, or any other value
	// that encodes as JSON. A *protocol.Tensor must be put with PutTensor first.
	Inputs map[string]any
	Limits Limits
}

// RunHandlers receive what a node emits while it runs. Both run on the
// goroutine that called Run, in the order the node emitted; nil drops.
type RunHandlers struct {
	// Part receives one image part. Data is the handler's to keep. An error
	// aborts the run: the stream is cancelled and Run returns the error.
	Part func(*protocol.ImagePart) error
	// Progress receives value out of max units of work done.
	Progress func(value, max int)
}

// RunResult is a node's result: one value per output slot (TensorRef, string,
// int64, float64, bool, a decoded JSON value, or nil) and its "ui" output.
type RunResult struct {
	Outputs []any
	UI      map[string]any
}

// PackClient is the host's view of one plugin's pack. It is safe for
// concurrent use. Errors are a *NodeFailure when the node failed, a
// *CallError when the call did (process gone, unknown tensor, broken
// contract), or the caller's context error.
type PackClient struct {
	rpc  pluginpb.NodePackClient
	done context.Context // cancelled by go-plugin when the plugin process exits
}

func newPackClient(done context.Context, conn grpc.ClientConnInterface) *PackClient {
	if done == nil {
		done = context.Background()
	}
	return &PackClient{rpc: pluginpb.NewNodePackClient(conn), done: done}
}

// Describe returns the pack's name and the node classes it serves. Input
// options are decoded JSON, so their numbers are float64.
func (c *PackClient) Describe(ctx context.Context) (pack string, specs []Spec, err error) {
	if err := c.exited("Describe"); err != nil {
		return "", nil, err
	}
	resp, err := c.rpc.Describe(ctx, &pluginpb.DescribeRequest{})
	if err != nil {
		return "", nil, c.callErr(ctx, "Describe", err)
	}
	for _, ns := range resp.GetNodes() {
		s, err := specFromProto(ns)
		if err != nil {
			return "", nil, err
		}
		specs = append(specs, s)
	}
	return resp.GetPack(), specs, nil
}

// Run runs one node and returns its result after streaming its parts and
// progress to h. Cancelling ctx cancels the run in the plugin.
func (c *PackClient) Run(ctx context.Context, req RunRequest, h RunHandlers) (RunResult, error) {
	in := make(map[string]*pluginpb.Value, len(req.Inputs))
	for name, v := range req.Inputs {
		pv, err := inputValue(v)
		if err != nil {
			return RunResult{}, &InputError{Node: req.NodeID, Input: name, Reason: err.Error()}
		}
		in[name] = pv
	}
	if err := c.exited("Run"); err != nil {
		return RunResult{}, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Run(runCtx, &pluginpb.RunRequest{
		ClassType: req.ClassType,
		NodeId:    req.NodeID,
		PromptId:  req.PromptID,
		Inputs:    in,
		Limits: &pluginpb.RunLimits{
			MessageLimit: int64(req.Limits.MessageLimit),
			MaxSide:      int64(req.Limits.Image.MaxSide),
			MaxPixels:    req.Limits.Image.MaxPixels,
			TensorBudget: req.Limits.TensorBudget,
			TensorHeld:   req.Limits.TensorHeld,
		},
	})
	if err != nil {
		return RunResult{}, c.callErr(ctx, "Run", err)
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return RunResult{}, &CallError{Op: "Run", Kind: ErrProtocol, Reason: req.ClassType + " ended without a result"}
		}
		if err != nil {
			return RunResult{}, c.callErr(ctx, "Run", err)
		}
		switch e := ev.GetEvent().(type) {
		case *pluginpb.RunEvent_Part:
			if h.Part != nil {
				if err := h.Part(partFromProto(e.Part)); err != nil {
					cancel()
					return RunResult{}, fmt.Errorf("plugins: Run %s: part handler: %w", req.ClassType, err)
				}
			}
		case *pluginpb.RunEvent_Progress:
			if h.Progress != nil {
				h.Progress(int(e.Progress.GetValue()), int(e.Progress.GetMax()))
			}
		case *pluginpb.RunEvent_Result:
			return c.result(ctx, e.Result)
		case *pluginpb.RunEvent_Failure:
			return RunResult{}, &NodeFailure{
				ClassType:     req.ClassType,
				ExceptionType: e.Failure.GetExceptionType(),
				Message:       e.Failure.GetMessage(),
				Traceback:     e.Failure.GetTraceback(),
			}
		default:
			return RunResult{}, &CallError{Op: "Run", Kind: ErrProtocol, Reason: fmt.Sprintf("unknown event %T", e)}
		}
	}
}

func inputValue(v any) (*pluginpb.Value, error) {
	switch x := v.(type) {
	case TensorRef:
		return tensorValue(x), nil
	case *TensorRef:
		if x == nil {
			return &pluginpb.Value{}, nil
		}
		return tensorValue(*x), nil
	case *protocol.Tensor, protocol.Tensor, []*protocol.Tensor:
		return nil, errors.New("a tensor must be put with PutTensor and passed as its TensorRef")
	}
	return encodeValue(v)
}

func tensorValue(r TensorRef) *pluginpb.Value {
	return &pluginpb.Value{Kind: &pluginpb.Value_Tensor{Tensor: &pluginpb.TensorRef{
		Id: r.ID, Dtype: string(r.DType), Shape: shapeToProto(r.Shape)}}}
}

// result decodes a run's result. When it cannot, it releases the result's
// tensors, since the caller will never learn their ids.
func (c *PackClient) result(ctx context.Context, r *pluginpb.RunResult) (RunResult, error) {
	var ids []string
	fail := func(reason string) (RunResult, error) {
		if len(ids) > 0 {
			_ = c.Release(ctx, ids...)
		}
		return RunResult{}, &CallError{Op: "Run", Kind: ErrProtocol, Reason: reason}
	}
	out := RunResult{Outputs: make([]any, len(r.GetOutputs()))}
	var bad string
	for i, v := range r.GetOutputs() {
		x, err := decodeValue(v, func(ref *pluginpb.TensorRef) (any, error) {
			ids = append(ids, ref.GetId())
			return refFromProto(ref)
		})
		if err != nil && bad == "" {
			bad = "output " + strconv.Itoa(i) + ": " + err.Error()
		}
		out.Outputs[i] = x
	}
	if bad != "" {
		return fail(bad)
	}
	if j := r.GetUiJson(); len(j) > 0 {
		if err := json.Unmarshal(j, &out.UI); err != nil {
			return fail("ui: " + err.Error())
		}
	}
	return out, nil
}

func refFromProto(r *pluginpb.TensorRef) (TensorRef, error) {
	shape, err := shapeFromProto(r.GetShape())
	if err != nil {
		return TensorRef{}, err
	}
	return TensorRef{ID: r.GetId(), DType: protocol.DType(r.GetDtype()), Shape: shape, View: r.GetView()}, nil
}

func partFromProto(p *pluginpb.ImagePart) *protocol.ImagePart {
	return &protocol.ImagePart{
		PartHeader: protocol.PartHeader{
			Event: p.GetEvent(), PromptID: p.GetPromptId(), Node: p.GetNode(), ImageID: p.GetImageId(),
			Index: int(p.GetIndex()), Batch: int(p.GetBatch()), Part: int(p.GetPart()), Parts: int(p.GetParts()),
			Offset: p.GetOffset(), Size: p.GetSize(), MIME: p.GetMime(), SHA256: p.GetSha256(),
		},
		Label: p.GetLabel(),
		Wire:  protocol.Wire(p.GetWire()),
		Data:  p.GetData(),
	}
}

// PutTensor stores t in the plugin, streamed in 1 MiB chunks, and returns its
// reference. t is validated first and not modified.
func (c *PackClient) PutTensor(ctx context.Context, t *protocol.Tensor) (TensorRef, error) {
	if t == nil {
		return TensorRef{}, errors.New("plugins: PutTensor: nil tensor")
	}
	if err := t.Validate(); err != nil {
		return TensorRef{}, fmt.Errorf("plugins: PutTensor: %w", err)
	}
	if err := c.exited("PutTensor"); err != nil {
		return TensorRef{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.PutTensor(ctx)
	if err != nil {
		return TensorRef{}, c.callErr(ctx, "PutTensor", err)
	}
	header := &pluginpb.TensorRef{Dtype: string(t.DType), Shape: shapeToProto(t.Shape)}
	// Send reports io.EOF when the plugin ended the stream; its reason comes
	// from CloseAndRecv.
	if err := sendTensor(t, header, stream.Send); err != nil && !errors.Is(err, io.EOF) {
		return TensorRef{}, c.callErr(ctx, "PutTensor", err)
	}
	ref, err := stream.CloseAndRecv()
	if err != nil {
		return TensorRef{}, c.callErr(ctx, "PutTensor", err)
	}
	r, err := refFromProto(ref)
	if err != nil {
		return TensorRef{}, &CallError{Op: "PutTensor", Kind: ErrProtocol, Reason: err.Error()}
	}
	return r, nil
}

// GetTensor fetches a copy of a tensor the plugin holds. It allocates once, at
// the size the first chunk's header promises, after checking that header
// against ref's dtype and shape when ref has them, and refuses any other byte
// count. Float32 data is 4-byte aligned. The plugin keeps its copy.
func (c *PackClient) GetTensor(ctx context.Context, ref TensorRef) (*protocol.Tensor, error) {
	if err := c.exited("GetTensor"); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.GetTensor(ctx, &pluginpb.TensorRef{Id: ref.ID, Dtype: string(ref.DType), Shape: shapeToProto(ref.Shape)})
	if err != nil {
		return nil, c.callErr(ctx, "GetTensor", err)
	}
	// A plugin must not make the host allocate more than the reference promised.
	check := func(h *pluginpb.TensorRef) error {
		dtype := protocol.DType(h.GetDtype())
		shape, err := shapeFromProto(h.GetShape())
		if err != nil {
			return err
		}
		if (ref.DType != "" && ref.DType != dtype) || (ref.Shape != nil && !slices.Equal(ref.Shape, shape)) {
			return &transferError{strconv.Quote(ref.ID) + " is " + string(dtype) + shapeString(shape) +
				", the reference says " + string(ref.DType) + shapeString(ref.Shape)}
		}
		return nil
	}
	t, _, err := receiveTensor(stream.Recv, check)
	if err != nil {
		return nil, c.callErr(ctx, "GetTensor", err)
	}
	return t, nil
}

// Release tells the plugin to forget tensors; unknown ids are ignored.
func (c *PackClient) Release(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := c.exited("Release"); err != nil {
		return err
	}
	if _, err := c.rpc.Release(ctx, &pluginpb.ReleaseRequest{Ids: ids}); err != nil {
		return c.callErr(ctx, "Release", err)
	}
	return nil
}

// exited fails fast once go-plugin has seen the process exit.
func (c *PackClient) exited(op string) error {
	if c.done.Err() != nil {
		return &CallError{Op: op, Kind: ErrUnavailable, Reason: "plugin process exited"}
	}
	return nil
}

// callErr turns a failed call into the caller's context error, or a *CallError
// whose Kind says what the host can do about it.
func (c *PackClient) callErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("plugins: %s: %w", op, context.Cause(ctx))
	}
	if c.done.Err() != nil {
		return &CallError{Op: op, Kind: ErrUnavailable, Reason: "plugin process exited"}
	}
	var te *transferError
	if errors.As(err, &te) || errors.Is(err, protocol.ErrShape) || errors.Is(err, protocol.ErrDType) {
		return &CallError{Op: op, Kind: ErrProtocol, Reason: "tensor: " + err.Error()}
	}
	st, ok := status.FromError(err)
	if !ok {
		return &CallError{Op: op, Kind: ErrProtocol, Reason: err.Error()}
	}
	kind := ErrProtocol
	switch st.Code() {
	case codes.Unavailable, codes.Canceled: // Canceled without our ctx: the connection closed
		kind = ErrUnavailable
	case codes.NotFound:
		kind = ErrUnknownTensor
	}
	return &CallError{Op: op, Kind: kind, Reason: st.Message()}
}
