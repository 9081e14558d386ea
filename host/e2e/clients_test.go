package e2e_test

import (
	"encoding/json"
	"testing"

	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/protocol"
)

// TestClientsReceiveOnlyTheirOwnPrompts queues prompts from two clients
// with different clientIds, back to back so that both are in the queue at
// once, and checks that neither receives the other's images or messages.
func TestClientsReceiveOnlyTheirOwnPrompts(t *testing.T) {
	const size = 256
	p := photoOf(t, size)
	s := startBuiltServer(t, config.Default())
	name := mustUpload(t, s, "shared.png", p.PNG)

	type run struct {
		c        *testclient.Client
		shape    wireShape
		event    string
		n        int
		promptID []string
	}
	// Different shapes, events and batch sizes, so any leak shows.
	a := &run{c: dialWS(t, s, "client-a", true, stockReadLimit), shape: shapePART, event: "a.images", n: 2}
	b := &run{c: dialWS(t, s, "client-b", false, stockReadLimit), shape: shapeB64, event: "b.images", n: 3}
	w := &run{c: dialWS(t, s, "client-w", false, stockReadLimit), shape: shapeWhole, n: 4}
	runs := []*run{a, b, w}
	for round := 0; round < 2; round++ {
		for _, r := range runs {
			var prompt map[string]any
			if r.shape == shapeWhole {
				prompt = pipeline(name, r.n, "ETN_SendImageWebSocket", nil)
			} else {
				prompt = pipeline(name, r.n, "SendImageOnWebSocket", map[string]any{"event": r.event})
			}
			r.promptID = append(r.promptID, queuePrompt(t, s, prompt, r.c.ID))
		}
	}
	for _, r := range runs {
		for _, id := range r.promptID {
			waitPromptEnd(t, r.c, id)
		}
	}
	// Every prompt has ended, and a marker sent now reaches each client after
	// anything the hub ever queued for it.
	for _, r := range runs {
		t.Run(r.c.ID, func(t *testing.T) {
			log := waitMarker(t, s, r.c)
			checkErr(t, r.c)
			mine := map[string]bool{}
			for _, id := range r.promptID {
				mine[id] = true
			}
			for _, m := range log {
				if m.Kind == testclient.PART && !mine[m.Part.PromptID] {
					t.Fatalf("received a PART of prompt %s", m.Part.PromptID)
				}
				if m.Kind != testclient.JSON {
					continue
				}
				if id, ok := m.Field("prompt_id").(string); ok && !mine[id] {
					t.Fatalf("received %v of another client's prompt", m)
				}
				for _, other := range runs {
					if other != r && other.event != "" && m.Type == other.event {
						t.Fatalf("received %v", m)
					}
				}
			}
			var imgs []receivedImage
			for _, id := range r.promptID {
				imgs = append(imgs, imagesOf(t, promptMessages(log, id), r.shape, r.event, id, r.n)...)
			}
			all := imageCounter{b64Event: r.event}
			for _, m := range log {
				all.add(m)
			}
			if len(imgs) != 2*r.n || all.done != 2*r.n {
				t.Fatalf("received %d images during its prompts and %d in all, want %d", len(imgs), all.done, 2*r.n)
			}
			for _, img := range imgs {
				checkPNG(t, img.Data, p)
			}
		})
	}
}

// promptMessages returns the messages from promptID's execution_start to its
// executing {node:null}, without progress_state, whose shapes
// host/executor's TestProgressState checks (TestPromptWithoutClientReachesEveryClient
// checks here that it arrives over the socket).
func promptMessages(log []testclient.Received, promptID string) []testclient.Received {
	all := promptMessagesAll(log, promptID)
	out := make([]testclient.Received, 0, len(all))
	for _, r := range all {
		if !(r.Kind == testclient.JSON && r.Type == protocol.TypeProgressState) {
			out = append(out, r)
		}
	}
	return out
}

// promptMessagesAll is promptMessages with progress_state.
func promptMessagesAll(log []testclient.Received, promptID string) []testclient.Received {
	start, end := -1, -1
	for i, r := range log {
		if start < 0 && r.IsJSON(protocol.TypeExecutionStart, promptID) {
			start = i
		}
		if start >= 0 && r.IsPromptEnd(promptID) {
			end = i
			break
		}
	}
	if start < 0 || end < 0 {
		return nil
	}
	return log[start : end+1]
}

// TestPromptWithoutClientReachesEveryClient queues a prompt with no
// client_id: as in ComfyUI, its messages and images go to every client, each
// in the shape it negotiated.
func TestPromptWithoutClientReachesEveryClient(t *testing.T) {
	p := photoOf(t, 256)
	s := startBuiltServer(t, config.Default())
	name := mustUpload(t, s, "everyone.png", p.PNG)
	parts := dialWS(t, s, "everyone-parts", true, stockReadLimit)
	plain := dialWS(t, s, "everyone-plain", false, stockReadLimit)

	id := queue(t, s, map[string]any{"prompt": pipeline(name, 2, "SendImageOnWebSocket", map[string]any{"event": "to.all"})})
	for _, tc := range []struct {
		c     *testclient.Client
		shape wireShape
	}{{parts, shapePART}, {plain, shapeB64}} {
		log := waitPromptEnd(t, tc.c, id)
		checkErr(t, tc.c)
		b64 := ""
		if tc.shape == shapeB64 {
			b64 = "to.all"
		}
		checkPromptOrder(t, promptMessages(log, id), promptShape{PromptID: id, Nodes: []string{"1", "2", "3"}, Images: 2, B64Event: b64, Executed: true})
		// comfy_execution/progress.py _send_progress_state: the last one
		// has every node finished.
		var last protocol.ProgressStateData
		for _, r := range promptMessagesAll(log, id) {
			if r.Kind == testclient.JSON && r.Type == protocol.TypeProgressState {
				if err := json.Unmarshal(r.Data, &last); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, n := range []string{"1", "2", "3"} {
			if st := last.Nodes[n]; st.State != protocol.NodeStateFinished || st.PromptID != id || st.NodeID != n || st.Value != st.Max {
				t.Errorf("last progress_state's node %s: %+v, want finished", n, st)
			}
		}
		checkImages(t, imagesOf(t, log, tc.shape, "to.all", id, 2), 2, p)
	}
}
