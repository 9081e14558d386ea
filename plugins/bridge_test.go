package plugins_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/protocol/pluginpb"
)

// inProcess connects a PackClient to the test pack over a real gRPC
// connection inside this process, as go-plugin's own tests do.
type inProcess struct {
	client *plugins.PackClient
	plugin *plugins.NodePackPlugin
	raw    pluginpb.NodePackClient
}

func newInProcess(tb testing.TB) inProcess {
	tb.Helper()
	p := &plugins.NodePackPlugin{Pack: testPack()}
	client, server := plugin.TestPluginGRPCConn(tb, false, map[string]plugin.Plugin{plugins.PluginName: p})
	tb.Cleanup(func() {
		// Stop the server first: client.Close asks it to stop itself, and
		// go-plugin's Stop is not safe to run twice at once.
		server.Stop()
		_ = client.Close()
	})
	raw, err := client.Dispense(plugins.PluginName)
	if err != nil {
		tb.Fatal(err)
	}
	pc, ok := raw.(*plugins.PackClient)
	if !ok {
		tb.Fatalf("dispensed %T, want *plugins.PackClient", raw)
	}
	return inProcess{client: pc, plugin: p, raw: pluginpb.NewNodePackClient(client.Conn)}
}

func TestDescribe(t *testing.T) {
	ip := newInProcess(t)
	pack, specs, err := ip.client.Describe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if pack != testPackName {
		t.Errorf("pack = %q, want %q", pack, testPackName)
	}
	if want := len(testPack().Nodes); len(specs) != want {
		t.Fatalf("%d specs, want %d", len(specs), want)
	}
	want := invertNode{}.Spec()
	// Options cross as JSON, so their numbers come back as float64.
	want.Inputs[2].Options = map[string]any{"default": 512.0, "min": 1.0, "max": 4096.0}
	if !reflect.DeepEqual(specs[0], want) {
		t.Errorf("spec\n got %#v\nwant %#v", specs[0], want)
	}
}

