package e2e_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/host/config"
)

// checkErrorShape checks ComfyUI's answer to a refused prompt:
// {"error":{"type","message","details","extra_info"},"node_errors":{id:{"errors":[...],"dependent_outputs":[...],"class_type"}}}
// and returns the error and the node errors.
func checkErrorShape(t *testing.T, ans map[string]any) (map[string]any, map[string]any) {
	t.Helper()
	e, ok := ans["error"].(map[string]any)
	if !ok {
		t.Fatalf("answer has no error object: %v", ans)
	}
	for _, k := range []string{"type", "message", "details"} {
		if _, ok := e[k].(string); !ok {
			t.Fatalf("error.%s is %T, want a string: %v", k, e[k], e)
		}
	}
	if _, ok := e["extra_info"].(map[string]any); !ok {
		t.Fatalf("error.extra_info is %T, want an object: %v", e["extra_info"], e)
	}
	nodeErrors, ok := ans["node_errors"].(map[string]any)
	if !ok {
		t.Fatalf("node_errors is %T, want an object: %v", ans["node_errors"], ans)
	}
	for id, v := range nodeErrors {
		ne, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("node_errors[%s] is %T", id, v)
		}
		errs, ok := ne["errors"].([]any)
		if !ok || len(errs) == 0 {
			t.Fatalf("node_errors[%s].errors = %v, want a non-empty list", id, ne["errors"])
		}
		for _, x := range errs {
			d, ok := x.(map[string]any)
			if !ok {
				t.Fatalf("node_errors[%s].errors holds %T", id, x)
			}
			for _, k := range []string{"type", "message", "details"} {
				if _, ok := d[k].(string); !ok {
					t.Fatalf("node_errors[%s] error.%s is %T: %v", id, k, d[k], d)
				}
			}
			if _, ok := d["extra_info"].(map[string]any); !ok {
				t.Fatalf("node_errors[%s] error.extra_info is %T: %v", id, d["extra_info"], d)
			}
		}
		if _, ok := ne["dependent_outputs"].([]any); !ok {
			t.Fatalf("node_errors[%s].dependent_outputs is %T", id, ne["dependent_outputs"])
		}
		if _, ok := ne["class_type"].(string); !ok {
			t.Fatalf("node_errors[%s].class_type is %T", id, ne["class_type"])
		}
	}
	return e, nodeErrors
}

// nodeError returns the first error of node id in node_errors.
func nodeError(t *testing.T, nodeErrors map[string]any, id string) (map[string]any, map[string]any) {
	t.Helper()
	ne, ok := nodeErrors[id].(map[string]any)
	if !ok {
		t.Fatalf("no node_errors for node %s: %v", id, nodeErrors)
	}
	return ne, ne["errors"].([]any)[0].(map[string]any)
}

