package plugins

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/protocol/pluginpb"
)

// packServer serves one Pack as the NodePack gRPC service, inside the plugin.
type packServer struct {
	pluginpb.UnimplementedNodePackServer
	describe *pluginpb.DescribeResponse
	nodes    map[string]Node
	store    *tensorStore
	mem      memoryReturner
}

func newPackServer(p Pack) (*packServer, error) {
	d, err := describePack(p)
	if err != nil {
		return nil, err
	}
	s := &packServer{describe: d, nodes: make(map[string]Node, len(p.Nodes)), store: newTensorStore()}
	for i, n := range p.Nodes {
		s.nodes[d.Nodes[i].ClassType] = n
	}
	return s, nil
}

func (s *packServer) Describe(context.Context, *pluginpb.DescribeRequest) (*pluginpb.DescribeResponse, error) {
	return s.describe, nil
}

func (s *packServer) PutTensor(stream grpc.ClientStreamingServer[pluginpb.TensorChunk, pluginpb.TensorRef]) error {
	t, _, err := receiveTensor(stream.Recv, nil)
	if err != nil {
		return transferStatus(err)
	}
	id := s.store.put(t)
	return stream.SendAndClose(&pluginpb.TensorRef{Id: id, Dtype: string(t.DType), Shape: shapeToProto(t.Shape)})
}

func (s *packServer) GetTensor(ref *pluginpb.TensorRef, stream grpc.ServerStreamingServer[pluginpb.TensorChunk]) error {
	t, ok := s.store.get(ref.GetId())
	if !ok {
		return status.Error(codes.NotFound, "no tensor "+strconv.Quote(ref.GetId()))
	}
	header := &pluginpb.TensorRef{Id: ref.GetId(), Dtype: string(t.DType), Shape: shapeToProto(t.Shape)}
	return sendTensor(t, header, stream.Send)
}

func (s *packServer) Release(_ context.Context, req *pluginpb.ReleaseRequest) (*pluginpb.ReleaseResponse, error) {
	freed := s.store.release(req.GetIds()...)
	n, _ := s.store.stats()
	s.mem.releasedIdle(freed, n == 0)
	return &pluginpb.ReleaseResponse{}, nil
}

func (s *packServer) Run(req *pluginpb.RunRequest, stream grpc.ServerStreamingServer[pluginpb.RunEvent]) error {
	ctx := stream.Context()
	node, ok := s.nodes[req.GetClassType()]
	if !ok {
		return stream.Send(failureEvent(&pluginpb.Failure{
			ExceptionType: ExceptionUnknownClass,
			Message:       "pack " + strconv.Quote(s.describe.Pack) + " serves no node class " + strconv.Quote(req.GetClassType()),
		}))
	}
	inputs, err := s.resolveInputs(req.GetInputs())
	if err != nil {
		return err
	}
	lim := req.GetLimits()
	s.mem.limitFor(lim.GetTensorBudget())
	em := &runEmitter{stream: stream}
	call := &Call{
		NodeID:   req.GetNodeId(),
		PromptID: req.GetPromptId(),
		Inputs:   inputs,
		Limits: Limits{
			MessageLimit: int(lim.GetMessageLimit()),
			Image:        protocol.ImageLimits{MaxSide: int(lim.GetMaxSide()), MaxPixels: lim.GetMaxPixels()},
			TensorBudget: lim.GetTensorBudget(),
			TensorHeld:   lim.GetTensorHeld(),
		},
		Emitter: em,
	}
	res, err := runNode(ctx, node, call)
	em.finish()
	if err != nil {
		return stream.Send(failureEvent(failureOf(err)))
	}
	ev, ids, err := s.resultEvent(res)
	if err != nil {
		return stream.Send(failureEvent(&pluginpb.Failure{ExceptionType: ExceptionBadOutput, Message: err.Error()}))
	}
	if err := stream.Send(ev); err != nil {
		s.store.release(ids...) // the host never learnt these ids
		return err
	}
	return nil
}

