package executor

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/nodecast/nodecast/host/supervisor"
	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// maxListedChoices: ComfyUI leaves the choices out of a value_not_in_list
// error when there are more than this, so an answer never grows with a folder.
const maxListedChoices = 20

// node is one node of a validated prompt.
type node struct {
	id        string
	classType string
	spec      plugins.Spec
	title     string
	inputs    map[string]any  // every input as the prompt has it after settings and defaults
	values    map[string]any  // converted literal values of the Spec's inputs
	links     map[string]link // linked inputs of the Spec
	deps      []string        // nodes this one links to (existing ones), for error attribution
	raw       map[string]any  // the node as history shows it
}

// link is an input fed by another node's output slot.
type link struct {
	from string
	slot int
}

// plan is a validated prompt, ready to queue.
type plan struct {
	prompt     map[string]any
	nodes      map[string]*node
	outputs    []string // outputs to execute, sorted
	order      []string // execution order of the nodes those outputs need
	nodeErrors map[string]NodeError
}

// nodeState is the memo of a node's validation.
type nodeState struct {
	visiting bool
	done     bool
	ok       bool
	reasons  []ErrorDetail
}

type validator struct {
	image    protocol.ImageLimits // checked against literal width and height inputs
	classes  func(string) (supervisor.Class, bool)
	inputDir string
	nodes    map[string]*node
	state    map[string]*nodeState
	stack    []string
}

// validate checks a prompt as ComfyUI's validate_prompt does, driven by the
// Specs only, after applying a workflow's per-node settings and the host's
// defaults (a node's own input > workflow entry > host default > Spec default).
//
// targets, when not nil, are ComfyUI's partial_execution_targets: only the
// output nodes among them run, with what they need (execution.py
// validate_prompt: "partial_execution_list is None or x in
// partial_execution_list").
func (e *Executor) validate(prompt map[string]any, wf *Workflow, targets []string) (*plan, *ValidationError) {
	if prompt == nil {
		return nil, NewValidationError(TypeNoPrompt, "No prompt provided", "No prompt provided")
	}
	v := &validator{
		image:    e.opts.Limits.Image,
		classes:  e.opts.Runner.Class,
		inputDir: e.opts.InputDir,
		nodes:    make(map[string]*node, len(prompt)),
		state:    make(map[string]*nodeState, len(prompt)),
	}
	ids := sortedIDs(prompt)
	var outputs []string
	for _, id := range ids {
		n, verr := v.parseNode(id, prompt[id])
		if verr != nil {
			return nil, verr
		}
		v.nodes[id] = n
		if n.spec.OutputNode && (targets == nil || slices.Contains(targets, id)) {
			outputs = append(outputs, id)
		}
	}
	if len(outputs) == 0 {
		return nil, NewValidationError(TypePromptNoOutputs, "Prompt has no outputs", "")
	}
	for _, id := range ids {
		e.applySettings(v.nodes[id], wf)
	}

	var good []string
	nodeErrors := map[string]NodeError{}
	var failed []string // "message: details" of every failing output's errors
	for _, o := range outputs {
		if v.validateNode(o) {
			good = append(good, o)
			continue
		}
		for _, id := range v.upstream(o) {
			st := v.state[id]
			if st == nil || st.ok || len(st.reasons) == 0 {
				continue
			}
			ne, seen := nodeErrors[id]
			if !seen {
				ne = NodeError{Errors: st.reasons, DependentOutputs: []string{}, ClassType: v.nodes[id].classType}
				for _, r := range st.reasons {
					failed = append(failed, r.Message+": "+r.Details)
				}
			}
			ne.DependentOutputs = append(ne.DependentOutputs, o)
			nodeErrors[id] = ne
		}
	}
	if len(good) == 0 {
		verr := NewValidationError(TypePromptOutputsFailedValidation, "Prompt outputs failed validation", strings.Join(failed, "\n"))
		verr.NodeErrors = nodeErrors
		return nil, verr
	}

	p := &plan{prompt: make(map[string]any, len(v.nodes)), nodes: v.nodes, outputs: good, nodeErrors: nodeErrors}
	for id, n := range v.nodes {
		p.prompt[id] = n.raw
	}
	p.order = executionOrder(v.nodes, good)
	return p, nil
}

