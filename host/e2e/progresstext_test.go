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

	"github.com/gorilla/websocket"
	"github.com/nodecast/nodecast/client"
	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/internal/testbin"
	"github.com/nodecast/nodecast/protocol"
)

// rawClient is a WebSocket client that keeps every message as it came.
type rawClient struct {
	t    *testing.T
	conn *websocket.Conn
}

type rawMessage struct {
	kind int
	data []byte
}

func (m rawMessage) jsonType() string {
	var r protocol.RawMessage
	if m.kind != websocket.TextMessage || json.Unmarshal(m.data, &r) != nil {
		return ""
	}
	return r.Type
}

func dialRaw(t *testing.T, s *server, id string, flags protocol.FeatureFlags) *rawClient {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.URL, "http")+"/ws?clientId="+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawClient{t: t, conn: conn}
	if m := c.next(); m.jsonType() != protocol.TypeStatus {
		t.Fatalf("first message %q", m.data)
	}
	if flags != nil {
		if err := conn.WriteJSON(protocol.Message{Type: protocol.TypeFeatureFlags, Data: flags}); err != nil {
			t.Fatal(err)
		}
		if m := c.next(); m.jsonType() != protocol.TypeFeatureFlags {
			t.Fatalf("answer to feature_flags %q", m.data)
		}
	}
	return c
}

func (c *rawClient) next() rawMessage {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	kind, data, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return rawMessage{kind, data}
}

// untilEnd reads until the prompt's execution_success or execution_error.
func (c *rawClient) untilEnd(promptID string) []rawMessage {
	c.t.Helper()
	var out []rawMessage
	for {
		m := c.next()
		out = append(out, m)
		if typ := m.jsonType(); (typ == protocol.TypeExecutionSuccess || typ == protocol.TypeExecutionError) &&
			bytes.Contains(m.data, []byte(promptID)) {
			return out
		}
	}
}

// textFrames picks the TEXT frames (type 3) of msgs.
func textFrames(msgs []rawMessage) [][]byte {
	var out [][]byte
	for _, m := range msgs {
		if t, _ := protocol.FrameType(m.data); m.kind == websocket.BinaryMessage && t == protocol.BinaryText {
			out = append(out, m.data)
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
	owner := dialRaw(t, s, "owner", nil)
	other := dialRaw(t, s, "other", protocol.FeatureFlags{protocol.FlagImageParts: true})

	prompt := map[string]any{"7": map[string]any{"class_type": "ShowProgressText", "inputs": map[string]any{"text": "étape", "steps": 3}}}
	id := queuePrompt(t, s, prompt, "owner")
	msgs := owner.untilEnd(id)
	if last := msgs[len(msgs)-1]; last.jsonType() != protocol.TypeExecutionSuccess {
		t.Fatalf("prompt ended with %s", last.data)
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
		if t2, _ := protocol.FrameType(m.data); m.kind == websocket.BinaryMessage && t2 == protocol.BinaryText {
			seen++
		}
		if m.jsonType() == protocol.TypeProgress {
			var p struct {
				Data protocol.ProgressData `json:"data"`
			}
			json.Unmarshal(m.data, &p)
			if p.Data.Value > seen {
				t.Errorf("progress %d/%d before its TEXT frame (%d seen)", p.Data.Value, p.Data.Max, seen)
			}
		}
	}

	// A prompt without client_id: every client, and the first TEXT frame
	// "other" ever gets is this prompt's (the owner's went to the owner only).
	prompt["7"].(map[string]any)["inputs"] = map[string]any{"text": "all", "steps": 1}
	id2 := queue(t, s, map[string]any{"prompt": prompt})
	for name, c := range map[string]*rawClient{"owner": owner, "other": other} {
		got := textFrames(c.untilEnd(id2))
		if len(got) != 1 || !bytes.Equal(got[0], comfyTextFrame("7", "all 1/1")) {
			t.Errorf("%s: TEXT frames %q, want only all 1/1", name, got)
		}
	}

	// Over the limit: the node fails, naming the limit and the length.
	long := strings.Repeat("x", protocol.MaxProgressTextBytes)
	prompt["7"].(map[string]any)["inputs"] = map[string]any{"text": long, "steps": 1}
	id3 := queuePrompt(t, s, prompt, "owner")
	msgs = owner.untilEnd(id3)
	last := msgs[len(msgs)-1]
	if last.jsonType() != protocol.TypeExecutionError || !bytes.Contains(last.data, []byte("65536")) ||
		!bytes.Contains(last.data, []byte(fmt.Sprint(len(long)+len(" 1/1")))) {
		t.Errorf("over the limit: %.300s, want execution_error naming 65536 and the length", last.data)
	}
	if n := len(textFrames(msgs)); n != 0 {
		t.Errorf("over the limit: %d TEXT frames sent", n)
	}
	// The host goes on.
	prompt["7"].(map[string]any)["inputs"] = map[string]any{"text": "again", "steps": 1}
	id4 := queuePrompt(t, s, prompt, "owner")
	if got := textFrames(owner.untilEnd(id4)); len(got) != 1 || !bytes.Equal(got[0], comfyTextFrame("7", "again 1/1")) {
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