// resolveInputs turns wire inputs into Call.Inputs, looking tensors up in the store.
func (s *packServer) resolveInputs(in map[string]*pluginpb.Value) (map[string]any, error) {
	out := make(map[string]any, len(in))
	for name, v := range in {
		x, err := decodeValue(v, func(ref *pluginpb.TensorRef) (any, error) {
			t, ok := s.store.get(ref.GetId())
			if !ok {
				return nil, status.Error(codes.NotFound, "input "+strconv.Quote(name)+": no tensor "+strconv.Quote(ref.GetId()))
			}
			if d := ref.GetDtype(); d != "" && d != string(t.DType) {
				return nil, status.Error(codes.InvalidArgument, "input "+strconv.Quote(name)+": tensor "+
					strconv.Quote(ref.GetId())+" is "+string(t.DType)+", the reference says "+d)
			}
			return t, nil
		})
		if err != nil {
			if _, ok := status.FromError(err); ok {
				return nil, err
			}
			return nil, status.Error(codes.InvalidArgument, "input "+strconv.Quote(name)+": "+err.Error())
		}
		out[name] = x
	}
	return out, nil
}

// resultEvent stores the output tensors and encodes the rest. On error nothing
// stays stored; on success ids are the tensors stored for this result.
func (s *packServer) resultEvent(res Result) (*pluginpb.RunEvent, []string, error) {
	var ids []string
	fail := func(err error) (*pluginpb.RunEvent, []string, error) {
		s.store.release(ids...)
		return nil, nil, err
	}
	r := &pluginpb.RunResult{Outputs: make([]*pluginpb.Value, len(res.Outputs))}
	for i, o := range res.Outputs {
		if tv, ok := o.(protocol.Tensor); ok {
			o = &tv
		}
		if t, ok := o.(*protocol.Tensor); ok {
			if t == nil {
				r.Outputs[i] = &pluginpb.Value{}
				continue
			}
			if err := t.Validate(); err != nil {
				return fail(fmt.Errorf("output %d: %w", i, err))
			}
			id := s.store.put(t)
			ids = append(ids, id)
			r.Outputs[i] = &pluginpb.Value{Kind: &pluginpb.Value_Tensor{Tensor: &pluginpb.TensorRef{
				Id: id, Dtype: string(t.DType), Shape: shapeToProto(t.Shape), View: t.IsView()}}}
			continue
		}
		v, err := encodeValue(o)
		if errors.Is(err, errTensorValue) {
			return fail(fmt.Errorf("output %d is a %T: return one *protocol.Tensor per output slot", i, o))
		}
		if err != nil {
			return fail(fmt.Errorf("output %d: %w", i, err))
		}
		r.Outputs[i] = v
	}
	if res.UI != nil {
		j, err := json.Marshal(res.UI)
		if err != nil {
			return fail(fmt.Errorf("ui: %w", err))
		}
		r.UiJson = j
	}
	return &pluginpb.RunEvent{Event: &pluginpb.RunEvent_Result{Result: r}}, ids, nil
}

// transferStatus maps a failed tensor upload to a gRPC status.
func transferStatus(err error) error {
	var te *transferError
	if errors.As(err, &te) || errors.Is(err, protocol.ErrShape) || errors.Is(err, protocol.ErrDType) {
		return status.Error(codes.InvalidArgument, "tensor: "+err.Error())
	}
	return err
}

// runNode runs a node, turning a panic into an error so the plugin keeps
// serving. A panic in a goroutine the node started still kills the process.
func runNode(ctx context.Context, n Node, c *Call) (res Result, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return n.Run(ctx, c)
}

type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string         { return fmt.Sprint(e.value) }
func (e *panicError) ExceptionType() string { return ExceptionPanic }
func (e *panicError) Traceback() []string {
	return strings.Split(strings.TrimRight(string(e.stack), "\n"), "\n")
}

