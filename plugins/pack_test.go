package plugins_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/plugins"
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
