package plugins_test

import (
	"context"
	"fmt"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// brighten is a node class: it adds amount to every value of an IMAGE.
type brighten struct{}

func (brighten) Spec() plugins.Spec {
	return plugins.Spec{
		ClassType: "Brighten", Category: "image",
		Inputs: []plugins.Input{
			{Name: "images", Type: plugins.TypeImage},
			{Name: "amount", Type: plugins.TypeFloat, Options: map[string]any{"default": 0.1, "min": -1, "max": 1}},
		},
		Outputs: []plugins.Output{{Name: "IMAGE", Type: plugins.TypeImage}},
	}
}

func (brighten) Run(ctx context.Context, c *plugins.Call) (plugins.Result, error) {
	in, err := c.Tensor("images")
	if err != nil {
		return plugins.Result{}, err
	}
	if _, _, _, _, err := in.ImageDims(c.Limits.Image); err != nil {
		return plugins.Result{}, err
	}
	amount, err := c.Float("amount", 0.1)
	if err != nil {
		return plugins.Result{}, err
	}
	out := protocol.NewFloat32(in.Shape...) // inputs are shared: never write to them
	dst := out.Float32s()
	for i, v := range in.Float32s() {
		dst[i] = min(max(v+float32(amount), 0), 1)
	}
	return plugins.Result{Outputs: []any{out}}, c.Emitter.Progress(ctx, 1, 1)
}

// A plugin binary's main serves its pack and does nothing else.
func Example_pluginMain() {
	main := func() {
		plugins.Serve(plugins.Pack{Name: "brighten", Nodes: []plugins.Node{brighten{}}})
	}
	_ = main // in a real plugin: func main() { plugins.Serve(...) }

	err := plugins.Pack{Name: "brighten", Nodes: []plugins.Node{brighten{}}}.Validate()
	fmt.Println("valid pack:", err == nil)
	// Output: valid pack: true
}
