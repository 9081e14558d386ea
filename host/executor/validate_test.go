package executor_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/host/executor"
)

// A prompt's first nodes, reused by the rows below.
const (
	empty  = `"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1}}`
	sender = `"2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0], "event": "ok.event"}}`
)

func TestValidation(t *testing.T) {
	inputDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(inputDir, "cat.png"), []byte("png"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(inputDir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		prompt   string // "" = no prompt
		workflow string
		defaults map[string]any
		wantType string              // "" = accepted
		wantErrs map[string][]string // node id -> error types
		wantDeps map[string][]string // node id -> dependent outputs
		wantRun  []string            // outputs to execute, when accepted
	}{
		{name: "no prompt", wantType: "no_prompt"},
		{name: "empty prompt", prompt: `{}`, wantType: "prompt_no_outputs"},
		{name: "node is not an object", prompt: `{"1": 5}`, wantType: "invalid_prompt"},
		{name: "inputs are not an object", prompt: `{"1": {"class_type": "EmptyImage", "inputs": [1]}}`, wantType: "invalid_prompt"},
		{name: "no class_type", prompt: `{"1": {"inputs": {}}}`, wantType: "missing_node_type"},
		{name: "unknown class", prompt: `{"1": {"class_type": "KSampler", "inputs": {}}}`, wantType: "missing_node_type"},
		{name: "no output node", prompt: `{` + empty + `}`, wantType: "prompt_no_outputs"},
		{name: "valid", prompt: `{` + empty + `,` + sender + `}`, wantRun: []string{"2"}},
		{
			name:    "defaults fill absent inputs",
			prompt:  `{"1": {"class_type": "EmptyImage", "inputs": {}}, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0]}}}`,
			wantRun: []string{"2"},
		},
		{
			name:     "required input missing",
			prompt:   `{` + empty + `, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"event": "ok"}}}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"2": {"required_input_missing"}},
			wantDeps: map[string][]string{"2": {"2"}},
		},
		{
			name:     "wrong type",
			prompt:   `{"1": {"class_type": "EmptyImage", "inputs": {"width": "wide"}},` + sender + `}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"1": {"invalid_input_type"}},
			wantDeps: map[string][]string{"1": {"2"}},
		},
		{
			name:     "fractional int",
			prompt:   `{"1": {"class_type": "EmptyImage", "inputs": {"width": 8.5}},` + sender + `}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"1": {"invalid_input_type"}},
		},
		{
			name:     "a literal where a tensor must be linked",
			prompt:   `{` + empty + `, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": "cat.png"}}}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"2": {"invalid_input_type"}},
		},
		{
			name:     "below min and above max",
			prompt:   `{"1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 20000}},` + sender + `}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"1": {"value_smaller_than_min", "value_bigger_than_max"}},
		},
		{
			name:     "combo value not in list",
			prompt:   `{` + empty + `, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0], "encoder": "gif"}}}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"2": {"value_not_in_list"}},
		},
		{
			name:     "link to a missing node",
			prompt:   `{` + empty + `, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["9", 0]}}}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"2": {"bad_linked_input"}},
		},
		{
			name:     "link to a missing output slot",
			prompt:   `{` + empty + `, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 1]}}}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"2": {"bad_linked_input"}},
		},
		{
			name:     "link of the wrong length",
			prompt:   `{` + empty + `, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1"]}}}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"2": {"bad_linked_input"}},
		},
		{
			name: "MASK into IMAGE",
			prompt: `{"1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
			          "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 1]}}}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"2": {"return_type_mismatch"}},
		},
		{
			name: "MASK into IMAGE upstream of the output (the mismatch stops the walk, as in ComfyUI)",
			prompt: `{` + empty + `, "3": {"class_type": "InvertMask", "inputs": {"mask": ["1", 0]}},
			          "4": {"class_type": "RepeatImageBatch", "inputs": {"image": ["3", 0]}}, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["4", 0]}}}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"4": {"return_type_mismatch"}},
			wantDeps: map[string][]string{"4": {"2"}},
		},
		{
			name: "cycle",
			prompt: `{"3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["4", 0]}},
			          "4": {"class_type": "RepeatImageBatch", "inputs": {"image": ["3", 0]}},
			          "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["3", 0]}}}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"4": {"exception_during_validation"}},
			wantDeps: map[string][]string{"4": {"2"}},
		},
		{
			name:     "self link",
			prompt:   `{"3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["3", 0]}}, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["3", 0]}}}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"3": {"exception_during_validation"}},
		},
		{
			name:    "uploaded file exists",
			prompt:  `{"1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}}, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0]}}}`,
			wantRun: []string{"2"},
		},
		{
			name:     "uploaded file missing",
			prompt:   `{"1": {"class_type": "LoadImage", "inputs": {"image": "dog.png"}}, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0]}}}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"1": {"custom_validation_failed"}},
		},
		{
			name:     "uploaded file outside the input folder",
			prompt:   `{"1": {"class_type": "LoadImage", "inputs": {"image": "../cat.png"}}, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0]}}}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"1": {"custom_validation_failed"}},
		},
		{
			name:     "uploaded file is a folder",
			prompt:   `{"1": {"class_type": "LoadImage", "inputs": {"image": "sub"}}, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0]}}}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"1": {"custom_validation_failed"}},
		},
		{
			name:     "event is a ComfyUI message type",
			prompt:   `{` + empty + `, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0], "event": "executing"}}}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"2": {"custom_validation_failed"}},
		},
		{
			name:     "event with a bad character",
			prompt:   `{` + empty + `, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0], "event": "my event"}}}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"2": {"custom_validation_failed"}},
		},
		{
			name:     "host default event is checked too",
			prompt:   `{` + empty + `, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0]}}}`,
			defaults: map[string]any{"event": "status"},
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"2": {"custom_validation_failed"}},
		},
		{
			name: "one good output runs, the bad one is reported",
			prompt: `{` + empty + `,` + sender + `,
			          "5": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0], "wire": "smoke"}}}`,
			wantErrs: map[string][]string{"5": {"value_not_in_list"}},
			wantDeps: map[string][]string{"5": {"5"}},
			wantRun:  []string{"2"},
		},
		{
			name: "a shared bad node names both outputs",
			prompt: `{"1": {"class_type": "EmptyImage", "inputs": {"width": -1}},` + sender + `,
			          "5": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0]}}}`,
			wantType: "prompt_outputs_failed_validation",
			wantErrs: map[string][]string{"1": {"value_smaller_than_min"}},
			wantDeps: map[string][]string{"1": {"2", "5"}},
		},
		{name: "unknown workflow", workflow: "nope", prompt: `{` + empty + `,` + sender + `}`, wantType: "unknown_workflow"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _ := newExecutor(t, executor.Options{InputDir: inputDir, Defaults: tc.defaults})
			// Submit validates; a refused prompt never reaches the queue.
			acc, err := e.Submit(context.Background(), executor.Request{Prompt: parsePrompt(t, tc.prompt), Workflow: tc.workflow})
			verr := asValidation(err)
			if tc.wantType == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				entry, err := e.Wait(context.Background(), acc.PromptID)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(entry.Prompt.OutputsToExecute, tc.wantRun) {
					t.Errorf("outputs to execute %v, want %v", entry.Prompt.OutputsToExecute, tc.wantRun)
				}
				checkNodeErrors(t, acc.NodeErrors, tc.wantErrs, tc.wantDeps)
				return
			}
			if verr == nil {
				t.Fatalf("accepted (err %v), want a *ValidationError %s", err, tc.wantType)
			}
			if verr.Detail.Type != tc.wantType {
				t.Fatalf("error type %s (%s), want %s", verr.Detail.Type, verr.Detail.Message, tc.wantType)
			}
			checkShape(t, verr)
			checkNodeErrors(t, verr.NodeErrors, tc.wantErrs, tc.wantDeps)
			if running, pending := e.Queue(); len(running)+len(pending) != 0 {
				t.Error("a refused prompt was queued")
			}
		})
	}
}

func checkNodeErrors(t *testing.T, got map[string]executor.NodeError, wantErrs, wantDeps map[string][]string) {
	t.Helper()
	gotTypes := map[string][]string{}
	for id, ne := range got {
		for _, e := range ne.Errors {
			gotTypes[id] = append(gotTypes[id], e.Type)
		}
		sort.Strings(gotTypes[id])
		if want, ok := wantDeps[id]; ok && !reflect.DeepEqual(ne.DependentOutputs, want) {
			t.Errorf("node %s dependent_outputs %v, want %v", id, ne.DependentOutputs, want)
		}
	}
	want := map[string][]string{}
	for id, ts := range wantErrs {
		want[id] = append([]string(nil), ts...)
		sort.Strings(want[id])
	}
	if !reflect.DeepEqual(gotTypes, want) {
		t.Errorf("node errors %v, want %v", gotTypes, want)
	}
}

// asValidation returns err's *ValidationError, nil when it has none.
func asValidation(err error) *executor.ValidationError {
	var verr *executor.ValidationError
	if errors.As(err, &verr) {
		return verr
	}
	return nil
}

// checkShape checks a refusal's JSON against ComfyUI's 400 shape.
func checkShape(t *testing.T, verr *executor.ValidationError) {
	t.Helper()
	raw, err := json.Marshal(verr)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatal(err)
	}
	if len(body) != 2 {
		t.Errorf("top-level keys of %s", raw)
	}
	checkErrorObject(t, body["error"], raw)
	nodeErrors, ok := body["node_errors"].(map[string]any)
	if !ok {
		t.Fatalf("node_errors in %s", raw)
	}
	for id, ne := range nodeErrors {
		ne := ne.(map[string]any)
		if len(ne) != 3 || ne["class_type"] == nil || ne["dependent_outputs"] == nil {
			t.Errorf("node_errors[%s] = %v", id, ne)
		}
		for _, e := range ne["errors"].([]any) {
			checkErrorObject(t, e, raw)
			if _, ok := e.(map[string]any)["extra_info"].(map[string]any)["input_name"]; !ok {
				t.Errorf("node %s error without extra_info.input_name: %v", id, e)
			}
		}
	}
	if !strings.HasPrefix(verr.Error(), "executor: prompt refused: ") {
		t.Errorf("Error() = %q", verr.Error())
	}
}

func checkErrorObject(t *testing.T, v any, raw []byte) {
	t.Helper()
	e, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("error object %v in %s", v, raw)
	}
	for _, k := range []string{"type", "message", "details"} {
		if _, ok := e[k].(string); !ok {
			t.Errorf("%s is not a string in %s", k, raw)
		}
	}
	if _, ok := e["extra_info"].(map[string]any); !ok || len(e) != 4 {
		t.Errorf("error object %v in %s", e, raw)
	}
}

// TestValidationMessages pins ComfyUI's wording where clients show it.
func TestValidationMessages(t *testing.T) {
	e, _, _ := newExecutor(t, executor.Options{})
	tests := []struct {
		prompt, node, message, details string
	}{
		{`{"1": {"class_type": "EmptyImage", "inputs": {"width": 0}},` + sender + `}`, "1", "Value 0 smaller than min of 1", "width"},
		{`{"1": {"class_type": "EmptyImage", "inputs": {"width": 99999}},` + sender + `}`, "1", "Value 99999 bigger than max of 16384", "width"},
		{`{` + empty + `, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0], "encoder": "gif"}}}`, "2", "Value not in list", "encoder: 'gif' not in ['png', 'jpeg', 'webp']"},
		{`{` + empty + `, "2": {"class_type": "SendImageOnWebSocket", "inputs": {}}}`, "2", "Required input is missing", "images"},
	}
	for _, tc := range tests {
		_, err := e.Submit(context.Background(), executor.Request{Prompt: parsePrompt(t, tc.prompt)})
		verr := asValidation(err)
		if verr == nil {
			t.Fatalf("%s accepted (err %v)", tc.prompt, err)
		}
		got := verr.NodeErrors[tc.node].Errors
		if len(got) != 1 || got[0].Message != tc.message || got[0].Details != tc.details {
			t.Errorf("got %+v, want %q / %q", got, tc.message, tc.details)
		}
	}
	_, err := e.Submit(context.Background(), executor.Request{Prompt: parsePrompt(t, `{"7": {"class_type": "Nope", "inputs": {}, "_meta": {"title": "My Nope"}}}`)})
	if verr := asValidation(err); verr == nil || verr.Detail.Message != "Node 'My Nope' not found. The custom node may not be installed." ||
		verr.Detail.ExtraInfo["class_type"] != "Nope" || verr.Detail.ExtraInfo["node_id"] != "7" {
		t.Errorf("unknown class: %+v", verr)
	}
}
