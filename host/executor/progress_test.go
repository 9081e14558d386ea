package executor_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/protocol"
)

// TestProgressState checks progress_state field by field against ComfyUI's
// comfy_execution/progress.py WebUIProgressHandler._send_progress_state
// ({prompt_id, nodes: {id: {value, max, state, node_id, prompt_id,
// display_node_id, parent_node_id, real_node_id}}}, pending nodes left
// out), sent on ProgressRegistry.start_progress (running, 0 of 1),
// update_progress (running, value of max) and finish_progress (finished,
// value = max), beside the "progress" messages.
func TestProgressState(t *testing.T) {
	e, _, b := newExecutor(t, executor.Options{})
	ctx := context.Background()
	acc, verr := e.Submit(ctx, executor.Request{Prompt: parsePrompt(t, sendPrompt), ClientID: "c1"})
	if verr != nil {
		t.Fatal(verr)
	}
	if _, err := e.Wait(ctx, acc.PromptID); err != nil {
		t.Fatal(err)
	}
	pid := acc.PromptID
	node := func(id string, value, max float64, state string) obj {
		return obj{"value": value, "max": max, "state": state, "node_id": id, "prompt_id": pid,
			"display_node_id": id, "parent_node_id": nil, "real_node_id": id}
	}
	want := []obj{
		{"1": node("1", 0, 1, "running")},
		{"1": node("1", 1, 1, "finished")},
		{"1": node("1", 1, 1, "finished"), "2": node("2", 0, 1, "running")},
		{"1": node("1", 1, 1, "finished"), "2": node("2", 1, 2, "running")},
		{"1": node("1", 1, 1, "finished"), "2": node("2", 2, 2, "running")},
		{"1": node("1", 1, 1, "finished"), "2": node("2", 2, 2, "finished")},
	}
	var got []obj
	progress := 0
	for _, m := range b.Messages() {
		switch m.Type {
		case protocol.TypeProgress:
			progress++
			continue
		case protocol.TypeProgressState:
		default:
			continue
		}
		if m.ClientID != "c1" {
			t.Errorf("progress_state sent to %q, want the prompt's client c1", m.ClientID)
		}
		bs, _ := json.Marshal(m.Data)
		var d obj
		if err := json.Unmarshal(bs, &d); err != nil {
			t.Fatal(err)
		}
		if d["prompt_id"] != pid || len(d) != 2 {
			t.Errorf("progress_state data %s: want exactly prompt_id and nodes", bs)
		}
		nodes, _ := d["nodes"].(map[string]any)
		got = append(got, nodes)
	}
	if progress != 2 {
		t.Errorf("%d progress messages, want 2: progress_state comes beside them, not instead", progress)
	}
	if !reflect.DeepEqual(got, want) {
		gb, _ := json.MarshalIndent(got, "", " ")
		wb, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("progress_state nodes:\ngot  %s\nwant %s", gb, wb)
	}
}

// TestErrorCurrentOutputsAndCachedProgress: execution_error's
// current_outputs is ComfyUI's list of the node ids the output cache held
// when the prompt started (execution.py PromptExecutor.handle_execution_error,
// list(current_outputs) with current_outputs = caches.outputs.all_node_ids()),
// and a cached node's progress is finished at once (execution.py execute:
// get_progress_state().finish_progress on a cache hit); the failed node is
// "error".
func TestErrorCurrentOutputsAndCachedProgress(t *testing.T) {
	e, _, b := newExecutor(t, executor.Options{CacheBytes: 1 << 30})
	ctx := context.Background()
	prompt := `{"1": {"class_type": "EmptyImage", "inputs": {}},
	  "2": {"class_type": "FailingNode", "inputs": {"images": ["1", 0]}}}`
	var errs []protocol.ExecutionErrorData
	var last protocol.ProgressStateData
	for range 2 {
		b.Reset()
		acc, verr := e.Submit(ctx, executor.Request{ClientID: "c1", Prompt: parsePrompt(t, prompt)})
		if verr != nil {
			t.Fatal(verr)
		}
		if _, err := e.Wait(ctx, acc.PromptID); err != nil {
			t.Fatal(err)
		}
		for _, m := range b.Messages() {
			switch d := m.Data.(type) {
			case protocol.ExecutionErrorData:
				errs = append(errs, d)
			case protocol.ProgressStateData:
				last = d
			}
		}
	}
	if len(errs) != 2 {
		t.Fatalf("%d execution_error messages, want 2", len(errs))
	}
	if errs[0].CurrentOutputs == nil || len(errs[0].CurrentOutputs) != 0 {
		t.Errorf("first run's current_outputs %#v, want [] (nothing cached)", errs[0].CurrentOutputs)
	}
	if !reflect.DeepEqual(errs[1].CurrentOutputs, []string{"1"}) {
		t.Errorf("second run's current_outputs %#v, want [\"1\"] (node 1 came from the cache)", errs[1].CurrentOutputs)
	}
	if errs[1].Timestamp <= 0 {
		t.Errorf("execution_error timestamp %d, want ComfyUI's int(time.time()*1000)", errs[1].Timestamp)
	}
	if s := last.Nodes["1"]; s.State != protocol.NodeStateFinished || s.Value != 1 || s.Max != 1 {
		t.Errorf("cached node's progress_state %+v, want finished 1 of 1", s)
	}
	if s := last.Nodes["2"]; s.State != protocol.NodeStateError {
		t.Errorf("failed node's progress_state %+v, want error", s)
	}
}
