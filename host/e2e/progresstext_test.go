package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodecast/nodecast/client"
	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/internal/testbin"
	"github.com/nodecast/nodecast/protocol"
)

// promptReader hands out a testclient's messages one prompt at a time.
type promptReader struct {
	c    *testclient.Client
	seen int
}

// untilEnd waits for the end of promptID and returns the messages that
// arrived since the previous call.
func (r *promptReader) untilEnd(t *testing.T, promptID string) []testclient.Received {
	t.Helper()
	log := waitPromptEnd(t, r.c, promptID)
	out := log[r.seen:]
	r.seen = len(log)
	return out
}

// terminal is the prompt's execution_success or execution_error in msgs.
func terminal(msgs []testclient.Received) testclient.Received {
	for i := len(msgs) - 1; i >= 0; i-- {
		if m := msgs[i]; m.Kind == testclient.JSON && (m.Type == protocol.TypeExecutionSuccess || m.Type == protocol.TypeExecutionError) {
			return m
		}
	}
	return testclient.Received{}
}

// textFrames picks the TEXT frames (type 3) of msgs, as they came.
func textFrames(msgs []testclient.Received) [][]byte {
	var out [][]byte
	for _, m := range msgs {
		if m.Kind == testclient.Text {
			out = append(out, m.Frame)
		}
	}
	return out
}

// comfyTextFrame is the frame ComfyUI's server.py send_progress_text sends
// for send_progress_text(text, node_id): encode_bytes' struct.pack(">I", 3),
// then struct.pack(">I", len(node_id_bytes)) + node_id_bytes + text.
func comfyTextFrame(node, text string) []byte {
	b := []byte{0, 0, 0, 3, 0, 0, 0, byte(len(node))}
	return append(append(b, node...), text...)
}

// TestProgressTextFrames runs the progresstext example as a real plugin
// subprocess: its node's SendProgressText calls reach the prompt's client
// as TEXT frames, byte for byte ComfyUI's, each before the progress message
// the node sent after it, and no other client; a prompt without client_id
// reaches every client, PART clients included. Text over the limit fails the
// node with an error naming the limit and the length, and the host goes on.
func TestProgressTextFrames(t *testing.T) {
	s := progressTextServer(t)
	owner := &promptReader{c: dialWS(t, s, "owner", false, 0)}
	other := &promptReader{c: dialWS(t, s, "other", true, 0)}

	prompt := map[string]any{"7": map[string]any{"class_type": "ShowProgressText", "inputs": map[string]any{"text": "étape", "steps": 3}}}
	id := queuePrompt(t, s, prompt, "owner")
	msgs := owner.untilEnd(t, id)
	if last := terminal(msgs); last.Type != protocol.TypeExecutionSuccess {
		t.Fatalf("prompt ended with %v", last)
	}
	frames := textFrames(msgs)
	if len(frames) != 3 {
		t.Fatalf("got %d TEXT frames, want 3", len(frames))
	}
	for i, f := range frames {
		if want := comfyTextFrame("7", fmt.Sprintf("étape %d/3", i+1)); !bytes.Equal(f, want) {
			t.Errorf("frame %d: % x, want % x", i, f, want)
		}
	}
	// Order: TEXT i/3 comes before progress value i (the node sent it first).
	seen := 0
	for _, m := range msgs {
		if m.Kind == testclient.Text {
			seen++
		}
		if m.Kind == testclient.JSON && m.Type == protocol.TypeProgress {
			var p protocol.ProgressData
			json.Unmarshal(m.Data, &p)
			if p.Value > seen {
				t.Errorf("progress %d/%d before its TEXT frame (%d seen)", p.Value, p.Max, seen)
			}
		}
	}

	// A prompt without client_id: every client, and the first TEXT frame
	// "other" ever gets is this prompt's (the owner's went to the owner only).
	prompt["7"].(map[string]any)["inputs"] = map[string]any{"text": "all", "steps": 1}
	id2 := queue(t, s, map[string]any{"prompt": prompt})
	for name, c := range map[string]*promptReader{"owner": owner, "other": other} {
		got := textFrames(c.untilEnd(t, id2))
		if len(got) != 1 || !bytes.Equal(got[0], comfyTextFrame("7", "all 1/1")) {
			t.Errorf("%s: TEXT frames %q, want only all 1/1", name, got)
		}
	}

	// Over the limit: the node fails, naming the limit and the length.
	long := strings.Repeat("x", protocol.MaxProgressTextBytes)
	prompt["7"].(map[string]any)["inputs"] = map[string]any{"text": long, "steps": 1}
	id3 := queuePrompt(t, s, prompt, "owner")
	msgs = owner.untilEnd(t, id3)
	last := terminal(msgs)
	if last.Type != protocol.TypeExecutionError || !bytes.Contains(last.Data, []byte("65536")) ||
		!bytes.Contains(last.Data, []byte(fmt.Sprint(len(long)+len(" 1/1")))) {
		t.Errorf("over the limit: %.300s, want execution_error naming 65536 and the length", last.Data)
	}
	if n := len(textFrames(msgs)); n != 0 {
		t.Errorf("over the limit: %d TEXT frames sent", n)
	}
	// The host goes on.
	prompt["7"].(map[string]any)["inputs"] = map[string]any{"text": "again", "steps": 1}
	id4 := queuePrompt(t, s, prompt, "owner")
	if got := textFrames(owner.untilEnd(t, id4)); len(got) != 1 || !bytes.Equal(got[0], comfyTextFrame("7", "again 1/1")) {
		t.Errorf("after the failure: %q", got)
	}
}

// progressTextServer serves the built-in pack and the progresstext example,
// built and dropped into the plugin folder as a user would.
func progressTextServer(t *testing.T) *server {
	t.Helper()
	opts := serveOptions(t, config.Default())
	bin := testbin.MustBuild(t, "github.com/nodecast/nodecast/examples/progresstext")
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(opts.PluginDir, "progresstext"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	return startServer(t, opts)
}

// TestGoClientProgressText: the Go client, which negotiates PART and
// resume, surfaces TEXT frames as KindProgressText events in the host's
// order, and its seq check sees no hole (TEXT frames take no seq).
func TestGoClientProgressText(t *testing.T) {
	s := progressTextServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := client.Dial(ctx, s.URL, client.Options{ClientID: "go-text"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id, err := c.QueuePrompt(ctx, map[string]any{"3": map[string]any{"class_type": "ShowProgressText", "inputs": map[string]any{"text": "go", "steps": 4}}})
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	var lastSeq uint64
	for ev := range c.Events() {
		switch {
		case ev.Kind == client.KindProgressText:
			if ev.Node != "3" || ev.Seq != 0 {
				t.Errorf("event %+v, want node 3 without seq", ev)
			}
			texts = append(texts, ev.Text)
		case ev.Kind == client.KindMessage && ev.Seq != 0:
			if lastSeq != 0 && ev.Seq != lastSeq+1 {
				t.Errorf("seq %d after %d", ev.Seq, lastSeq)
			}
			lastSeq = ev.Seq
		}
		if ev.IsPromptDone(id) {
			break
		}
	}
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"go 1/4", "go 2/4", "go 3/4", "go 4/4"}; strings.Join(texts, "|") != strings.Join(want, "|") {
		t.Errorf("texts %q, want %q", texts, want)
	}
}
