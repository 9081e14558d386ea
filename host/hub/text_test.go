package hub

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/internal/wait"
	"github.com/nodecast/nodecast/protocol"
)

var _ executor.TextBroadcaster = (*Hub)(nil)

// textFrame is the frame ComfyUI's server.py send_progress_text sends:
// struct.pack(">I", 3) + struct.pack(">I", len(node_id)) + node_id + text.
func textFrame(node, text string) []byte {
	b := []byte{0, 0, 0, 3, 0, 0, 0, byte(len(node))}
	return append(append(b, node...), text...)
}

func (c *testClient) expectText(node, text string) {
	c.t.Helper()
	kind, data := c.read()
	if want := textFrame(node, text); kind != websocket.BinaryMessage || !bytes.Equal(data, want) {
		c.t.Fatalf("client %s: got kind %d % x, want the TEXT frame % x", c.sid, kind, data, want)
	}
}

// TestProgressText: TEXT frames reach the addressed client byte for byte,
// whatever flags it sent, every client for "" (a prompt without client_id),
// a plain client that was away on its return, and a resume client live in
// order between its numbered messages, whose seq goes on without a hole.
func TestProgressText(t *testing.T) {
	h, srv := startHub(t, Options{})
	plain := connect(t, srv, dialOpts{query: "clientId=plain"})
	parts := connect(t, srv, dialOpts{query: "clientId=parts", flags: protocol.FeatureFlags{protocol.FlagImageParts: true, protocol.FlagPreviewMetadata: true}})
	r := dialResume(t, wsURL(srv, ""), "res", nil)

	h.SendProgressText("plain", "12", "step 1/3")
	plain.expectText("12", "step 1/3")
	h.SendProgressText("", "5", "to all ✓")
	plain.expectText("5", "to all ✓")
	parts.expectText("5", "to all ✓")
	r.testClient.expectText("5", "to all ✓")

	h.SendJSON("res", "marker", "before")
	h.SendProgressText("res", "9", "between")
	h.SendJSON("res", "marker", "after")
	r.expect("before")
	r.testClient.expectText("9", "between")
	r.expect("after") // seq is before's + 1: the TEXT frame took none

	// Over the limit or not UTF-8: nothing is sent.
	h.SendProgressText("plain", "12", strings.Repeat("x", protocol.MaxProgressTextBytes+1))
	h.SendProgressText("plain", "12", "\xff")
	h.SendJSON("plain", "marker", "next")
	plain.expectMarker("next")

	// Held for a plain client that is away, delivered on its return.
	cut(plain)
	wait.For(t, safetyTimeout, "the drop", func() bool { return h.Stats().Detached == 1 })
	h.SendProgressText("plain", "3", "while away")
	back := connect(t, srv, dialOpts{query: "clientId=plain"})
	back.expectText("3", "while away")
}

// TestProgressTextSlowClient: a node that floods progress text at a client
// that does not read fills that client's bounded queue, and the client is
// evicted with 1008 while another client keeps getting its frames.
func TestProgressTextSlowClient(t *testing.T) {
	h, srv := startHub(t, Options{QueueBytes: 1 << 20})
	slow := connect(t, srv, dialOpts{query: "clientId=slow"})
	fast := connect(t, srv, dialOpts{query: "clientId=fast"})
	text := strings.Repeat("t", protocol.MaxProgressTextBytes)
	for i := 0; h.Stats().Evictions == 0; i++ {
		if i == 100000 {
			t.Fatal("no eviction after 100000 frames (6.5 GB)")
		}
		h.SendProgressText("slow", "1", text)
	}
	h.SendProgressText("fast", "2", "still served")
	fast.expectText("2", "still served")
	if ce := readClose(t, slow.conn); ce == nil || ce.Code != CloseSlowClient {
		t.Errorf("slow client closed with %v, want 1008", ce)
	}
}
