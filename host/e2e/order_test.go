package e2e_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/protocol"
)

// promptShape is what one prompt of LoadImage → ... → sender must look like
// on a client's socket.
type promptShape struct {
	PromptID string
	Nodes    []string // node ids in execution order; the last is the sender
	Images   int      // images the sender sends
	B64Event string   // type of the base64 part messages the client gets, if any
	Executed bool     // the sender reports an "executed" message
}

// imageCounter counts the images completed by a stream of messages, for
// each wire shape.
type imageCounter struct {
	b64Event string
	b64Parts map[string]int // parts received per prompt_id/nodelabel/img_idx
	done     int
}

// add reports whether r carries image data, and counts the image it completes.
func (c *imageCounter) add(r testclient.Received) bool {
	switch r.Kind {
	case testclient.Whole:
		c.done++
		return true
	case testclient.PART:
		if r.Done != nil {
			c.done++
		}
		return true
	}
	if c.b64Event == "" || r.Type != c.b64Event {
		return false
	}
	var d protocol.B64PartData
	_ = json.Unmarshal(r.Data, &d)
	if c.b64Parts == nil {
		c.b64Parts = map[string]int{}
	}
	k := fmt.Sprintf("%s/%s/%d", d.PromptID, d.NodeLabel, d.ImgIdx)
	c.b64Parts[k]++
	if c.b64Parts[k] == d.PartCount {
		c.done++
	}
	return true
}

// checkPromptOrder checks ComfyUI's message order for one prompt in a
// client's log: execution_start, execution_cached, executing per node, then
// the sender's images and progress, executed (where the sender has a UI
// output), execution_success and executing {node:null}. Every image arrives
// while the sender runs, before executed; progress value v arrives after the
// v-th image.
func checkPromptOrder(t *testing.T, log []testclient.Received, want promptShape) {
	t.Helper()
	var seq []testclient.Received
	for _, r := range log {
		if r.Kind == testclient.JSON && (r.Type == protocol.TypeStatus || r.Type == protocol.TypeFeatureFlags || r.Type == protocol.TypeProgressState || r.Type == "e2e.marker") { // progress_state: see promptMessages
			continue
		}
		seq = append(seq, r)
	}
	fail := func(i int, format string, args ...any) {
		t.Helper()
		var b strings.Builder
		for j, r := range seq {
			mark := "  "
			if j == i {
				mark = "->"
			}
			if r.Kind == testclient.JSON || j == i || j == 0 || (j > 0 && seq[j-1].Kind == testclient.JSON) {
				fmt.Fprintf(&b, "%s %3d %v\n", mark, j, r)
			}
		}
		t.Fatalf("prompt %s, message %d: %s\nmessages (image data runs shortened):\n%s", want.PromptID, i, fmt.Sprintf(format, args...), b.String())
	}
	i := 0
	expectJSON := func(typ string, check func(d map[string]any) string) {
		t.Helper()
		if i >= len(seq) {
			fail(i, "missing %s", typ)
		}
		r := seq[i]
		if r.Kind != testclient.JSON || r.Type != typ {
			fail(i, "got %v, want %s", r, typ)
		}
		var d map[string]any
		if err := json.Unmarshal(r.Data, &d); err != nil {
			fail(i, "%s data: %v", typ, err)
		}
		if d["prompt_id"] != want.PromptID {
			fail(i, "%s of prompt %v", typ, d["prompt_id"])
		}
		if check != nil {
			if msg := check(d); msg != "" {
				fail(i, "%s: %s", typ, msg)
			}
		}
		i++
	}
	expectJSON(protocol.TypeExecutionStart, nil)
	expectJSON(protocol.TypeExecutionCached, func(d map[string]any) string {
		if nodes, ok := d["nodes"].([]any); !ok || len(nodes) != 0 {
			return fmt.Sprintf("nodes %v, want []", d["nodes"])
		}
		return ""
	})
	for _, id := range want.Nodes {
		expectJSON(protocol.TypeExecuting, func(d map[string]any) string {
			if d["node"] != id {
				return fmt.Sprintf("node %v, want %s", d["node"], id)
			}
			return ""
		})
	}
	sender := want.Nodes[len(want.Nodes)-1]
	count := imageCounter{b64Event: want.B64Event}
	progress := 0
	for ; i < len(seq); i++ {
		r := seq[i]
		if count.add(r) {
			continue
		}
		if r.Type != protocol.TypeProgress {
			break
		}
		var p protocol.ProgressData
		_ = json.Unmarshal(r.Data, &p)
		progress++
		switch {
		case p.PromptID != want.PromptID || p.Node != sender:
			fail(i, "progress of prompt %s node %s, want node %s", p.PromptID, p.Node, sender)
		case p.Value != progress || p.Max != want.Images:
			fail(i, "progress %d/%d, want %d/%d", p.Value, p.Max, progress, want.Images)
		case count.done < p.Value:
			fail(i, "progress %d/%d after only %d images", p.Value, p.Max, count.done)
		}
	}
	if count.done != want.Images {
		fail(i, "%d images while the sender ran, want %d", count.done, want.Images)
	}
	if progress != want.Images {
		fail(i, "%d progress messages, want %d", progress, want.Images)
	}
	if want.Executed {
		expectJSON(protocol.TypeExecuted, func(d map[string]any) string {
			if d["node"] != sender || d["display_node"] != sender {
				return fmt.Sprintf("node %v display_node %v, want %s", d["node"], d["display_node"], sender)
			}
			return ""
		})
	}
	expectJSON(protocol.TypeExecutionSuccess, nil)
	expectJSON(protocol.TypeExecuting, func(d map[string]any) string {
		if node, has := d["node"]; !has || node != nil {
			return fmt.Sprintf("node %v, want null", d["node"])
		}
		return ""
	})
	if i != len(seq) {
		fail(i, "unexpected message after the prompt's end")
	}
}

// executedOutput returns the "output" of the prompt's executed message.
func executedOutput(t *testing.T, log []testclient.Received, promptID string) any {
	t.Helper()
	for _, r := range log {
		if r.IsJSON(protocol.TypeExecuted, promptID) {
			return r.Field("output")
		}
	}
	t.Fatalf("no executed message for prompt %s", promptID)
	return nil
}

// websocketOutput is the UI output of ETN_SendImageWebSocket for n images,
// as ComfyUI's JSON decodes it.
func websocketOutput(n int, mime string) any {
	list := make([]any, n)
	for i := range list {
		list[i] = map[string]any{"source": "websocket", "content-type": mime, "type": "output"}
	}
	return map[string]any{"images": list}
}
