package plugins_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"testing"

	"github.com/nodecast/nodecast/internal/testbin"
	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// The test binary is also the test plugin: started with plugins.PackEnv set,
// it serves testPack instead of running tests.
func TestMain(m *testing.M) { testbin.Main(m, testPack()) }

const testPackName = "nodecast-test"

func testPack() plugins.Pack {
	return plugins.Pack{Name: testPackName, Nodes: []plugins.Node{
		invertNode{}, partsNode{}, echoNode{}, failNode{}, blockNode{}, floodNode{},
		leakNode{}, parallelNode{}, logNode{}, envNode{},
	}}
}

// Observations the in-process tests read; the subprocess ignores them.
var (
	blockCancelled = make(chan error, 16)
	floodErrs      = make(chan error, 16)
	leaked         = make(chan plugins.Emitter, 16)
)

// invertNode returns 1-x of an IMAGE, reporting progress before and after.
type invertNode struct{}

func (invertNode) Spec() plugins.Spec {
	return plugins.Spec{
		ClassType: "test.Invert", DisplayName: "Invert", Category: "test",
		Inputs: []plugins.Input{
			{Name: "image", Type: plugins.TypeImage},
			{Name: "mode", Type: plugins.TypeCombo, Optional: true, Choices: []string{"all", "rgb"},
				Options: map[string]any{"default": "all", "tooltip": "which channels"}},
			{Name: "strength", Type: plugins.TypeInt, Optional: true,
				Options: map[string]any{"default": 512, "min": 1, "max": 4096}},
		},
		Outputs: []plugins.Output{{Name: "IMAGE", Type: plugins.TypeImage}},
	}
}

func (invertNode) Run(ctx context.Context, c *plugins.Call) (plugins.Result, error) {
	t, err := c.Tensor("image")
	if err != nil {
		return plugins.Result{}, err
	}
	if _, _, _, _, err := t.ImageDims(c.Limits.Image); err != nil {
		return plugins.Result{}, err
	}
	if err := c.Emitter.Progress(ctx, 0, 1); err != nil {
		return plugins.Result{}, err
	}
	out := protocol.NewFloat32(t.Shape...)
	dst := out.Float32s()
	for i, v := range t.Float32s() {
		dst[i] = 1 - v
	}
	if err := c.Emitter.Progress(ctx, 1, 1); err != nil {
		return plugins.Result{}, err
	}
	return plugins.Result{Outputs: []any{out}}, nil
}

// partsNode emits count parts of size bytes of one image, then returns.
type partsNode struct{}

func (partsNode) Spec() plugins.Spec {
	return plugins.Spec{ClassType: "test.Parts", OutputNode: true, Inputs: []plugins.Input{
		{Name: "count", Type: plugins.TypeInt}, {Name: "size", Type: plugins.TypeInt},
		{Name: "event", Type: plugins.TypeString},
	}, Outputs: []plugins.Output{{Name: "STRING", Type: plugins.TypeString}, {Name: "INT", Type: plugins.TypeInt}}}
}

func (partsNode) Run(ctx context.Context, c *plugins.Call) (plugins.Result, error) {
	count, err := c.Int("count", 1)
	if err != nil {
		return plugins.Result{}, err
	}
	size, err := c.Int("size", 16)
	if err != nil {
		return plugins.Result{}, err
	}
	event, err := c.String("event", "testpart")
	if err != nil {
		return plugins.Result{}, err
	}
	for i := range int(count) {
		if err := c.Emitter.EmitPart(ctx, testPart(c, event, i, int(count), int(size))); err != nil {
			return plugins.Result{}, err
		}
	}
	return plugins.Result{
		Outputs: []any{"done", count},
		UI:      map[string]any{"images": []any{map[string]any{"image_id": "img-" + c.NodeID}}},
	}, nil
}

func testPart(c *plugins.Call, event string, i, count, size int) *protocol.ImagePart {
	return &protocol.ImagePart{
		PartHeader: protocol.PartHeader{
			Event: event, PromptID: c.PromptID, Node: c.NodeID, ImageID: "img-" + c.NodeID,
			Index: 0, Batch: 1, Part: i, Parts: count,
			Offset: int64(i * size), Size: int64(count * size), MIME: "image/png",
			SHA256: "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd",
		},
		Label: "label-" + c.NodeID,
		Wire:  protocol.WireParts,
		Data:  partData(i, size),
	}
}

// partData is the content of part i. Parts are cached, so that benchmarks
// measure the bridge rather than making bytes; EmitPart does not keep them.
func partData(i, size int) []byte {
	key := [2]int{i, size}
	if b, ok := partCache.Load(key); ok {
		return b.([]byte)
	}
	b := make([]byte, size)
	for j := range b {
		b[j] = byte((i*31 + j) % 251)
	}
	partCache.Store(key, b)
	return b
}

var partCache sync.Map

// echoNode returns its inputs s, i, f, b, j and t in that order.
type echoNode struct{}

var echoOrder = []string{"s", "i", "f", "b", "j", "t"}

