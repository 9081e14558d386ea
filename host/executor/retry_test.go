package executor_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/host/internal/executortest"
	"github.com/nodecast/nodecast/host/supervisor"
	"github.com/nodecast/nodecast/protocol"
)

// repeatPrompt is the common ComfyUI prompt source → RepeatImageBatch →
// sender, all three in the same pack: a death in any of them takes the
// tensors the next ones need.
const repeatPrompt = `{
  "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1}},
  "2": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 3}},
  "3": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["2", 0], "event": "retry.event"}}
}`

// promptMessages returns the messages of one prompt in order: those that
// name it, its parts, and its aborts.
func promptMessages(ms []executortest.Message, promptID string) []executortest.Message {
	var out []executortest.Message
	for _, m := range ms {
		switch d := m.Data.(type) {
		case *protocol.ImagePart:
			if d.PromptID != promptID {
				continue
			}
		case string:
			if d != promptID {
				continue
			}
		default:
			if !strings.Contains(fmt.Sprintf("%+v", d), promptID) {
				continue
			}
		}
		out = append(out, m)
	}
	return out
}

// committedImages plays the hub's part: an image reaches clients when its
// last part arrives, and AbortImages drops the unfinished ones. It returns
// the batch indexes clients received, in order, and reports a part sent
// twice for one pending image (which the hub refuses).
func committedImages(t *testing.T, ms []executortest.Message) []int {
	t.Helper()
	pending := map[string]map[int]bool{}
	var got []int
	for _, m := range ms {
		switch m.Type {
		case executortest.TypeAbort:
			clear(pending)
		case executortest.TypePart:
			p := m.Data.(*protocol.ImagePart)
			parts := pending[p.ImageID]
			if parts == nil {
				parts = map[int]bool{}
				pending[p.ImageID] = parts
			}
			if parts[p.Part] {
				t.Errorf("image %s part %d handed on twice", p.ImageID, p.Part)
			}
			parts[p.Part] = true
			if len(parts) == p.Parts {
				got = append(got, p.Index)
				delete(pending, p.ImageID)
			}
		}
	}
	return got
}

// executingNodes lists the nodes of the prompt's executing messages, "null"
// for the last.
func executingNodes(ms []executortest.Message) []string {
	var out []string
	for _, m := range ms {
		if m.Type != protocol.TypeExecuting {
			continue
		}
		d := m.Data.(protocol.ExecutingData)
		if d.Node == nil {
			out = append(out, "null")
		} else {
			out = append(out, *d.Node)
		}
	}
	return out
}

func callClasses(r *executortest.Runner) []string {
	var out []string
	for _, c := range r.Calls() {
		out = append(out, c.ClassType)
	}
	return out
}

func runPrompt(t *testing.T, e *executor.Executor, prompt string) (string, executor.HistoryEntry) {
	t.Helper()
	acc, verr := e.Submit(context.Background(), executor.Request{Prompt: parsePrompt(t, prompt), ClientID: "c1"})
	if verr != nil {
		t.Fatal(verr)
	}
	entry, err := e.Wait(context.Background(), acc.PromptID)
	if err != nil {
		t.Fatal(err)
	}
	return acc.PromptID, entry
}

// TestPluginDeathRerunsLostInputs: a node whose plugin died and took its
// inputs gets them made again by quiet re-runs of the nodes upstream, and is
// retried once; clients get each image of the batch once, and see one
// "executing" per node.
func TestPluginDeathRerunsLostInputs(t *testing.T) {
	const (
		empty  = executortest.ClassEmptyImage
		repeat = executortest.ClassRepeat
		send   = executortest.ClassSender
	)
	tests := []struct {
		name  string
		death executortest.Death
		calls []string
	}{
		{"sender dies after one image of three", executortest.Death{ClassType: send, AfterImages: 1},
			[]string{empty, repeat, send, empty, repeat, send}},
		{"sender dies inside its first image", executortest.Death{ClassType: send, AfterImages: 0},
			[]string{empty, repeat, send, empty, repeat, send}},
		{"sender dies after its last image", executortest.Death{ClassType: send, AfterImages: 3},
			[]string{empty, repeat, send, empty, repeat, send}},
		{"the middle node dies", executortest.Death{ClassType: repeat},
			[]string{empty, repeat, empty, repeat, send}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, r, b := newExecutor(t, executor.Options{})
			r.Die(tc.death)
			pid, entry := runPrompt(t, e, repeatPrompt)
			if entry.Status.StatusStr != "success" || !entry.Status.Completed {
				t.Fatalf("status %+v", entry.Status)
			}
			ms := promptMessages(b.Messages(), pid)
			if got := committedImages(t, ms); !reflect.DeepEqual(got, []int{0, 1, 2}) {
				t.Errorf("clients got images %v, want [0 1 2]: each once", got)
			}
			if got := callClasses(r); !reflect.DeepEqual(got, tc.calls) {
				t.Errorf("calls %v, want %v", got, tc.calls)
			}
			if got := executingNodes(ms); !reflect.DeepEqual(got, []string{"1", "2", "3", "null"}) {
				t.Errorf("executing %v, want one per node: re-runs are quiet", got)
			}
			// The retry's inputs are the re-run's tensors, of the new generation.
			calls := r.Calls()
			if h := calls[len(calls)-1].Inputs; !r.Live(handleOf(t, h)) {
				t.Errorf("the retry ran on a dead tensor: %v", h)
			}
			// Progress never runs backwards, though the retry starts over.
			last := 0
			for _, m := range ms {
				if p, ok := m.Data.(protocol.ProgressData); ok {
					if p.Value <= last {
						t.Errorf("progress %d after %d", p.Value, last)
					}
					last = p.Value
				}
			}
			var types []string
			for _, m := range entry.Status.Messages {
				types = append(types, m.Type)
			}
			if want := []string{"execution_start", "execution_cached", "execution_success"}; !reflect.DeepEqual(types, want) {
				t.Errorf("history status messages %v, want %v", types, want)
			}
			if ui := entry.Outputs["3"]; ui == nil {
				t.Errorf("history outputs %v lack the sender's", entry.Outputs)
			}
			if r.Generation() != 2 || r.Held() != 0 {
				t.Errorf("generation %d, %d tensors held after the prompt", r.Generation(), r.Held())
			}
		})
	}
}