// TestPromptValidationOverHTTP posts refused prompts to /prompt and checks
// the status and ComfyUI's error shape. host/executor tests the full table;
// these rows check that the answer survives the HTTP stack.
func TestPromptValidationOverHTTP(t *testing.T) {
	s := startServer(t, serveOptions(t, config.Default()))
	name := mustUpload(t, s, "small.png", photoOf(t, 64).PNG)
	send := func(inputs map[string]any) map[string]any {
		return pipeline(name, 2, "SendImageOnWebSocket", inputs)
	}
	withInputs := func(prompt map[string]any, id string, inputs map[string]any) map[string]any {
		prompt[id].(map[string]any)["inputs"] = inputs
		return prompt
	}

	type nodeWant struct {
		id, class, errType, details string // details: a substring
		input                       string // extra_info.input_name, "" = not checked
	}
	cases := []struct {
		name     string
		body     any // a string is sent as is
		errType  string
		message  string // a substring of error.message
		node     *nodeWant
		extraKey string // a key error.extra_info must have
	}{
		{name: "unknown class",
			body: map[string]any{"prompt": map[string]any{
				"1": map[string]any{"class_type": "NoSuchNode", "inputs": map[string]any{}},
			}, "client_id": "v"},
			errType: "missing_node_type", message: "NoSuchNode", extraKey: "class_type"},
		{name: "missing required input",
			body:    map[string]any{"prompt": withInputs(send(nil), "2", map[string]any{"amount": 2})},
			errType: "prompt_outputs_failed_validation",
			node:    &nodeWant{id: "2", class: "RepeatImageBatch", errType: "required_input_missing", details: "image", input: "image"}},
		{name: "amount under its minimum",
			body:    map[string]any{"prompt": withInputs(send(nil), "2", map[string]any{"image": []any{"1", 0}, "amount": 0})},
			errType: "prompt_outputs_failed_validation",
			node:    &nodeWant{id: "2", class: "RepeatImageBatch", errType: "value_smaller_than_min", details: "amount", input: "amount"}},
		{name: "amount over its maximum",
			body:    map[string]any{"prompt": withInputs(send(nil), "2", map[string]any{"image": []any{"1", 0}, "amount": 5000})},
			errType: "prompt_outputs_failed_validation",
			node:    &nodeWant{id: "2", class: "RepeatImageBatch", errType: "value_bigger_than_max", details: "amount", input: "amount"}},
		{name: "link to a missing node",
			body:    map[string]any{"prompt": withInputs(send(nil), "3", map[string]any{"images": []any{"99", 0}})},
			errType: "prompt_outputs_failed_validation",
			node:    &nodeWant{id: "3", class: "SendImageOnWebSocket", errType: "bad_linked_input", details: "images", input: "images"}},
		{name: "LoadImage of a file that does not exist",
			body:    map[string]any{"prompt": withInputs(send(nil), "1", map[string]any{"image": "no-such-file.png"})},
			errType: "prompt_outputs_failed_validation",
			node:    &nodeWant{id: "1", class: "LoadImage", errType: "custom_validation_failed", details: "no-such-file.png", input: "image"}},
		{name: "event name with a space",
			body:    map[string]any{"prompt": send(map[string]any{"event": "my images"})},
			errType: "prompt_outputs_failed_validation",
			node:    &nodeWant{id: "3", class: "SendImageOnWebSocket", errType: "custom_validation_failed", details: "event", input: "event"}},
		{name: "event name that is a ComfyUI message type",
			body:    map[string]any{"prompt": send(map[string]any{"event": "executing"})},
			errType: "prompt_outputs_failed_validation",
			node:    &nodeWant{id: "3", class: "SendImageOnWebSocket", errType: "custom_validation_failed", details: "executing", input: "event"}},
		{name: "no output node",
			body: map[string]any{"prompt": map[string]any{
				"1": map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": name}},
			}},
			errType: "prompt_no_outputs"},
		{name: "malformed JSON", body: `{"prompt": {"1": {"class_type": "LoadImage",`, errType: "invalid_prompt"},
		{name: "JSON that is not an object", body: `[{"prompt": {}}]`, errType: "invalid_prompt"},
		{name: "empty body", body: ``, errType: "invalid_prompt"},
		{name: "prompt that is a string", body: `{"prompt": "LoadImage"}`, errType: "invalid_prompt"},
		{name: "node that is not an object", body: `{"prompt": {"1": 7}}`, errType: "invalid_prompt"},
		{name: "no prompt", body: `{"client_id": "v"}`, errType: "no_prompt"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, ans := post(t, s, "/prompt", tc.body)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %v", status, ans)
			}
			e, nodeErrors := checkErrorShape(t, ans)
			if e["type"] != tc.errType || !strings.Contains(e["message"].(string), tc.message) {
				t.Fatalf("error %v, want type %s, message with %q", e, tc.errType, tc.message)
			}
			if tc.extraKey != "" {
				if _, ok := e["extra_info"].(map[string]any)[tc.extraKey]; !ok {
					t.Errorf("error.extra_info %v has no %s", e["extra_info"], tc.extraKey)
				}
			}
			if tc.node == nil {
				if len(nodeErrors) != 0 {
					t.Fatalf("node_errors %v, want {}", nodeErrors)
				}
				return
			}
			ne, first := nodeError(t, nodeErrors, tc.node.id)
			if ne["class_type"] != tc.node.class {
				t.Errorf("class_type %v, want %s", ne["class_type"], tc.node.class)
			}
			if deps := ne["dependent_outputs"].([]any); len(deps) != 1 || deps[0] != "3" {
				t.Errorf("dependent_outputs %v, want [3]", deps)
			}
			if first["type"] != tc.node.errType || !strings.Contains(first["details"].(string), tc.node.details) {
				t.Errorf("node error %v, want type %s, details with %q", first, tc.node.errType, tc.node.details)
			}
			if in := first["extra_info"].(map[string]any)["input_name"]; in != tc.node.input {
				t.Errorf("extra_info.input_name %v, want %s", in, tc.node.input)
			}
		})
	}

	// ComfyUI runs the outputs that passed and lists the others' errors.
	t.Run("one of two outputs fails validation", func(t *testing.T) {
		c := dialWS(t, s, "partial", true, stockReadLimit)
		prompt := send(map[string]any{"event": "good.output"})
		prompt["4"] = map[string]any{"class_type": "SendImageOnWebSocket", "inputs": map[string]any{"images": []any{"2", 0}, "event": "bad output"}}
		status, ans := post(t, s, "/prompt", map[string]any{"prompt": prompt, "client_id": c.ID})
		if status != http.StatusOK {
			t.Fatalf("status %d, want 200: %v", status, ans)
		}
		nodeErrors, _ := ans["node_errors"].(map[string]any)
		ne, first := nodeError(t, nodeErrors, "4")
		if len(nodeErrors) != 1 || ne["class_type"] != "SendImageOnWebSocket" || first["type"] != "custom_validation_failed" {
			t.Fatalf("node_errors %v, want one custom_validation_failed for node 4", nodeErrors)
		}
		id := ans["prompt_id"].(string)
		log := waitPromptEnd(t, c, id)
		checkErr(t, c)
		checkPromptOrder(t, log, promptShape{PromptID: id, Nodes: []string{"1", "2", "3"}, Images: 2, Executed: true})
	})

	// Nothing refused reached the queue, and a good prompt still runs.
	c := dialWS(t, s, "after-validation", true, stockReadLimit)
	id := queuePrompt(t, s, send(nil), c.ID)
	log := waitPromptEnd(t, c, id)
	checkErr(t, c)
	checkPromptOrder(t, log, promptShape{PromptID: id, Nodes: []string{"1", "2", "3"}, Images: 2, Executed: true})
}
