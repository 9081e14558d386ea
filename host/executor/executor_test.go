package executor_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/host/internal/executortest"
	"github.com/nodecast/nodecast/protocol"
)

// newExecutor starts an executor over the fake runner and recorder.
func newExecutor(t *testing.T, opts executor.Options) (*executor.Executor, *executortest.Runner, *executortest.Broadcaster) {
	t.Helper()
	r := executortest.NewRunner()
	b := &executortest.Broadcaster{}
	opts.Runner = r
	opts.Broadcaster = b
	e, err := executor.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e, r, b
}

// parsePrompt decodes an API-format prompt the way the HTTP API does.
func parsePrompt(t *testing.T, s string) map[string]any {
	t.Helper()
	return parsePromptB(t, s)
}

func parsePromptB(t testing.TB, s string) map[string]any {
	t.Helper()
	if s == "" {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var p map[string]any
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("bad test prompt %s: %v", s, err)
	}
	return p
}

// msg is a recorded message in comparable form: data as decoded JSON, with
// timestamps checked and removed.
type msg struct {
	Client string
	Type   string
	Data   any
}

func normalize(t *testing.T, ms []executortest.Message) []msg {
	t.Helper()
	out := make([]msg, 0, len(ms))
	for _, m := range ms {
		switch m.Type {
		case executortest.TypePart:
			p := m.Data.(*protocol.ImagePart)
			out = append(out, msg{m.ClientID, m.Type, map[string]any{"event": p.Event, "node": p.Node, "index": float64(p.Index), "part": float64(p.Part), "wire": string(p.Wire)}})
			continue
		case executortest.TypeAbort:
			out = append(out, msg{m.ClientID, m.Type, m.Data})
			continue
		case protocol.TypeProgressState: // checked by TestProgressState
			continue
		}
		b, err := json.Marshal(m.Data)
		if err != nil {
			t.Fatalf("%s: %v", m.Type, err)
		}
		var d any
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		if obj, ok := d.(map[string]any); ok {
			if ts, has := obj["timestamp"]; has {
				if f, ok := ts.(float64); !ok || f <= 0 {
					t.Errorf("%s: timestamp %v", m.Type, ts)
				}
				delete(obj, "timestamp")
			}
		}
		out = append(out, msg{m.ClientID, m.Type, d})
	}
	return out
}

// obj builds expected JSON objects tersely.
type obj = map[string]any

func status(n int) msg {
	return msg{"", protocol.TypeStatus, obj{"status": obj{"exec_info": obj{"queue_remaining": float64(n)}}}}
}

func diffMessages(t *testing.T, got, want []msg) {
	t.Helper()
	for i := 0; i < len(got) || i < len(want); i++ {
		var g, w any = "<none>", "<none>"
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if !reflect.DeepEqual(g, w) {
			gj, _ := json.Marshal(g)
			wj, _ := json.Marshal(w)
			t.Errorf("message %d:\n got  %s\n want %s", i, gj, wj)
		}
	}
}

const sendPrompt = `{
  "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1}},
  "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0], "event": "my.event"}, "_meta": {"title": "Send"}}
}`