// parseNode checks a node's shape and class and copies it.
func (v *validator) parseNode(id string, raw any) (*node, *ValidationError) {
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, NewValidationError(TypeInvalidPrompt, fmt.Sprintf("Cannot execute because node #%s is not an object.", id), fmt.Sprintf("Node ID '#%s'", id))
	}
	title := ""
	if meta, ok := obj["_meta"].(map[string]any); ok {
		title, _ = meta["title"].(string)
	}
	classType, _ := obj["class_type"].(string)
	if classType == "" {
		name := title
		if name == "" {
			name = "ID #" + id
		}
		verr := NewValidationError(TypeMissingNodeType, fmt.Sprintf("Node '%s' has no class_type. The workflow may be corrupted or a custom node is missing.", name), fmt.Sprintf("Node ID '#%s'", id))
		verr.Detail.ExtraInfo = map[string]any{"node_id": id, "class_type": nil, "node_title": nilIfEmpty(title)}
		return nil, verr
	}
	cls, ok := v.classes(classType)
	if !ok {
		name := title
		if name == "" {
			name = classType
		}
		verr := NewValidationError(TypeMissingNodeType, fmt.Sprintf("Node '%s' not found. The custom node may not be installed.", name), fmt.Sprintf("Node ID '#%s'", id))
		verr.Detail.ExtraInfo = map[string]any{"node_id": id, "class_type": classType, "node_title": name}
		return nil, verr
	}
	inputs := map[string]any{}
	switch in := obj["inputs"].(type) {
	case nil:
	case map[string]any:
		for k, val := range in {
			inputs[k] = val
		}
	default:
		return nil, NewValidationError(TypeInvalidPrompt, fmt.Sprintf("Cannot execute because the inputs of node #%s are not an object.", id), fmt.Sprintf("Node ID '#%s'", id))
	}
	rawCopy := make(map[string]any, len(obj))
	for k, val := range obj {
		rawCopy[k] = val
	}
	rawCopy["inputs"] = inputs
	return &node{
		id: id, classType: classType, spec: cls.Spec, title: title,
		inputs: inputs, values: map[string]any{}, links: map[string]link{}, raw: rawCopy,
	}, nil
}

// applySettings fills the inputs a node lacks: from its workflow entry (by
// title, then by id, the id winning), then, for output nodes, from the host's
// defaults. Only inputs the node's Spec declares are filled.
func (e *Executor) applySettings(n *node, wf *Workflow) {
	declared := make(map[string]bool, len(n.spec.Inputs))
	for _, in := range n.spec.Inputs {
		declared[in.Name] = true
	}
	fill := func(settings map[string]any) {
		for _, k := range sortedIDs(settings) {
			if _, has := n.inputs[k]; !has && declared[k] {
				n.inputs[k] = settings[k]
			}
		}
	}
	if wf != nil {
		fill(wf.Nodes[n.id])
		if n.title != "" && n.title != n.id {
			fill(wf.Nodes[n.title])
		}
	}
	if n.spec.OutputNode {
		fill(e.opts.Defaults)
	}
}

// validateNode validates a node and, through its links, the nodes it needs.
func (v *validator) validateNode(id string) bool {
	st := v.state[id]
	if st == nil {
		st = &nodeState{}
		v.state[id] = st
	}
	if st.done {
		return st.ok
	}
	st.visiting = true
	v.stack = append(v.stack, id)
	n := v.nodes[id]
	ok := true
	var reasons []ErrorDetail
	for _, in := range n.spec.Inputs {
		val, present := n.inputs[in.Name]
		if !present {
			if def, has := in.Options["default"]; has {
				val, present = def, true
				n.inputs[in.Name] = def
			} else {
				if !in.Optional {
					reasons = append(reasons, ErrorDetail{
						Type: TypeRequiredInputMissing, Message: "Required input is missing",
						Details: in.Name, ExtraInfo: map[string]any{"input_name": in.Name},
					})
				}
				continue
			}
		}
		if list, isList := val.([]any); isList {
			r, linkOK := v.checkLink(n, in, list)
			if r != nil {
				reasons = append(reasons, *r)
			}
			ok = ok && linkOK
			continue
		}
		if r := v.checkValue(n, in, val); r != nil {
			reasons = append(reasons, *r)
		}
	}
	if r := v.checkImageSize(n); r != nil {
		reasons = append(reasons, *r)
	}
	v.stack = v.stack[:len(v.stack)-1]
	st.visiting = false
	st.done = true
	st.reasons = reasons
	st.ok = ok && len(reasons) == 0
	return st.ok
}