func (echoNode) Spec() plugins.Spec {
	s := plugins.Spec{ClassType: "test.Echo"}
	for _, n := range echoOrder {
		s.Inputs = append(s.Inputs, plugins.Input{Name: n, Type: "*", Optional: true})
	}
	return s
}

func (echoNode) Run(_ context.Context, c *plugins.Call) (plugins.Result, error) {
	var r plugins.Result
	for _, n := range echoOrder {
		r.Outputs = append(r.Outputs, c.Inputs[n])
	}
	return r, nil
}

// failNode fails the way its "kind" input says.
type failNode struct{}

func (failNode) Spec() plugins.Spec {
	return plugins.Spec{ClassType: "test.Fail", Inputs: []plugins.Input{{Name: "kind", Type: plugins.TypeString}}}
}

type valueError struct{ msg string }

func (e *valueError) Error() string         { return e.msg }
func (e *valueError) ExceptionType() string { return "ValueError" }
func (e *valueError) Traceback() []string   { return []string{"line one", "line two"} }

func (failNode) Run(_ context.Context, c *plugins.Call) (plugins.Result, error) {
	kind, _ := c.String("kind", "")
	switch kind {
	case "input":
		_, err := c.Tensor("missing")
		return plugins.Result{}, err
	case "typed":
		return plugins.Result{}, fmt.Errorf("wrapped: %w", &valueError{msg: "value out of range"})
	case "panic":
		var m map[string]int
		m["boom"]++ // a nil map write: a runtime panic, not a deliberate one
		return plugins.Result{}, nil
	case "badtensor":
		return plugins.Result{Outputs: []any{&protocol.Tensor{DType: protocol.Float32, Shape: []int{2, 2}, Data: make([]byte, 3)}}}, nil
	case "badvalue":
		return plugins.Result{Outputs: []any{func() {}}}, nil
	}
	return plugins.Result{}, errors.New("unknown kind " + kind)
}

// blockNode reports progress, then waits for its context to end.
type blockNode struct{}

func (blockNode) Spec() plugins.Spec { return plugins.Spec{ClassType: "test.Block"} }

func (blockNode) Run(ctx context.Context, c *plugins.Call) (plugins.Result, error) {
	if err := c.Emitter.Progress(ctx, 0, 1); err != nil {
		return plugins.Result{}, err
	}
	<-ctx.Done()
	blockCancelled <- ctx.Err()
	return plugins.Result{}, ctx.Err()
}

// floodNode emits parts until emitting fails.
type floodNode struct{}

func (floodNode) Spec() plugins.Spec { return plugins.Spec{ClassType: "test.Flood"} }

func (floodNode) Run(ctx context.Context, c *plugins.Call) (plugins.Result, error) {
	for i := 0; ; i++ {
		if err := c.Emitter.EmitPart(ctx, testPart(c, "flood", i%1000, 1000, 4096)); err != nil {
			floodErrs <- err
			return plugins.Result{}, err
		}
	}
}

// leakNode hands its Emitter out, to be used after Run returned.
type leakNode struct{}

func (leakNode) Spec() plugins.Spec { return plugins.Spec{ClassType: "test.Leak"} }

func (leakNode) Run(_ context.Context, c *plugins.Call) (plugins.Result, error) {
	leaked <- c.Emitter
	return plugins.Result{}, nil
}

// parallelNode emits from several goroutines at once.
type parallelNode struct{}

func (parallelNode) Spec() plugins.Spec { return plugins.Spec{ClassType: "test.Parallel"} }

const parallelWorkers, parallelParts = 4, 25

func (parallelNode) Run(ctx context.Context, c *plugins.Call) (plugins.Result, error) {
	var wg sync.WaitGroup
	errs := make(chan error, parallelWorkers)
	for w := range parallelWorkers {
		wg.Go(func() {
			for i := range parallelParts {
				p := testPart(c, "parallel", w*parallelParts+i, parallelWorkers*parallelParts, 1000)
				if err := c.Emitter.EmitPart(ctx, p); err != nil {
					errs <- err
					return
				}
				if err := c.Emitter.Progress(ctx, i, parallelParts); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return plugins.Result{}, <-errs
}

// logNode writes to the log package, stdout and stderr.
type logNode struct{}

func (logNode) Spec() plugins.Spec { return plugins.Spec{ClassType: "test.Log"} }

func (logNode) Run(context.Context, *plugins.Call) (plugins.Result, error) {
	log.Print("hello from the log package")
	fmt.Fprintln(os.Stderr, "hello from stderr")
	fmt.Println("hello from stdout")
	return plugins.Result{}, nil
}

// envNode returns the value of the environment variable its input names.
type envNode struct{}

func (envNode) Spec() plugins.Spec {
	return plugins.Spec{ClassType: "test.Env", Inputs: []plugins.Input{{Name: "name", Type: plugins.TypeString}}}
}

func (envNode) Run(_ context.Context, c *plugins.Call) (plugins.Result, error) {
	name, err := c.String("name", "")
	return plugins.Result{Outputs: []any{os.Getenv(name)}}, err
}