func TestRunInvert(t *testing.T) {
	ip := newInProcess(t)
	ctx := t.Context()
	in := randomTensor(protocol.Float32, 1, 3, 5, 3)
	ref, err := ip.client.PutTensor(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	var progress [][2]int
	res, err := ip.client.Run(ctx, plugins.RunRequest{
		ClassType: "test.Invert", NodeID: "7", PromptID: "p1",
		Inputs: map[string]any{"image": ref},
	}, plugins.RunHandlers{Progress: func(v, m int) { progress = append(progress, [2]int{v, m}) }})
	if err != nil {
		t.Fatal(err)
	}
	if want := [][2]int{{0, 1}, {1, 1}}; !reflect.DeepEqual(progress, want) {
		t.Errorf("progress = %v, want %v", progress, want)
	}
	if len(res.Outputs) != 1 {
		t.Fatalf("outputs = %v", res.Outputs)
	}
	outRef, ok := res.Outputs[0].(plugins.TensorRef)
	if !ok {
		t.Fatalf("output is %T, want TensorRef", res.Outputs[0])
	}
	if outRef.DType != protocol.Float32 || !reflect.DeepEqual(outRef.Shape, in.Shape) || outRef.ID == "" || outRef.ID == ref.ID {
		t.Errorf("output ref = %+v", outRef)
	}
	out, err := ip.client.GetTensor(ctx, outRef)
	if err != nil {
		t.Fatal(err)
	}
	got := out.Float32s()
	for i, v := range in.Float32s() {
		if got[i] != 1-v {
			t.Fatalf("element %d = %v, want %v", i, got[i], 1-v)
		}
	}
	if n, _ := ip.plugin.Stored(); n != 2 {
		t.Errorf("plugin stores %d tensors, want 2", n)
	}
	if err := ip.client.Release(ctx, ref.ID, outRef.ID, "never-stored"); err != nil {
		t.Fatal(err)
	}
	if n, b := ip.plugin.Stored(); n != 0 || b != 0 {
		t.Errorf("after release the plugin stores %d tensors of %d bytes", n, b)
	}
}

func TestRunParts(t *testing.T) {
	ip := newInProcess(t)
	var parts []*protocol.ImagePart
	res, err := ip.client.Run(t.Context(), plugins.RunRequest{
		ClassType: "test.Parts", NodeID: "9", PromptID: "p2",
		Inputs: map[string]any{"count": 3, "size": 1000, "event": "myevent"},
	}, plugins.RunHandlers{Part: func(p *protocol.ImagePart) error { parts = append(parts, p); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 3 {
		t.Fatalf("got %d parts, want 3", len(parts))
	}
	call := &plugins.Call{NodeID: "9", PromptID: "p2"}
	for i, p := range parts {
		if want := testPart(call, "myevent", i, 3, 1000); !reflect.DeepEqual(p, want) {
			t.Errorf("part %d\n got %+v\nwant %+v", i, p.PartHeader, want.PartHeader)
		}
	}
	want := plugins.RunResult{
		Outputs: []any{"done", int64(3)},
		UI:      map[string]any{"images": []any{map[string]any{"image_id": "img-9"}}},
	}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("result = %#v, want %#v", res, want)
	}
}

func TestRunValues(t *testing.T) {
	ip := newInProcess(t)
	ctx := t.Context()
	ref, err := ip.client.PutTensor(ctx, randomTensor(protocol.Uint8, 4))
	if err != nil {
		t.Fatal(err)
	}
	res, err := ip.client.Run(ctx, plugins.RunRequest{ClassType: "test.Echo", Inputs: map[string]any{
		"s": "text", "i": 42, "f": 0.5, "b": true,
		"j": map[string]any{"list": []int{1, 2}, "name": "x"},
		"t": ref,
	}}, plugins.RunHandlers{})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"text", int64(42), 0.5, true, map[string]any{"list": []any{1.0, 2.0}, "name": "x"}, nil}
	got := res.Outputs
	outRef, ok := got[5].(plugins.TensorRef)
	if !ok || outRef.DType != protocol.Uint8 || !reflect.DeepEqual(outRef.Shape, []int{4}) {
		t.Errorf("tensor output = %#v", got[5])
	}
	got[5] = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outputs\n got %#v\nwant %#v", got, want)
	}

	// Tensors cross only by reference.
	_, err = ip.client.Run(ctx, plugins.RunRequest{ClassType: "test.Echo", NodeID: "3",
		Inputs: map[string]any{"t": protocol.NewFloat32(1)}}, plugins.RunHandlers{})
	var ie *plugins.InputError
	if !errors.As(err, &ie) || ie.Input != "t" || ie.Node != "3" {
		t.Errorf("tensor input by value: err = %v, want an *InputError for t", err)
	}
}

func TestTensorRoundTrip(t *testing.T) {
	ip := newInProcess(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name  string
		dtype protocol.DType
		shape []int
	}{
		{"one element", protocol.Uint8, []int{1}},
		{"exactly one chunk", protocol.Uint8, []int{1 << 20}},
		{"odd uint8 image", protocol.Uint8, []int{1, 999, 1001, 3}},
		{"5 MiB float32", protocol.Float32, []int{1, 512, 640, 4}},
		{"48 MiB float32", protocol.Float32, []int{1, 2048, 2048, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := randomTensor(tc.dtype, tc.shape...)
			ref, err := ip.client.PutTensor(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if ref.DType != tc.dtype || !reflect.DeepEqual(ref.Shape, tc.shape) {
				t.Errorf("ref = %+v", ref)
			}
			for range 2 { // the plugin keeps its copy
				out, err := ip.client.GetTensor(ctx, ref)
				if err != nil {
					t.Fatal(err)
				}
				if out.DType != tc.dtype || !reflect.DeepEqual(out.Shape, tc.shape) || !bytes.Equal(out.Data, in.Data) {
					t.Fatalf("round trip differs: %s%v, %d bytes", out.DType, out.Shape, len(out.Data))
				}
				if tc.dtype == protocol.Float32 && uintptr(unsafe.Pointer(&out.Data[0]))%4 != 0 {
					t.Errorf("received data is not 4-byte aligned")
				}
			}
			if n, b := ip.plugin.Stored(); n != 1 || b != int64(len(in.Data)) {
				t.Errorf("plugin stores %d tensors of %d bytes, want 1 of %d", n, b, len(in.Data))
			}
			if err := ip.client.Release(ctx, ref.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := ip.client.GetTensor(ctx, ref); !errors.Is(err, plugins.ErrUnknownTensor) {
				t.Errorf("get after release: err = %v, want ErrUnknownTensor", err)
			}
		})
	}
}

func TestPutTensorRefusesBadTensor(t *testing.T) {
	ip := newInProcess(t)
	bad := &protocol.Tensor{DType: protocol.Float32, Shape: []int{2, 2}, Data: make([]byte, 15)}
	if _, err := ip.client.PutTensor(t.Context(), bad); !errors.Is(err, protocol.ErrShape) {
		t.Errorf("err = %v, want protocol.ErrShape", err)
	}
}

// TestPutTensorStreamChecks sends raw chunk streams that break the contract.
func TestPutTensorStreamChecks(t *testing.T) {
	ip := newInProcess(t)
	header := func(dtype string, shape ...int64) *pluginpb.TensorRef {
		return &pluginpb.TensorRef{Dtype: dtype, Shape: shape}
	}
	for _, tc := range []struct {
		name   string
		chunks []*pluginpb.TensorChunk
		reason string
	}{
		{"no chunks", nil, "no chunks"},
		{"no header", []*pluginpb.TensorChunk{{Data: make([]byte, 16)}}, "no header"},
		{"more bytes than the shape", []*pluginpb.TensorChunk{{Header: header("float32", 2, 2), Data: make([]byte, 12)}, {Data: make([]byte, 8)}}, "more than the 16 bytes"},
		{"fewer bytes than the shape", []*pluginpb.TensorChunk{{Header: header("float32", 2, 2), Data: make([]byte, 8)}}, "got 8 bytes"},
		{"unknown dtype", []*pluginpb.TensorChunk{{Header: header("float16", 2), Data: make([]byte, 4)}}, "unknown dtype"},
		{"zero dimension", []*pluginpb.TensorChunk{{Header: header("uint8", 0)}}, "at least 1"},
		{"negative dimension", []*pluginpb.TensorChunk{{Header: header("uint8", -3)}}, "out of range"},
		{"second header", []*pluginpb.TensorChunk{{Header: header("uint8", 4), Data: make([]byte, 2)}, {Header: header("uint8", 4), Data: make([]byte, 2)}}, "after the first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream, err := ip.raw.PutTensor(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.chunks {
				if err := stream.Send(c); err != nil && !errors.Is(err, io.EOF) {
					t.Fatal(err)
				}
			}
			_, err = stream.CloseAndRecv()
			if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.reason) {
				t.Errorf("err = %v, want InvalidArgument mentioning %q", err, tc.reason)
			}
			if n, _ := ip.plugin.Stored(); n != 0 {
				t.Errorf("plugin stored %d tensors", n)
			}
		})
	}
}