// checkImageSize refuses, before the prompt runs, a node whose literal
// width and height make an image over the host's limits, which the node
// would refuse at run time: /object_info advertises the same bounds.
func (v *validator) checkImageSize(n *node) *ErrorDetail {
	w, okW := wholeNumber(n.values["width"])
	h, okH := wholeNumber(n.values["height"])
	if !okW || !okH || w <= 0 || h <= 0 || w > 1<<31 || h > 1<<31 {
		return nil
	}
	err := v.image.CheckSize(int(w), int(h))
	if err == nil {
		return nil
	}
	le, _ := errors.AsType[*protocol.LimitError](err)
	name := "width"
	if le != nil && le.What == "image height" {
		name = "height"
	}
	d := &ErrorDetail{
		Type: TypeValueBiggerThanMax, Message: "Image size is over the server's limit",
		Details:   fmt.Sprintf("%s: %dx%d: %s", name, w, h, strings.TrimPrefix(err.Error(), "protocol: ")),
		ExtraInfo: map[string]any{"input_name": name, "received_value": []any{w, h}},
	}
	if le != nil {
		d.ExtraInfo["limit"], d.ExtraInfo["what"] = le.Limit, le.What
	}
	return d
}

// checkLink validates a linked input [node_id, slot] and the node it names.
// It returns a reason when the link itself is bad, and whether the input is
// usable (false also when the linked node failed on its own account).
func (v *validator) checkLink(n *node, in plugins.Input, val []any) (*ErrorDetail, bool) {
	bad := func(message string) (*ErrorDetail, bool) {
		return &ErrorDetail{
			Type: TypeBadLinkedInput, Message: message, Details: in.Name,
			ExtraInfo: map[string]any{"input_name": in.Name, "input_config": inputConfig(in), "received_value": val},
		}, false
	}
	if len(val) != 2 {
		return bad("Bad linked input, must be a length-2 list of [node_id, slot_index]")
	}
	from, okID := linkNodeID(val[0])
	slot, okSlot := wholeNumber(val[1])
	if !okID || !okSlot || slot < 0 {
		return bad("Bad linked input, must be a length-2 list of [node_id, slot_index]")
	}
	src, exists := v.nodes[from]
	if !exists {
		return bad(fmt.Sprintf("Bad linked input, node '%s' does not exist", from))
	}
	n.deps = append(n.deps, from)
	if slot >= int64(len(src.spec.Outputs)) {
		return bad(fmt.Sprintf("Bad linked input, node '%s' (%s) has no output slot %d (it has %d)", from, src.classType, slot, len(src.spec.Outputs)))
	}
	received := src.spec.Outputs[slot].Type
	want := inputType(in)
	if !typesMatch(received, want) {
		return &ErrorDetail{
			Type: TypeReturnTypeMismatch, Message: "Return type mismatch between linked nodes",
			Details: fmt.Sprintf("%s, received_type(%s) mismatch input_type(%s)", in.Name, received, want),
			ExtraInfo: map[string]any{
				"input_name": in.Name, "input_config": inputConfig(in),
				"received_type": received, "linked_node": []any{from, slot},
			},
		}, false
	}
	if st := v.state[from]; st != nil && st.visiting {
		cycle := append([]string(nil), v.stack[slices.Index(v.stack, from):]...)
		cycle = append(cycle, from)
		return &ErrorDetail{
			Type: TypeExceptionDuringValidation, Message: "Exception when validating node",
			Details: "Dependency cycle detected: " + strings.Join(cycle, " -> "),
			ExtraInfo: map[string]any{
				"input_name": in.Name, "exception_type": "graph.DependencyCycleError",
				"exception_message": "Dependency cycle detected", "traceback": []string{}, "linked_node": []any{from, slot},
			},
		}, false
	}
	n.links[in.Name] = link{from: from, slot: int(slot)}
	n.inputs[in.Name] = []any{from, slot}
	return nil, v.validateNode(from)
}