func handleOf(t *testing.T, inputs map[string]any) (h supervisor.Handle) {
	t.Helper()
	for _, v := range inputs {
		if hh, ok := v.(supervisor.Handle); ok {
			return hh
		}
	}
	t.Fatalf("no tensor input in %v", inputs)
	return h
}

// TestSecondDeathFailsTheNode: a node is retried once per prompt; a second
// death, in its retry or in the re-run of its inputs, fails it with
// execution_error as any failure does, and the next prompt runs.
func TestSecondDeathFailsTheNode(t *testing.T) {
	send := executortest.ClassSender
	const died = "plugins: Run: plugin unavailable: plugin process exited"
	tests := []struct {
		name    string
		deaths  []executortest.Death
		node    string
		images  []int
		message string
	}{
		{"in the retry", []executortest.Death{{ClassType: send, AfterImages: 1}, {ClassType: send, AfterImages: 2}},
			"3", []int{0, 1}, died},
		{"in the re-run of an input", []executortest.Death{{ClassType: send, AfterImages: 1}, {ClassType: executortest.ClassEmptyImage}},
			"3", []int{0}, "executor: running node 1 (EmptyImage) again for node 3: " + died},
		// Such a death is the supervisor's to retry: a second try here
		// would be a third in all.
		{"a node whose inputs survive is not retried again", []executortest.Death{{ClassType: executortest.ClassEmptyImage}},
			"1", nil, died},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, r, b := newExecutor(t, executor.Options{})
			for _, d := range tc.deaths {
				r.Die(d)
			}
			pid, entry := runPrompt(t, e, repeatPrompt)
			if entry.Status.StatusStr != "error" || entry.Status.Completed {
				t.Fatalf("status %+v", entry.Status)
			}
			last := entry.Status.Messages[len(entry.Status.Messages)-1]
			data, ok := last.Data.(protocol.ExecutionErrorData)
			if !ok || last.Type != protocol.TypeExecutionError {
				t.Fatalf("last status message %s %+v, want execution_error", last.Type, last.Data)
			}
			if data.NodeID != tc.node || data.ExceptionType != "plugins.CallError" || data.ExceptionMessage != tc.message {
				t.Errorf("execution_error node %s type %s message %q, want node %s, plugins.CallError, %q",
					data.NodeID, data.ExceptionType, data.ExceptionMessage, tc.node, tc.message)
			}
			ms := promptMessages(b.Messages(), pid)
			if got := committedImages(t, ms); !reflect.DeepEqual(got, tc.images) {
				t.Errorf("clients got images %v, want %v: each once", got, tc.images)
			}
			var executing []string
			for _, id := range []string{"1", "2", "3"} {
				executing = append(executing, id)
				if id == tc.node {
					break
				}
			}
			if got := executingNodes(ms); !reflect.DeepEqual(got, append(executing, "null")) {
				t.Errorf("executing %v, want %v then null", got, executing)
			}
			if r.Held() != 0 {
				t.Errorf("%d tensors held after the prompt", r.Held())
			}

			pid, entry = runPrompt(t, e, repeatPrompt)
			if entry.Status.StatusStr != "success" {
				t.Fatalf("next prompt: status %+v", entry.Status)
			}
			if got := committedImages(t, promptMessages(b.Messages(), pid)); !reflect.DeepEqual(got, []int{0, 1, 2}) {
				t.Errorf("next prompt: clients got images %v", got)
			}
		})
	}
}
