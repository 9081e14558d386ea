package api

import (
	"net/http"
	"os"
	"sort"

	"github.com/nodecast/nodecast/host/supervisor"
	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/sendimage"
)

func (s *server) classes() []supervisor.Class {
	if s.opts.Classes == nil {
		return nil
	}
	return s.opts.Classes()
}

func (s *server) getObjectInfo(w http.ResponseWriter, r *http.Request) {
	files := s.inputFiles()
	out := map[string]any{}
	for _, c := range s.classes() {
		out[c.Spec.ClassType] = nodeInfo(s.withImageLimits(c.Spec), files)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) getObjectInfoClass(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("node_class")
	out := map[string]any{}
	for _, c := range s.classes() {
		if c.Spec.ClassType == name {
			out[name] = nodeInfo(s.withImageLimits(c.Spec), s.inputFiles())
			break
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// inputFiles lists the image files of the input folder, sorted, as
// ComfyUI's LoadImage offers them.
func (s *server) inputFiles() []string {
	entries, err := os.ReadDir(s.opts.InputDir)
	if err != nil {
		return []string{}
	}
	files := []string{}
	for _, e := range entries {
		if e.Type().IsRegular() && sendimage.IsImageFile(e.Name()) {
			files = append(files, e.Name())
		}
	}
	sort.Strings(files)
	return files
}

// nodeInfo is ComfyUI's /object_info entry of a class.
func nodeInfo(spec plugins.Spec, inputFiles []string) map[string]any {
	required, optional, hidden := map[string]any{}, map[string]any{}, map[string]any{}
	requiredOrder, optionalOrder, hiddenOrder := []string{}, []string{}, []string{}
	for _, in := range spec.Inputs {
		entry := inputEntry(in, inputFiles)
		if plugins.IsHidden(in) { // filled by the host, as ComfyUI's "hidden": "PROMPT"
			hidden[in.Name] = in.Type
			hiddenOrder = append(hiddenOrder, in.Name)
			continue
		}
		if in.Optional {
			optional[in.Name] = entry
			optionalOrder = append(optionalOrder, in.Name)
		} else {
			required[in.Name] = entry
			requiredOrder = append(requiredOrder, in.Name)
		}
	}
	input := map[string]any{"required": required}
	order := map[string]any{"required": requiredOrder}
	if len(optional) > 0 {
		input["optional"] = optional
		order["optional"] = optionalOrder
	}
	if len(hidden) > 0 {
		input["hidden"] = hidden
		order["hidden"] = hiddenOrder
	}
	outputs, names, isList := []string{}, []string{}, []bool{}
	for _, o := range spec.Outputs {
		outputs = append(outputs, o.Type)
		name := o.Name
		if name == "" {
			name = o.Type
		}
		names = append(names, name)
		isList = append(isList, false)
	}
	display := spec.DisplayName
	if display == "" {
		display = spec.ClassType
	}
	category := spec.Category
	if category == "" {
		category = "nodecast"
	}
	return map[string]any{
		"input":          input,
		"input_order":    order,
		"output":         outputs,
		"output_is_list": isList,
		"output_name":    names,
		"name":           spec.ClassType,
		"display_name":   display,
		"description":    spec.Description,
		"python_module":  "nodecast",
		"category":       category,
		"output_node":    spec.OutputNode,
	}
}

// inputEntry is ComfyUI's [type_or_choices, options] (just [type] without
// options). image_upload inputs offer the input folder's files.
func inputEntry(in plugins.Input, inputFiles []string) []any {
	var typ any = in.Type
	switch {
	case in.Options["image_upload"] == true:
		typ = inputFiles
	case len(in.Choices) > 0:
		typ = in.Choices
	case in.Type == "":
		typ = "*"
	}
	if len(in.Options) == 0 {
		return []any{typ}
	}
	return []any{typ, in.Options}
}

// withImageLimits advertises the host's image limits on a node's width and
// height inputs, so that /object_info promises only what a run accepts:
// "max" is at most the largest side, and "max_pixels" bounds width*height
// (the executor refuses a prompt over it before it runs). The spec's own
// options are not changed.
func (s *server) withImageLimits(spec plugins.Spec) plugins.Spec {
	side, pixels := int64(s.opts.Limits.MaxSide), s.opts.Limits.MaxPixels
	if side == 0 {
		side = protocol.DefaultMaxSide
	}
	if pixels == 0 {
		pixels = protocol.DefaultMaxPixels
	}
	var inputs []plugins.Input
	for i, in := range spec.Inputs {
		if in.Type != plugins.TypeInt || (in.Name != "width" && in.Name != "height") {
			continue
		}
		if inputs == nil {
			inputs = append([]plugins.Input(nil), spec.Inputs...)
		}
		opts := make(map[string]any, len(in.Options)+1)
		for k, v := range in.Options {
			opts[k] = v
		}
		if m, ok := asInt64(opts["max"]); side > 0 && (!ok || m > side) {
			opts["max"] = side
		}
		if pixels > 0 {
			opts["max_pixels"] = pixels
		}
		inputs[i].Options = opts
	}
	if inputs != nil {
		spec.Inputs = inputs
	}
	return spec
}

func asInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		return int64(n), true
	}
	return 0, false
}