// checkValue converts a literal input to its Spec type and checks its range,
// its choices, the file it names and, on output nodes, the event name.
func (v *validator) checkValue(n *node, in plugins.Input, val any) *ErrorDetail {
	if m, ok := val.(map[string]any); ok {
		if inner, has := m["__value__"]; has { // ComfyUI's wrapper for list-valued widgets
			val = inner
		}
	}
	typ := inputType(in)
	conv, err := convertValue(typ, val)
	if err != nil {
		return &ErrorDetail{
			Type: TypeInvalidInputType, Message: fmt.Sprintf("Failed to convert an input value to a %s value", typ),
			Details: fmt.Sprintf("%s, %s, %s", in.Name, pyStr(val), err),
			ExtraInfo: map[string]any{
				"input_name": in.Name, "input_config": inputConfig(in),
				"received_value": val, "exception_message": err.Error(),
			},
		}
	}
	rangeErr := func(typ, message string) *ErrorDetail {
		return &ErrorDetail{
			Type: typ, Message: message, Details: in.Name,
			ExtraInfo: map[string]any{"input_name": in.Name, "input_config": inputConfig(in), "received_value": conv},
		}
	}
	if f, isNum := asFloat(conv); isNum && (typ == plugins.TypeInt || typ == plugins.TypeFloat) {
		if lo, ok := asFloat(in.Options["min"]); ok && f < lo {
			return rangeErr(TypeValueSmallerThanMin, fmt.Sprintf("Value %s smaller than min of %s", pyStr(conv), pyStr(in.Options["min"])))
		}
		if hi, ok := asFloat(in.Options["max"]); ok && f > hi {
			return rangeErr(TypeValueBiggerThanMax, fmt.Sprintf("Value %s bigger than max of %s", pyStr(conv), pyStr(in.Options["max"])))
		}
	}
	if isTrue(in.Options["image_upload"]) {
		name, _ := conv.(string)
		if err := v.checkInputFile(name); err != nil {
			return &ErrorDetail{
				Type: TypeCustomValidationFailed, Message: "Custom validation failed for node",
				Details:   fmt.Sprintf("%s - Invalid image file: %s (%s)", in.Name, name, err),
				ExtraInfo: map[string]any{"input_name": in.Name, "received_value": conv},
			}
		}
	} else if len(in.Choices) > 0 {
		s, _ := conv.(string)
		if !slices.Contains(in.Choices, s) {
			listInfo := fmt.Sprintf("(list of length %d)", len(in.Choices))
			var cfg any
			if len(in.Choices) <= maxListedChoices {
				listInfo = pyList(in.Choices)
				cfg = inputConfig(in)
			}
			return &ErrorDetail{
				Type: TypeValueNotInList, Message: "Value not in list",
				Details:   fmt.Sprintf("%s: '%s' not in %s", in.Name, s, listInfo),
				ExtraInfo: map[string]any{"input_name": in.Name, "input_config": cfg, "received_value": conv},
			}
		}
	}
	if n.spec.OutputNode && in.Name == "event" {
		if s, ok := conv.(string); ok {
			if err := protocol.ValidateEventName(s); err != nil {
				return &ErrorDetail{
					Type: TypeCustomValidationFailed, Message: "Custom validation failed for node",
					Details:   fmt.Sprintf("%s - %s", in.Name, err),
					ExtraInfo: map[string]any{"input_name": in.Name, "received_value": conv},
				}
			}
		}
	}
	n.values[in.Name] = conv
	n.inputs[in.Name] = conv
	return nil
}

