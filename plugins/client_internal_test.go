package plugins

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/protocol/pluginpb"
)

// lyingPack is a NodePack server that breaks the contract in the ways the
// host must refuse.
type lyingPack struct {
	pluginpb.UnimplementedNodePackServer
	chunks []*pluginpb.TensorChunk
	events []*pluginpb.RunEvent
	nodes  []*pluginpb.NodeSpec

	mu       sync.Mutex
	released []string
}

func (l *lyingPack) Describe(context.Context, *pluginpb.DescribeRequest) (*pluginpb.DescribeResponse, error) {
	return &pluginpb.DescribeResponse{Pack: "liar", Nodes: l.nodes}, nil
}

func (l *lyingPack) GetTensor(_ *pluginpb.TensorRef, stream grpc.ServerStreamingServer[pluginpb.TensorChunk]) error {
	for _, c := range l.chunks {
		if err := stream.Send(c); err != nil {
			return err
		}
	}
	return nil
}

func (l *lyingPack) Run(_ *pluginpb.RunRequest, stream grpc.ServerStreamingServer[pluginpb.RunEvent]) error {
	for _, ev := range l.events {
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	return nil
}

func (l *lyingPack) Release(_ context.Context, req *pluginpb.ReleaseRequest) (*pluginpb.ReleaseResponse, error) {
	l.mu.Lock()
	l.released = append(l.released, req.GetIds()...)
	l.mu.Unlock()
	return &pluginpb.ReleaseResponse{}, nil
}

func newLyingClient(t *testing.T, l *lyingPack) *PackClient {
	conn, srv := plugin.TestGRPCConn(t, func(s *grpc.Server) { pluginpb.RegisterNodePackServer(s, l) })
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
	})
	return newPackClient(context.Background(), conn)
}

func TestGetTensorRefusesLyingPlugin(t *testing.T) {
	header := &pluginpb.TensorRef{Id: "a", Dtype: "float32", Shape: []int64{2, 2}}
	full := TensorRef{ID: "a", DType: protocol.Float32, Shape: []int{2, 2}}
	idOnly := TensorRef{ID: "a"}
	for _, tc := range []struct {
		name   string
		ref    TensorRef
		chunks []*pluginpb.TensorChunk
		reason string
	}{
		{"no chunks", full, nil, "no chunks"},
		{"no header", full, []*pluginpb.TensorChunk{{Data: make([]byte, 16)}}, "no header"},
		{"too many bytes", full, []*pluginpb.TensorChunk{{Header: header, Data: make([]byte, 16)}, {Data: make([]byte, 4)}}, "more than the 16 bytes"},
		{"too few bytes", full, []*pluginpb.TensorChunk{{Header: header, Data: make([]byte, 8)}}, "got 8 bytes"},
		{"another tensor", full, []*pluginpb.TensorChunk{{Header: &pluginpb.TensorRef{Id: "a", Dtype: "uint8", Shape: []int64{16}}, Data: make([]byte, 16)}}, `"a" is uint8[16], the reference says float32[2,2]`},
		{"larger than the reference", full, []*pluginpb.TensorChunk{{Header: &pluginpb.TensorRef{Id: "a", Dtype: "float32", Shape: []int64{1 << 40}}}}, "the reference says"},
		{"unknown dtype", idOnly, []*pluginpb.TensorChunk{{Header: &pluginpb.TensorRef{Id: "a", Dtype: "int4", Shape: []int64{2}}}}, "unknown dtype"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newLyingClient(t, &lyingPack{chunks: tc.chunks})
			_, err := c.GetTensor(t.Context(), tc.ref)
			var ce *CallError
			if !errors.As(err, &ce) || ce.Kind != ErrProtocol || ce.Op != "GetTensor" || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("err = %v, want a GetTensor ErrProtocol *CallError mentioning %q", err, tc.reason)
			}
		})
	}
}

func TestRunRefusesLyingPlugin(t *testing.T) {
	tensorOut := &pluginpb.Value{Kind: &pluginpb.Value_Tensor{Tensor: &pluginpb.TensorRef{Id: "t1", Dtype: "float32", Shape: []int64{1}}}}
	for _, tc := range []struct {
		name     string
		events   []*pluginpb.RunEvent
		reason   string
		released []string
	}{
		{"no result", []*pluginpb.RunEvent{{Event: &pluginpb.RunEvent_Progress{Progress: &pluginpb.Progress{Value: 1, Max: 2}}}}, "ended without a result", nil},
		{"empty event", []*pluginpb.RunEvent{{}}, "unknown event", nil},
		{"bad ui", []*pluginpb.RunEvent{{Event: &pluginpb.RunEvent_Result{Result: &pluginpb.RunResult{
			Outputs: []*pluginpb.Value{tensorOut}, UiJson: []byte("{nope")}}}}, "ui:", []string{"t1"}},
		{"bad output json", []*pluginpb.RunEvent{{Event: &pluginpb.RunEvent_Result{Result: &pluginpb.RunResult{
			Outputs: []*pluginpb.Value{tensorOut, {Kind: &pluginpb.Value_JsonValue{JsonValue: []byte("[")}}}}}}}, "output 1", []string{"t1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &lyingPack{events: tc.events}
			c := newLyingClient(t, l)
			_, err := c.Run(t.Context(), RunRequest{ClassType: "x"}, RunHandlers{})
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("err = %v, want ErrProtocol mentioning %q", err, tc.reason)
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if !reflect.DeepEqual(l.released, tc.released) {
				t.Errorf("released %v, want %v", l.released, tc.released)
			}
		})
	}
}

func TestDescribeRefusesBadOptions(t *testing.T) {
	c := newLyingClient(t, &lyingPack{nodes: []*pluginpb.NodeSpec{{ClassType: "x",
		Inputs: []*pluginpb.InputSpec{{Name: "a", OptionsJson: []byte("{")}}}}})
	if _, _, err := c.Describe(t.Context()); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), `x input "a" options`) {
		t.Errorf("err = %v, want ErrProtocol naming the input", err)
	}
}