func TestNodeFailures(t *testing.T) {
	ip := newInProcess(t)
	for _, tc := range []struct {
		name, class, kind string
		excType, message  string
		traceback         string // a line that must appear
	}{
		{"input error", "test.Fail", "input", "*plugins.InputError", `input "missing": missing`, "*errors.errorString: plugins: bad input"},
		{"typed error", "test.Fail", "typed", "ValueError", "wrapped: value out of range", "line two"},
		{"panic", "test.Fail", "panic", plugins.ExceptionPanic, "assignment to entry in nil map", "failNode.Run"},
		{"invalid output tensor", "test.Fail", "badtensor", plugins.ExceptionBadOutput, "output 0: protocol: tensor shape [2 2]", ""},
		{"output that is not JSON", "test.Fail", "badvalue", plugins.ExceptionBadOutput, "output 0: func()", ""},
		{"unknown class", "test.Nope", "", plugins.ExceptionUnknownClass, `serves no node class "test.Nope"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ip.client.Run(t.Context(), plugins.RunRequest{ClassType: tc.class, NodeID: "5",
				Inputs: map[string]any{"kind": tc.kind}}, plugins.RunHandlers{})
			var f *plugins.NodeFailure
			if !errors.As(err, &f) || !errors.Is(err, plugins.ErrNodeFailed) {
				t.Fatalf("err = %v, want a *NodeFailure", err)
			}
			if f.ClassType != tc.class || f.ExceptionType != tc.excType || !strings.Contains(f.Message, tc.message) {
				t.Errorf("failure = %s / %s / %q", f.ClassType, f.ExceptionType, f.Message)
			}
			if tc.traceback != "" && !strings.Contains(strings.Join(f.Traceback, "\n"), tc.traceback) {
				t.Errorf("traceback lacks %q:\n%s", tc.traceback, strings.Join(f.Traceback, "\n"))
			}
			// The plugin keeps serving, and kept no output.
			if _, _, err := ip.client.Describe(t.Context()); err != nil {
				t.Fatal(err)
			}
			if n, _ := ip.plugin.Stored(); n != 0 {
				t.Errorf("plugin stores %d tensors after a failure", n)
			}
		})
	}
}

func TestUnknownTensor(t *testing.T) {
	ip := newInProcess(t)
	ref := plugins.TensorRef{ID: "no-such-id", DType: protocol.Float32, Shape: []int{1, 1, 1, 3}}
	_, err := ip.client.GetTensor(t.Context(), ref)
	var ce *plugins.CallError
	if !errors.Is(err, plugins.ErrUnknownTensor) || !errors.As(err, &ce) || ce.Op != "GetTensor" || !strings.Contains(err.Error(), "no-such-id") {
		t.Errorf("GetTensor: err = %v, want a GetTensor *CallError of ErrUnknownTensor naming the id", err)
	}
	_, err = ip.client.Run(t.Context(), plugins.RunRequest{ClassType: "test.Invert",
		Inputs: map[string]any{"image": ref}}, plugins.RunHandlers{})
	if !errors.Is(err, plugins.ErrUnknownTensor) || !strings.Contains(err.Error(), `input "image"`) {
		t.Errorf("Run: err = %v, want ErrUnknownTensor naming the input", err)
	}
}

func TestRunCancelled(t *testing.T) {
	ip := newInProcess(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err := ip.client.Run(ctx, plugins.RunRequest{ClassType: "test.Block"},
		plugins.RunHandlers{Progress: func(int, int) { cancel() }})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if err := <-blockCancelled; !errors.Is(err, context.Canceled) {
		t.Errorf("the node saw %v, want context.Canceled", err)
	}
}

func TestPartHandlerErrorAbortsRun(t *testing.T) {
	ip := newInProcess(t)
	stop := errors.New("client went away")
	parts := 0
	_, err := ip.client.Run(t.Context(), plugins.RunRequest{ClassType: "test.Flood"},
		plugins.RunHandlers{Part: func(*protocol.ImagePart) error { parts++; return stop }})
	if !errors.Is(err, stop) || parts != 1 {
		t.Errorf("err = %v after %d parts, want the handler's error after 1", err, parts)
	}
	if err := <-floodErrs; !errors.Is(err, context.Canceled) {
		t.Errorf("the node's EmitPart failed with %v, want context.Canceled", err)
	}
}

func TestEmitAfterRunFails(t *testing.T) {
	ip := newInProcess(t)
	if _, err := ip.client.Run(t.Context(), plugins.RunRequest{ClassType: "test.Leak"}, plugins.RunHandlers{}); err != nil {
		t.Fatal(err)
	}
	em := <-leaked
	call := &plugins.Call{NodeID: "1"}
	if err := em.EmitPart(t.Context(), testPart(call, "late", 0, 1, 10)); !errors.Is(err, plugins.ErrRunFinished) {
		t.Errorf("EmitPart: err = %v, want ErrRunFinished", err)
	}
	if err := em.Progress(t.Context(), 1, 1); !errors.Is(err, plugins.ErrRunFinished) {
		t.Errorf("Progress: err = %v, want ErrRunFinished", err)
	}
}

// TestConcurrentRuns runs nodes that emit from several goroutines, several at
// a time; the race detector checks the serialised sends.
func TestConcurrentRuns(t *testing.T) {
	ip := newInProcess(t)
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			seen := make(map[int]bool)
			_, err := ip.client.Run(t.Context(), plugins.RunRequest{ClassType: "test.Parallel", NodeID: string(rune('a' + r))},
				plugins.RunHandlers{Part: func(p *protocol.ImagePart) error {
					if seen[p.Part] || !bytes.Equal(p.Data, partData(p.Part, 1000)) {
						t.Errorf("run %d: part %d repeated or corrupt", r, p.Part)
					}
					seen[p.Part] = true
					return nil
				}})
			if err != nil {
				t.Error(err)
			}
			if len(seen) != parallelWorkers*parallelParts {
				t.Errorf("run %d: %d parts, want %d", r, len(seen), parallelWorkers*parallelParts)
			}
		})
	}
	wg.Wait()
}

// randomTensor fills a tensor with reproducible values (floats in 0..1). It
// draws a block whose length is prime, so no two chunks of the transfer are
// alike, and tiles it with copy, which stays fast under the race detector.
func randomTensor(dtype protocol.DType, shape ...int) *protocol.Tensor {
	const period = 250_007
	rng := rand.New(rand.NewPCG(uint64(len(shape)), 7))
	n := 1
	for _, d := range shape {
		n *= d
	}
	if dtype == protocol.Float32 {
		t := protocol.NewFloat32(shape...)
		tile(t.Float32s(), period, rng.Float32)
		return t
	}
	b := make([]byte, n)
	tile(b, period, func() byte { return byte(rng.Uint32()) })
	return protocol.FromUint8(b, shape...)
}

func tile[T any](dst []T, period int, next func() T) {
	block := dst[:min(period, len(dst))]
	for i := range block {
		block[i] = next()
	}
	for i := len(block); i < len(dst); i += len(block) {
		copy(dst[i:], block)
	}
}

// TestViewCrossesAsOneTensor: a view (a repeated batch sharing one image's
// memory) is streamed item by item and arrives as one contiguous tensor with
// the same bytes; a Unorm8 tensor keeps its dtype across.
func TestViewCrossesAsOneTensor(t *testing.T) {
	ip := newInProcess(t)
	one := randomTensor(protocol.Unorm8, 1, 700, 900, 3)
	view := &protocol.Tensor{DType: protocol.Unorm8, Shape: []int{3, 700, 900, 3}, Items: [][]byte{one.Data, one.Data, one.Data}}
	ref, err := ip.client.PutTensor(t.Context(), view)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ip.client.GetTensor(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if out.DType != protocol.Unorm8 || out.IsView() || !bytes.Equal(out.Data, bytes.Repeat(one.Data, 3)) {
		t.Fatalf("got %s%v view=%v, %d bytes", out.DType, out.Shape, out.IsView(), len(out.Data))
	}
}
