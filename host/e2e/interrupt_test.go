package e2e_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/protocol"
)

// TestInterruptThenNextPromptRuns interrupts a long prompt (sixteen 2048²
// images) through POST /interrupt while its sender runs: the client gets
// execution_interrupted and executing {node:null}, only whole images, and
// the next prompt runs to execution_success. The interrupt names the
// prompt, or has no body at all, as ComfyUI's front end sends it.
func TestInterruptThenNextPromptRuns(t *testing.T) {
	const batch = 16
	s := startBuiltServer(t, config.Default())
	c := dialWS(t, s, "interrupt", true, stockReadLimit)

	prompt := func(size, n int) map[string]any {
		return map[string]any{
			"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": size, "height": size, "batch_size": n, "color": 0x336699}},
			"2": map[string]any{"class_type": "SendImageOnWebSocket", "inputs": map[string]any{"images": []any{"1", 0}, "event": "long.batch"}},
		}
	}
	for _, tc := range []struct {
		name string
		body func(promptID string) any
	}{
		{"with prompt_id", func(id string) any { return map[string]any{"prompt_id": id} }},
		{"without a body", func(string) any { return "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := queuePrompt(t, s, prompt(2048, batch), c.ID)
			// Interrupt once the sender has started: it has all sixteen
			// images still to convert, encode and send.
			if _, err := c.WaitFor(waitTimeout, func(r testclient.Received) bool {
				return r.IsJSON(protocol.TypeExecuting, id) && r.Field("node") == "2"
			}); err != nil {
				t.Fatal(err)
			}
			if status, ans := post(t, s, "/interrupt", tc.body(id)); status != http.StatusOK {
				t.Fatalf("POST /interrupt: %d %v", status, ans)
			}
			log := promptMessages(waitPromptEnd(t, c, id), id)
			checkErr(t, c) // no torn image: every PART frame belongs to an image that completed

			var interrupted *protocol.ExecutionInterruptedData
			images := 0
			for _, r := range log {
				switch {
				case r.Kind == testclient.PART:
					if r.Done != nil {
						images++
					}
				case r.Type == protocol.TypeExecutionSuccess:
					t.Fatalf("the prompt ran to the end: the interrupt came too late to test anything (%d images)", images)
				case r.Type == protocol.TypeExecutionError:
					t.Fatalf("interrupt reported as an error: %s", r.Data)
				case r.Type == protocol.TypeExecutionInterrupted:
					interrupted = &protocol.ExecutionInterruptedData{}
					if err := json.Unmarshal(r.Data, interrupted); err != nil {
						t.Fatal(err)
					}
				}
			}
			if interrupted == nil {
				t.Fatalf("no execution_interrupted for prompt %s", id)
			}
			if interrupted.PromptID != id || interrupted.NodeID != "2" || interrupted.NodeType != "SendImageOnWebSocket" ||
				len(interrupted.Executed) != 1 || interrupted.Executed[0] != "1" {
				t.Fatalf("execution_interrupted %+v: want node 2 (SendImageOnWebSocket), executed [1]", interrupted)
			}
			if images >= batch {
				t.Fatalf("%d images arrived after an interrupt", images)
			}
			t.Logf("interrupted after %d of %d images", images, batch)
			if st := historyStatus(t, s, id); st["completed"] != false {
				t.Errorf("history status %v, want not completed", st)
			}

			next := queuePrompt(t, s, prompt(64, 2), c.ID)
			log = promptMessages(waitPromptEnd(t, c, next), next)
			checkErr(t, c)
			checkPromptOrder(t, log, promptShape{PromptID: next, Nodes: []string{"1", "2"}, Images: 2, Executed: true})
		})
	}
}