func TestRunSendsComfyMessagesInOrder(t *testing.T) {
	e, r, b := newExecutor(t, executor.Options{})
	ctx := context.Background()
	acc, verr := e.Submit(ctx, executor.Request{Prompt: parsePrompt(t, sendPrompt), ClientID: "c1", ExtraData: map[string]any{"extra_pnginfo": "x"}})
	if verr != nil {
		t.Fatal(verr)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(acc.PromptID) {
		t.Errorf("prompt id %q is not a UUID v4", acc.PromptID)
	}
	if acc.Number != 0 || len(acc.NodeErrors) != 0 {
		t.Errorf("accepted %+v", acc)
	}
	entry, err := e.Wait(ctx, acc.PromptID)
	if err != nil {
		t.Fatal(err)
	}
	pid := acc.PromptID
	ui := obj{"images": []any{obj{"event": "my.event", "encoder": "png", "wire": "comfy", "part_size": float64(0), "batch": float64(1)}}}
	part := func(p int) msg {
		return msg{"c1", executortest.TypePart, obj{"event": "my.event", "node": "2", "index": float64(0), "part": float64(p), "wire": "comfy"}}
	}
	want := []msg{
		status(1), // queued
		status(1), // started
		{"c1", protocol.TypeExecutionStart, obj{"prompt_id": pid}},
		{"c1", protocol.TypeExecutionCached, obj{"nodes": []any{}, "prompt_id": pid}},
		{"c1", protocol.TypeExecuting, obj{"node": "1", "display_node": "1", "prompt_id": pid}},
		{"", executortest.TypeAbort, pid},
		{"c1", protocol.TypeExecuting, obj{"node": "2", "display_node": "2", "prompt_id": pid}},
		{"c1", protocol.TypeProgress, obj{"value": float64(1), "max": float64(2), "prompt_id": pid, "node": "2"}},
		part(0),
		{"c1", protocol.TypeProgress, obj{"value": float64(2), "max": float64(2), "prompt_id": pid, "node": "2"}},
		part(1),
		{"", executortest.TypeAbort, pid},
		{"c1", protocol.TypeExecuted, obj{"node": "2", "display_node": "2", "output": ui, "prompt_id": pid}},
		{"c1", protocol.TypeExecutionSuccess, obj{"prompt_id": pid}},
		status(0),
		{"c1", protocol.TypeExecuting, obj{"node": nil, "prompt_id": pid}},
	}
	diffMessages(t, normalize(t, b.Messages()), want)

	// The history entry, as /history shows it.
	raw, err := json.Marshal(entry)
	if err != nil {
		t.Fatal(err)
	}
	var h obj
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	if got := h["outputs"]; !reflect.DeepEqual(got, obj{"2": ui}) {
		t.Errorf("outputs %v", got)
	}
	st := h["status"].(obj)
	if st["status_str"] != "success" || st["completed"] != true {
		t.Errorf("status %v", st)
	}
	var types []string
	for _, m := range st["messages"].([]any) {
		pair := m.([]any)
		types = append(types, pair[0].(string))
		if pair[1].(obj)["prompt_id"] != pid {
			t.Errorf("status message %v lacks the prompt id", pair)
		}
	}
	if want := []string{"execution_start", "execution_cached", "execution_success"}; !reflect.DeepEqual(types, want) {
		t.Errorf("status messages %v, want %v", types, want)
	}
	tuple := h["prompt"].([]any)
	if len(tuple) != 5 || tuple[0] != float64(0) || tuple[1] != pid {
		t.Fatalf("prompt tuple %v", tuple)
	}
	if extra := tuple[3].(obj); extra["client_id"] != "c1" || extra["extra_pnginfo"] != "x" {
		t.Errorf("extra_data %v", extra)
	}
	if outs := tuple[4].([]any); !reflect.DeepEqual(outs, []any{"2"}) {
		t.Errorf("outputs_to_execute %v", outs)
	}
	// The prompt as run carries the filled-in defaults.
	sender := tuple[2].(obj)["2"].(obj)["inputs"].(obj)
	if sender["encoder"] != "png" || sender["wire"] != "comfy" || !reflect.DeepEqual(sender["images"], []any{"1", float64(0)}) {
		t.Errorf("resolved sender inputs %v", sender)
	}
	if meta := h["meta"].(obj)["2"].(obj); meta["node_id"] != "2" || meta["display_node"] != "2" || meta["real_node_id"] != "2" || meta["parent_node"] != nil {
		t.Errorf("meta %v", meta)
	}
	if n := r.Held(); n != 0 {
		t.Errorf("%d tensors not released", n)
	}
}

func TestNoClientIDBroadcastsToEveryone(t *testing.T) {
	e, _, b := newExecutor(t, executor.Options{})
	acc, verr := e.Submit(context.Background(), executor.Request{Prompt: parsePrompt(t, sendPrompt)})
	if verr != nil {
		t.Fatal(verr)
	}
	if _, err := e.Wait(context.Background(), acc.PromptID); err != nil {
		t.Fatal(err)
	}
	for _, m := range b.Messages() {
		if m.ClientID != "" {
			t.Errorf("%s went to %q, want every client", m.Type, m.ClientID)
		}
	}
	// client_id inside extra_data routes like the request's client_id.
	b.Reset()
	acc, verr = e.Submit(context.Background(), executor.Request{Prompt: parsePrompt(t, sendPrompt), ExtraData: map[string]any{"client_id": "c9"}})
	if verr != nil {
		t.Fatal(verr)
	}
	if _, err := e.Wait(context.Background(), acc.PromptID); err != nil {
		t.Fatal(err)
	}
	for _, m := range b.Messages() {
		if m.Type == protocol.TypeExecuting && m.ClientID != "c9" {
			t.Errorf("executing went to %q, want c9", m.ClientID)
		}
	}
}

func TestSettingsPrecedence(t *testing.T) {
	workflow := parsePrompt(t, `{
	  "1": {"class_type": "EmptyImage", "inputs": {}},
	  "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0]}},
	  "3": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0], "event": "own.event"}, "_meta": {"title": "Titled"}},
	  "4": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0]}, "_meta": {"title": "Both"}}
	}`)
	workflows := map[string]executor.Workflow{"wf": {
		Prompt: workflow,
		Nodes: map[string]map[string]any{
			"2":      {"event": "wf.by.id", "nodelabel": "not-declared"},
			"Titled": {"event": "wf.by.title", "encoder": "webp"},
			"Both":   {"event": "wf.by.title", "wire": "b64parts"},
			"4":      {"event": "wf.by.id"},
		},
	}}
	defaults := map[string]any{"event": "host.default", "encoder": "jpeg", "wire": "parts", "part_size": int64(100)}
	type settings struct{ event, encoder, wire string }
	tests := []struct {
		name     string
		opts     executor.Options
		req      executor.Request
		want     map[string]settings
		partSize float64
	}{
		{
			name: "workflow entry over host defaults, node input over both",
			opts: executor.Options{Workflows: workflows, Defaults: defaults},
			req:  executor.Request{Workflow: "wf"},
			want: map[string]settings{
				"2": {"wf.by.id", "jpeg", "parts"},
				"3": {"own.event", "webp", "parts"},
				"4": {"wf.by.id", "jpeg", "b64parts"},
			},
			partSize: 100,
		},
		{
			name: "spec defaults without host defaults",
			opts: executor.Options{Workflows: workflows},
			req:  executor.Request{Workflow: "wf"},
			want: map[string]settings{
				"2": {"wf.by.id", "png", "comfy"},
				"3": {"own.event", "webp", "comfy"},
				"4": {"wf.by.id", "png", "b64parts"},
			},
		},
		{
			name: "a posted prompt with a workflow name gets its settings",
			opts: executor.Options{Workflows: workflows, Defaults: defaults},
			req: executor.Request{Workflow: "wf", Prompt: parsePrompt(t, `{
			  "1": {"class_type": "EmptyImage", "inputs": {}},
			  "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0], "wire": "comfy"}}}`)},
			want:     map[string]settings{"2": {"wf.by.id", "jpeg", "comfy"}},
			partSize: 100,
		},
		{
			name: "host defaults only",
			opts: executor.Options{Defaults: defaults},
			req:  executor.Request{Prompt: workflow},
			want: map[string]settings{
				"2": {"host.default", "jpeg", "parts"},
				"3": {"own.event", "jpeg", "parts"},
				"4": {"host.default", "jpeg", "parts"},
			},
			partSize: 100,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _ := newExecutor(t, tc.opts)
			acc, verr := e.Submit(context.Background(), tc.req)
			if verr != nil {
				t.Fatal(verr)
			}
			entry, err := e.Wait(context.Background(), acc.PromptID)
			if err != nil {
				t.Fatal(err)
			}
			if len(entry.Outputs) != len(tc.want) {
				t.Errorf("outputs of %d nodes, want %d", len(entry.Outputs), len(tc.want))
			}
			for id, w := range tc.want {
				img := entry.Outputs[id]["images"].([]any)[0].(map[string]any)
				got := settings{img["event"].(string), img["encoder"].(string), img["wire"].(string)}
				if got != w {
					t.Errorf("node %s: got %+v, want %+v", id, got, w)
				}
				if ps, _ := img["part_size"].(int64); float64(ps) != tc.partSize {
					t.Errorf("node %s: part_size %v, want %v", id, img["part_size"], tc.partSize)
				}
			}
			// The workflow's own prompt is not changed by running it.
			if _, has := workflow["2"].(map[string]any)["inputs"].(map[string]any)["event"]; has {
				t.Error("running a workflow changed its prompt")
			}
		})
	}
}

