package plugins_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// specNode is a node that only has a spec.
type specNode struct {
	plugins.Node
	spec plugins.Spec
}

func (n specNode) Spec() plugins.Spec { return n.spec }

func TestPackValidate(t *testing.T) {
	node := func(class string, inputs ...plugins.Input) plugins.Node {
		return specNode{spec: plugins.Spec{ClassType: class, Inputs: inputs}}
	}
	for _, tc := range []struct {
		name   string
		pack   plugins.Pack
		reason string // "" means valid
	}{
		{"test pack", testPack(), ""},
		{"no nodes", plugins.Pack{Name: "empty"}, ""},
		{"no name", plugins.Pack{Nodes: []plugins.Node{node("a")}}, "empty name"},
		{"nil node", plugins.Pack{Name: "p", Nodes: []plugins.Node{node("a"), nil}}, "node 1 is nil"},
		{"no class type", plugins.Pack{Name: "p", Nodes: []plugins.Node{node("")}}, "node 0 has an empty class type"},
		{"duplicate class", plugins.Pack{Name: "p", Nodes: []plugins.Node{node("a"), node("a")}}, `class type "a" appears twice`},
		{"unnamed input", plugins.Pack{Name: "p", Nodes: []plugins.Node{node("a", plugins.Input{Type: "INT"})}}, "input with an empty name"},
		{"duplicate input", plugins.Pack{Name: "p", Nodes: []plugins.Node{node("a", plugins.Input{Name: "x"}, plugins.Input{Name: "x"})}}, `input "x" appears twice`},
		{"options not JSON", plugins.Pack{Name: "p", Nodes: []plugins.Node{node("a", plugins.Input{Name: "x", Options: map[string]any{"f": func() {}}})}}, `a input "x" options`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.pack.Validate()
			if tc.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var pe *plugins.PackError
			if !errors.As(err, &pe) || !errors.Is(err, plugins.ErrBadPack) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("err = %v, want a *PackError mentioning %q", err, tc.reason)
			}
			if _, err := plugins.ServeConfig(tc.pack); err == nil {
				t.Error("ServeConfig accepted an invalid pack")
			}
		})
	}
}

func TestCheckTensorBytes(t *testing.T) {
	none := plugins.Limits{}
	if err := none.CheckTensorBytes("x", 1<<40); err != nil {
		t.Errorf("no budget: %v", err)
	}
	l := plugins.Limits{TensorBudget: 1000, TensorHeld: 600}
	if err := l.CheckTensorBytes("x", 400); err != nil {
		t.Errorf("exactly the rest of the budget: %v", err)
	}
	err := l.CheckTensorBytes("RepeatImageBatch output", 401)
	var be *plugins.BudgetError
	if !errors.As(err, &be) || !errors.Is(err, protocol.ErrLimit) || be.Need != 401 || be.Held != 600 || be.Budget != 1000 {
		t.Fatalf("err = %#v", err)
	}
	want := "plugins: RepeatImageBatch output needs 401 bytes, but the prompt holds 600 of its tensor budget of 1000 bytes (400 left; raise limits.prompt_tensor_bytes or make smaller batches)"
	if err.Error() != want || be.ExceptionType() != "torch.OutOfMemoryError" {
		t.Errorf("%q (%s)", err, be.ExceptionType())
	}
}