// checkInputFile reports why name is not a file in the input folder.
func (v *validator) checkInputFile(name string) error {
	name = strings.TrimSuffix(name, " [input]") // ComfyUI's annotated file name
	if name == "" {
		return fmt.Errorf("empty file name")
	}
	if filepath.IsAbs(name) || strings.HasPrefix(name, "/") || strings.Contains(name, "..") || strings.ContainsRune(name, '\\') {
		return fmt.Errorf("the name must stay inside the input folder")
	}
	if v.inputDir == "" {
		return fmt.Errorf("no input folder is configured")
	}
	fi, err := os.Stat(filepath.Join(v.inputDir, filepath.FromSlash(name)))
	if err != nil {
		return fmt.Errorf("not in the input folder")
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file")
	}
	return nil
}

// upstream lists o and every node it links to, directly or not.
func (v *validator) upstream(o string) []string {
	seen := map[string]bool{o: true}
	out := []string{o}
	for i := 0; i < len(out); i++ {
		for _, d := range v.nodes[out[i]].deps {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	slices.SortFunc(out, compareID)
	return out
}

// executionOrder runs first the output that needs the fewest nodes not yet
// run (as ComfyUI does), each output after its inputs in Spec order.
func executionOrder(nodes map[string]*node, outputs []string) []string {
	done := map[string]bool{}
	var order []string
	var visit func(id string, out *[]string, seen map[string]bool)
	visit = func(id string, out *[]string, seen map[string]bool) {
		if done[id] || seen[id] {
			return
		}
		seen[id] = true
		n := nodes[id]
		for _, in := range n.spec.Inputs {
			if l, ok := n.links[in.Name]; ok {
				visit(l.from, out, seen)
			}
		}
		*out = append(*out, id)
	}
	pending := append([]string(nil), outputs...)
	for len(pending) > 0 {
		best, bestCount := -1, 0
		for i, o := range pending {
			var would []string
			visit(o, &would, map[string]bool{})
			if best < 0 || len(would) < bestCount || (len(would) == bestCount && compareID(o, pending[best]) < 0) {
				best, bestCount = i, len(would)
			}
		}
		var run []string
		visit(pending[best], &run, map[string]bool{})
		for _, id := range run {
			done[id] = true
		}
		order = append(order, run...)
		pending = append(pending[:best], pending[best+1:]...)
	}
	return order
}

// inputType is the type an input is checked against: COMBO for choices.
func inputType(in plugins.Input) string {
	switch {
	case len(in.Choices) > 0 || isTrue(in.Options["image_upload"]):
		return plugins.TypeCombo
	case in.Type == "":
		return "*"
	}
	return in.Type
}

// inputConfig is ComfyUI's input_config: [type or choices, options].
func inputConfig(in plugins.Input) []any {
	opts := in.Options
	if opts == nil {
		opts = map[string]any{}
	}
	if len(in.Choices) > 0 {
		return []any{in.Choices, opts}
	}
	return []any{inputType(in), opts}
}

// typesMatch is ComfyUI's validate_node_input: "*" matches anything, and
// comma-separated unions match when every received type is accepted.
func typesMatch(received, want string) bool {
	if received == want || received == "*" || want == "*" {
		return true
	}
	accepted := map[string]bool{}
	for _, t := range strings.Split(want, ",") {
		accepted[strings.TrimSpace(t)] = true
	}
	for _, t := range strings.Split(received, ",") {
		if !accepted[strings.TrimSpace(t)] {
			return false
		}
	}
	return true
}

// linkNodeID accepts a node id as a string or a whole number.
func linkNodeID(v any) (string, bool) {
	if s, ok := v.(string); ok {
		return s, s != ""
	}
	if n, ok := wholeNumber(v); ok {
		return strconv.FormatInt(n, 10), true
	}
	return "", false
}

// compareID orders node ids numerically when both are numbers, numbers
// before other ids, and other ids as strings.
func compareID(a, b string) int {
	na, errA := strconv.ParseInt(a, 10, 64)
	nb, errB := strconv.ParseInt(b, 10, 64)
	switch {
	case errA == nil && errB == nil:
		return cmp.Compare(na, nb)
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return strings.Compare(a, b)
}

// sortedIDs returns m's keys in compareID order.
func sortedIDs[V any](m map[string]V) []string {
	return slices.SortedFunc(maps.Keys(m), compareID)
}