func TestFailureThenNextPromptRuns(t *testing.T) {
	e, r, b := newExecutor(t, executor.Options{})
	ctx := context.Background()
	bad, verr := e.Submit(ctx, executor.Request{ClientID: "c1", Prompt: parsePrompt(t, `{
	  "1": {"class_type": "EmptyImage", "inputs": {}},
	  "2": {"class_type": "FailingNode", "inputs": {"images": ["1", 0]}}}`)})
	if verr != nil {
		t.Fatal(verr)
	}
	good, verr := e.Submit(ctx, executor.Request{ClientID: "c1", Prompt: parsePrompt(t, sendPrompt)})
	if verr != nil {
		t.Fatal(verr)
	}
	if good.Number != bad.Number+1 {
		t.Errorf("numbers %v then %v", bad.Number, good.Number)
	}
	badEntry, err := e.Wait(ctx, bad.PromptID)
	if err != nil {
		t.Fatal(err)
	}
	goodEntry, err := e.Wait(ctx, good.PromptID)
	if err != nil {
		t.Fatal(err)
	}
	if badEntry.Status.StatusStr != "error" || badEntry.Status.Completed {
		t.Errorf("failed prompt status %+v", badEntry.Status)
	}
	if goodEntry.Status.StatusStr != "success" || !goodEntry.Status.Completed {
		t.Errorf("next prompt status %+v", goodEntry.Status)
	}
	if got, want := e.Finished(), (executor.Finished{Success: 1, Error: 1}); got != want {
		t.Errorf("Finished() = %+v, want %+v", got, want)
	}

	// Status messages are left out: whether the second prompt was queued
	// before or after the first started is up to the scheduler.
	var got []msg
	for _, m := range normalize(t, b.Messages()) {
		if m.Type == protocol.TypeStatus || m.Type == executortest.TypePart {
			continue
		}
		if d, ok := m.Data.(obj); ok && d["prompt_id"] != nil && d["prompt_id"] != bad.PromptID {
			continue
		}
		if m.Data == good.PromptID {
			continue
		}
		got = append(got, m)
	}
	tensor := "<tensor t1 float32 [1 64 64 3] in pack fake>"
	pid := bad.PromptID
	want := []msg{
		{"c1", protocol.TypeExecutionStart, obj{"prompt_id": pid}},
		{"c1", protocol.TypeExecutionCached, obj{"nodes": []any{}, "prompt_id": pid}},
		{"c1", protocol.TypeExecuting, obj{"node": "1", "display_node": "1", "prompt_id": pid}},
		{"", executortest.TypeAbort, pid},
		{"c1", protocol.TypeExecuting, obj{"node": "2", "display_node": "2", "prompt_id": pid}},
		{"", executortest.TypeAbort, pid},
		{"c1", protocol.TypeExecutionError, obj{
			"prompt_id": pid, "node_id": "2", "node_type": "FailingNode", "executed": []any{"1"},
			"exception_message": "boom", "exception_type": "ValueError",
			"traceback":      []any{"  File \"fake.go\", line 1, in Run\n"},
			"current_inputs": obj{"images": []any{tensor}}, "current_outputs": []any{}, // execution.py handle_execution_error: list(current_outputs), node ids the cache held at the start
		}},
		{"c1", protocol.TypeExecuting, obj{"node": nil, "prompt_id": pid}},
	}
	diffMessages(t, got, want)
	if last := badEntry.Status.Messages[len(badEntry.Status.Messages)-1]; last.Type != protocol.TypeExecutionError {
		t.Errorf("last status message %s, want execution_error", last.Type)
	}
	if n := r.Held(); n != 0 {
		t.Errorf("%d tensors not released after a failure", n)
	}
}

