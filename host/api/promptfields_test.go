package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/host/api"
	"github.com/nodecast/nodecast/host/executor"
)

// TestPromptIDRuleAndCreateTime: a prompt_id that is not a canonical UUID
// is refused with 400 invalid_prompt_id; an accepted prompt's extra_data
// gets create_time, int(time.time() * 1000) as server.py
// PromptServer.post_prompt sets it; the Comfy-Usage-Source header is
// accepted.
func TestPromptIDRuleAndCreateTime(t *testing.T) {
	e := newEnv(t, api.Options{}, executor.Options{})
	for _, id := range []string{"abc", "12345", "6F9619FF-8B86-D011-B42D-00C04FC964FF", "{6f9619ff-8b86-d011-b42d-00c04fc964ff}", "6f9619ff8b86d011b42d00c04fc964ff"} {
		body, _ := json.Marshal(map[string]any{"prompt": json.RawMessage(sendPrompt), "prompt_id": id})
		var ans struct {
			Error struct {
				Type    string `json:"type"`
				Details string `json:"details"`
			} `json:"error"`
			NodeErrors map[string]any `json:"node_errors"`
		}
		code, raw := e.postJSON(t, "/prompt", string(body), &ans)
		if code != http.StatusBadRequest || ans.Error.Type != "invalid_prompt_id" || ans.Error.Details != id || ans.NodeErrors == nil {
			t.Errorf("prompt_id %q: %d %s, want 400 invalid_prompt_id naming it", id, code, raw)
		}
	}
	const id = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
	req, _ := http.NewRequest("POST", e.srv.URL+"/prompt", strings.NewReader(`{"prompt": `+sendPrompt+`, "prompt_id": "`+id+`", "extra_data": {"k": 1}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Comfy-Usage-Source", "test-client")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var acc executor.Accepted
	_ = json.NewDecoder(resp.Body).Decode(&acc)
	resp.Body.Close()
	if resp.StatusCode != 200 || acc.PromptID != id {
		t.Fatalf("canonical prompt_id with Comfy-Usage-Source: %d %+v", resp.StatusCode, acc)
	}
	entry, err := e.exec.Wait(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	ct, ok := entry.Prompt.ExtraData["create_time"]
	if !ok {
		t.Fatalf("extra_data %v has no create_time", entry.Prompt.ExtraData)
	}
	if n, ok := ct.(int64); !ok || n < 1_600_000_000_000 {
		t.Errorf("create_time %v (%T), want milliseconds since the epoch", ct, ct)
	}
}

// TestPartialExecutionTargets: with partial_execution_targets only the
// output nodes listed run, with what they need (execution.py
// validate_prompt's partial_execution_list; server.py post_prompt reads
// the field); a list naming no output node leaves nothing to run
// (prompt_no_outputs, as validate_prompt answers).
func TestPartialExecutionTargets(t *testing.T) {
	e := newEnv(t, api.Options{}, executor.Options{})
	prompt := `{"1": {"class_type": "EmptyImage", "inputs": {}},
	  "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0], "event": "x"}},
	  "3": {"class_type": "FailingNode", "inputs": {"images": ["1", 0]}}}`
	var acc executor.Accepted
	if code, raw := e.postJSON(t, "/prompt", `{"prompt": `+prompt+`, "partial_execution_targets": ["2"]}`, &acc); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	entry, err := e.exec.Wait(t.Context(), acc.PromptID)
	if err != nil {
		t.Fatal(err)
	}
	if !entry.Status.Completed || strings.Join(entry.Prompt.OutputsToExecute, ",") != "2" {
		t.Errorf("completed %v, outputs_to_execute %v; want a success running output 2 only", entry.Status.Completed, entry.Prompt.OutputsToExecute)
	}
	for _, c := range e.runner.Calls() {
		if c.NodeID == "3" {
			t.Errorf("node 3 ran though it is not a target")
		}
	}
	var ans struct {
		Error struct{ Type string } `json:"error"`
	}
	if code, raw := e.postJSON(t, "/prompt", `{"prompt": `+prompt+`, "partial_execution_targets": ["1"]}`, &ans); code != 400 || ans.Error.Type != executor.TypePromptNoOutputs {
		t.Errorf("targets naming no output node: %d %s, want 400 prompt_no_outputs", code, raw)
	}
	if code, raw := e.postJSON(t, "/prompt", `{"prompt": `+prompt+`, "partial_execution_targets": "2"}`, nil); code != 400 {
		t.Errorf("targets not a list: %d %s, want 400", code, raw)
	}
}

// TestNumberReordersQueue: "number" places a prompt in the queue, lowest
// first, and answers as given (server.py post_prompt:
// number = float(json_data["number"]), queued on PromptQueue's heap);
// "front" without a number goes before the others.
func TestNumberReordersQueue(t *testing.T) {
	e := newEnv(t, api.Options{}, executor.Options{})
	var slow executor.Accepted
	if code, raw := e.postJSON(t, "/prompt", `{"prompt": {"1": {"class_type": "SlowNode", "inputs": {}}}}`, &slow); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	<-e.runner.Started
	ids := map[string]string{}
	for _, tc := range []struct{ name, extra string }{
		{"plain", ``}, {"n2.5", `, "number": 2.5`}, {"n0.5", `, "number": "0.5"`}, {"front", `, "front": true`},
	} {
		var acc struct {
			PromptID string  `json:"prompt_id"`
			Number   float64 `json:"number"`
		}
		if code, raw := e.postJSON(t, "/prompt", `{"prompt": `+sendPrompt+tc.extra+`}`, &acc); code != 200 {
			t.Fatalf("%s: %d %s", tc.name, code, raw)
		}
		ids[acc.PromptID] = tc.name
		if tc.name == "n2.5" && acc.Number != 2.5 {
			t.Errorf("answer's number %v, want 2.5 as given", acc.Number)
		}
	}
	if code, raw := e.postJSON(t, "/prompt", `{"prompt": `+sendPrompt+`, "number": "soon"}`, nil); code != 400 {
		t.Errorf("number \"soon\": %d %s, want 400", code, raw)
	}
	var q struct {
		Pending []executor.QueueItem `json:"queue_pending"`
	}
	e.do(t, "GET", "/queue", "", nil, &q)
	var order []string
	for _, it := range q.Pending {
		order = append(order, ids[it.PromptID])
	}
	// plain got number 1 (the slow prompt took 0), front a negative one.
	if got := strings.Join(order, " "); got != "front n0.5 plain n2.5" {
		t.Errorf("pending order %q, want \"front n0.5 plain n2.5\"", got)
	}
	e.exec.Interrupt("")
}
