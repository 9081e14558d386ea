package supervisor

import (
	"github.com/nodecast/nodecast/plugins"
)

// Handle names a tensor that lives in a plugin process. Gen is the process
// generation that made it: a restarted plugin has lost the tensors of the
// generations before it.
type Handle struct {
	Pack string
	Gen  int
	Ref  plugins.TensorRef
}

// Call is one node execution as the supervisor runs it. Inputs hold string,
// int64, float64, bool, JSON values, Handle (a tensor in some plugin) or
// *protocol.Tensor (a tensor held by the host, e.g. from an embedding program).
type Call struct {
	ClassType string
	NodeID    string
	PromptID  string
	Inputs    map[string]any
	Limits    plugins.Limits
}

// Result is a node's outputs (Handle for tensors) and its "ui" output.
type Result struct {
	Outputs []any
	UI      map[string]any
}

// Class is a node class and the pack that serves it.
type Class struct {
	Spec plugins.Spec
	Pack string
}