func TestPublishErrorFailsTheNode(t *testing.T) {
	e, _, b := newExecutor(t, executor.Options{})
	b.PublishErr = errors.New("hub: image over the pending limit")
	acc, verr := e.Submit(context.Background(), executor.Request{Prompt: parsePrompt(t, sendPrompt)})
	if verr != nil {
		t.Fatal(verr)
	}
	entry, err := e.Wait(context.Background(), acc.PromptID)
	if err != nil {
		t.Fatal(err)
	}
	last := entry.Status.Messages[len(entry.Status.Messages)-1]
	data, ok := last.Data.(protocol.ExecutionErrorData)
	if !ok || data.ExceptionMessage != "hub: image over the pending limit" || data.NodeID != "2" || data.ExceptionType != "errors.errorString" {
		t.Errorf("last message %s %+v", last.Type, last.Data)
	}
}

const slowPrompt = `{"1": {"class_type": "SlowNode", "inputs": {}}}`

func TestInterrupt(t *testing.T) {
	e, r, b := newExecutor(t, executor.Options{})
	ctx := context.Background()
	acc, verr := e.Submit(ctx, executor.Request{ClientID: "c1", Prompt: parsePrompt(t, `{
	  "1": {"class_type": "EmptyImage", "inputs": {}},
	  "2": {"class_type": "SlowNode", "inputs": {"images": ["1", 0]}}}`)})
	if verr != nil {
		t.Fatal(verr)
	}
	if node := <-r.Started; node != "2" {
		t.Fatalf("started node %s", node)
	}
	if e.Interrupt("some-other-prompt") {
		t.Error("interrupting another prompt id stopped the running one")
	}
	if !e.Interrupt(acc.PromptID) {
		t.Fatal("the running prompt was not interrupted")
	}
	entry, err := e.Wait(ctx, acc.PromptID)
	if err != nil {
		t.Fatal(err)
	}
	if entry.Status.StatusStr != "error" || entry.Status.Completed {
		t.Errorf("status %+v", entry.Status)
	}
	if got, want := e.Finished(), (executor.Finished{Interrupted: 1}); got != want {
		t.Errorf("Finished() = %+v, want %+v", got, want)
	}
	ms := normalize(t, b.Messages())
	wantTail := []msg{
		{"c1", protocol.TypeExecuting, obj{"node": "2", "display_node": "2", "prompt_id": acc.PromptID}},
		{"", executortest.TypeAbort, acc.PromptID},
		{"c1", protocol.TypeExecutionInterrupted, obj{"prompt_id": acc.PromptID, "node_id": "2", "node_type": "SlowNode", "executed": []any{"1"}}},
		status(0),
		{"c1", protocol.TypeExecuting, obj{"node": nil, "prompt_id": acc.PromptID}},
	}
	if len(ms) < len(wantTail) {
		t.Fatalf("only %d messages", len(ms))
	}
	diffMessages(t, ms[len(ms)-len(wantTail):], wantTail)
	if r.Held() != 0 {
		t.Errorf("%d tensors not released after an interrupt", r.Held())
	}
	if e.Interrupt("") {
		t.Error("interrupt with nothing running reported a hit")
	}
}