// failureOf describes a node's error for the host. The exception type is the
// error's own ExceptionType() when it has one, else its Go type; the traceback
// is its own Traceback() when it has one, else the chain of wrapped errors.
func failureOf(err error) *pluginpb.Failure {
	f := &pluginpb.Failure{ExceptionType: goErrorType(err), Message: err.Error()}
	var typed interface{ ExceptionType() string }
	if errors.As(err, &typed) {
		f.ExceptionType = typed.ExceptionType()
	}
	var tb interface{ Traceback() []string }
	if errors.As(err, &tb) {
		f.Traceback = tb.Traceback()
		return f
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		f.Traceback = append(f.Traceback, fmt.Sprintf("%T: %v", e, e))
	}
	return f
}

// goErrorType is the Go type of err, looking through fmt.Errorf's wrapper,
// whose own name (*fmt.wrapError) says nothing about the failure.
func goErrorType(err error) string {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if name := fmt.Sprintf("%T", e); name != "*fmt.wrapError" {
			return name
		}
	}
	return fmt.Sprintf("%T", err)
}

func failureEvent(f *pluginpb.Failure) *pluginpb.RunEvent {
	return &pluginpb.RunEvent{Event: &pluginpb.RunEvent_Failure{Failure: f}}
}

// runEmitter sends a running node's parts and progress on its Run stream, one
// Send at a time: gRPC streams are not safe for concurrent Send, and a node
// may emit from several goroutines.
type runEmitter struct {
	stream grpc.ServerStreamingServer[pluginpb.RunEvent]
	mu     sync.Mutex
	done   bool
}

func (e *runEmitter) EmitPart(ctx context.Context, p *protocol.ImagePart) error {
	if p == nil {
		return errors.New("plugins: EmitPart: nil part")
	}
	if len(p.Data) > maxPartBytes {
		return &protocol.LimitError{What: "image part bytes", Value: int64(len(p.Data)), Limit: maxPartBytes}
	}
	return e.send(ctx, &pluginpb.RunEvent{Event: &pluginpb.RunEvent_Part{Part: &pluginpb.ImagePart{
		Event: p.Event, PromptId: p.PromptID, Node: p.Node, ImageId: p.ImageID,
		Index: int64(p.Index), Batch: int64(p.Batch), Part: int64(p.Part), Parts: int64(p.Parts),
		Offset: p.Offset, Size: p.Size, Mime: p.MIME, Sha256: p.SHA256,
		Label: p.Label, Wire: string(p.Wire), Data: p.Data,
	}}})
}

func (e *runEmitter) Progress(ctx context.Context, value, max int) error {
	return e.send(ctx, &pluginpb.RunEvent{Event: &pluginpb.RunEvent_Progress{Progress: &pluginpb.Progress{
		Value: int64(value), Max: int64(max)}}})
}

func (e *runEmitter) send(ctx context.Context, ev *pluginpb.RunEvent) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return ErrRunFinished
	}
	if err := e.stream.Send(ev); err != nil {
		if cerr := e.stream.Context().Err(); cerr != nil {
			return cerr // the host cancelled the run or went away
		}
		return err
	}
	return nil
}

// finish makes later emits fail with ErrRunFinished; it waits for an emit in
// flight, so the final event is never sent concurrently with one.
func (e *runEmitter) finish() {
	e.mu.Lock()
	e.done = true
	e.mu.Unlock()
}

// tensorStore holds the tensors a plugin made or received, by id, until the
// host releases them. It does not evict: the host owns their lifetime.
type tensorStore struct {
	mu    sync.Mutex
	m     map[string]*protocol.Tensor
	bytes int64
}

func newTensorStore() *tensorStore { return &tensorStore{m: make(map[string]*protocol.Tensor)} }

func (s *tensorStore) put(t *protocol.Tensor) string {
	id := rand.Text()
	s.mu.Lock()
	s.m[id] = t
	s.bytes += t.OwnBytes()
	s.mu.Unlock()
	return id
}

func (s *tensorStore) get(id string) (*protocol.Tensor, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.m[id]
	return t, ok
}

// release forgets tensors and returns how many bytes they held.
func (s *tensorStore) release(ids ...string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var freed int64
	for _, id := range ids {
		if t, ok := s.m[id]; ok {
			freed += t.OwnBytes()
			delete(s.m, id)
		}
	}
	s.bytes -= freed
	return freed
}

func (s *tensorStore) stats() (int, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m), s.bytes
}