func TestQueue(t *testing.T) {
	e, r, _ := newExecutor(t, executor.Options{})
	ctx := context.Background()
	submit := func(req executor.Request) executor.Accepted {
		t.Helper()
		acc, verr := e.Submit(ctx, req)
		if verr != nil {
			t.Fatal(verr)
		}
		return acc
	}
	a := submit(executor.Request{Prompt: parsePrompt(t, slowPrompt), PromptID: "A"})
	<-r.Started
	b := submit(executor.Request{Prompt: parsePrompt(t, sendPrompt), PromptID: "B"})
	c := submit(executor.Request{Prompt: parsePrompt(t, sendPrompt), PromptID: "C"})
	d := submit(executor.Request{Prompt: parsePrompt(t, sendPrompt), PromptID: "D", Front: true})
	if a.Number != 0 || b.Number != 1 || c.Number != 2 || d.Number != -1 {
		t.Errorf("numbers %v %v %v %v", a.Number, b.Number, c.Number, d.Number)
	}
	if _, err := e.Submit(ctx, executor.Request{Prompt: parsePrompt(t, sendPrompt), PromptID: "A"}); asValidation(err) == nil || asValidation(err).Detail.Type != executor.TypeDuplicatePromptID {
		t.Errorf("duplicate prompt id: %v", err)
	}
	ids := func(items []executor.QueueItem) []string {
		var out []string
		for _, it := range items {
			out = append(out, it.PromptID)
		}
		return out
	}
	running, pending := e.Queue()
	if !reflect.DeepEqual(ids(running), []string{"A"}) || !reflect.DeepEqual(ids(pending), []string{"D", "B", "C"}) {
		t.Errorf("queue running %v pending %v", ids(running), ids(pending))
	}
	if n := e.QueueRemaining(); n != 4 {
		t.Errorf("queue_remaining %d, want 4", n)
	}
	raw, err := json.Marshal(running[0])
	if err != nil {
		t.Fatal(err)
	}
	var tuple []any
	if err := json.Unmarshal(raw, &tuple); err != nil || len(tuple) != 5 || tuple[1] != "A" {
		t.Errorf("queue tuple %s", raw)
	}

	if n := e.DeleteQueued("B", "A", "nope"); n != 1 {
		t.Errorf("deleted %d, want 1 (running prompts are not deleted)", n)
	}
	if _, err := e.Wait(ctx, "B"); !errors.Is(err, executor.ErrPromptDeleted) && !errors.Is(err, executor.ErrUnknownPrompt) {
		t.Errorf("wait on a deleted prompt: %v", err)
	}
	e.ClearQueue()
	for _, id := range []string{"C", "D"} {
		if _, err := e.Wait(ctx, id); !errors.Is(err, executor.ErrUnknownPrompt) && !errors.Is(err, executor.ErrPromptDeleted) {
			t.Errorf("wait on cleared prompt %s: %v", id, err)
		}
	}
	if _, pending := e.Queue(); len(pending) != 0 {
		t.Errorf("pending after clear: %v", ids(pending))
	}
	if !e.Interrupt("") {
		t.Error("global interrupt found nothing running")
	}
	if _, err := e.Wait(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Wait(ctx, "never-queued"); !errors.Is(err, executor.ErrUnknownPrompt) {
		t.Errorf("wait on an unknown prompt: %v", err)
	}
}

func TestWorkersRunPromptsAtOnce(t *testing.T) {
	e, r, _ := newExecutor(t, executor.Options{Workers: 2})
	ctx := context.Background()
	for _, id := range []string{"A", "B"} {
		if _, verr := e.Submit(ctx, executor.Request{Prompt: parsePrompt(t, slowPrompt), PromptID: id}); verr != nil {
			t.Fatal(verr)
		}
	}
	<-r.Started
	<-r.Started // both run at once, or this would block
	if running, _ := e.Queue(); len(running) != 2 {
		t.Errorf("%d running, want 2", len(running))
	}
	e.Interrupt("")
	for _, id := range []string{"A", "B"} {
		if _, err := e.Wait(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHistoryBounded(t *testing.T) {
	e, _, _ := newExecutor(t, executor.Options{MaxHistory: 2})
	ctx := context.Background()
	for _, id := range []string{"p1", "p2", "p3"} {
		if _, verr := e.Submit(ctx, executor.Request{Prompt: parsePrompt(t, sendPrompt), PromptID: id}); verr != nil {
			t.Fatal(verr)
		}
		if _, err := e.Wait(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	keys := func(h executor.History) []string {
		out := []string{}
		for _, r := range h {
			out = append(out, r.PromptID)
		}
		return out
	}
	tests := []struct {
		max, offset int
		want        []string
	}{
		{-1, -1, []string{"p2", "p3"}},
		{1, -1, []string{"p3"}},
		{1, 0, []string{"p2"}},
		{5, 1, []string{"p3"}},
		{0, -1, []string{}},
	}
	for _, tc := range tests {
		if got := keys(e.History(tc.max, tc.offset)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("History(%d, %d) = %v, want %v", tc.max, tc.offset, got, tc.want)
		}
	}
	raw, err := json.Marshal(e.History(-1, -1))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(raw), `{"p2":{"prompt":[`) || !strings.Contains(string(raw), `},"p3":{`) {
		t.Errorf("history JSON does not keep its order: %.80s", raw)
	}
	if _, err := e.Wait(ctx, "p1"); !errors.Is(err, executor.ErrUnknownPrompt) {
		t.Errorf("the oldest entry was not dropped: %v", err)
	}
	if _, err := e.Wait(ctx, "p3"); err != nil {
		t.Errorf("wait on a finished prompt: %v", err)
	}
	e.DeleteHistory("p2")
	if got := keys(e.History(-1, -1)); !reflect.DeepEqual(got, []string{"p3"}) {
		t.Errorf("after delete: %v", got)
	}
	e.ClearHistory()
	if got := keys(e.History(-1, -1)); len(got) != 0 {
		t.Errorf("after clear: %v", got)
	}
}

func TestClose(t *testing.T) {
	r := executortest.NewRunner()
	e, err := executor.New(executor.Options{Runner: r})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, verr := e.Submit(ctx, executor.Request{Prompt: parsePrompt(t, slowPrompt), PromptID: "A"}); verr != nil {
		t.Fatal(verr)
	}
	<-r.Started
	if _, verr := e.Submit(ctx, executor.Request{Prompt: parsePrompt(t, slowPrompt), PromptID: "B"}); verr != nil {
		t.Fatal(verr)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Wait(ctx, "B"); !errors.Is(err, executor.ErrClosed) && !errors.Is(err, executor.ErrUnknownPrompt) {
		t.Errorf("pending prompt after close: %v", err)
	}
	if entry, err := e.Wait(ctx, "A"); err != nil || entry.Status.StatusStr != "error" {
		t.Errorf("running prompt after close: %v %+v", err, entry.Status)
	}
	if _, err := e.Submit(ctx, executor.Request{Prompt: parsePrompt(t, sendPrompt)}); asValidation(err) == nil || asValidation(err).Detail.Type != executor.TypeQueueClosed {
		t.Errorf("submit after close: %v", err)
	}
	if _, err := executor.New(executor.Options{}); !errors.Is(err, executor.ErrNoRunner) {
		t.Errorf("New without a runner: %v", err)
	}
}
