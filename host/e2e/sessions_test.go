package e2e_test

import (
	"testing"
	"time"

	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/protocol"
)

// TestHeldMessagesAfterADrop: a plain client (no feature flags) loses its
// connection while its prompt runs and reconnects with its clientId 2 s
// later: after its status it receives what it missed, the three images
// whole, and the prompt's final executing with node null.
func TestHeldMessagesAfterADrop(t *testing.T) {
	const n = 3
	p := photoOf(t, 2048)
	s := startBuiltServer(t, config.Default())
	name := mustUpload(t, s, "photo.png", p.PNG)

	c := dialWS(t, s, "held-e2e", false, -1)
	id := queuePrompt(t, s, pipeline(name, n, "ETN_SendImageWebSocket", nil), c.ID)
	// Drop as the prompt starts: loading and repeating the photo take a
	// while, and the sender's images come after.
	if _, err := c.WaitFor(waitTimeout, func(r testclient.Received) bool { return r.IsJSON(protocol.TypeExecutionStart, id) }); err != nil {
		t.Fatal(err)
	}
	c.Drop() // no close frame: a dropped network
	time.Sleep(2 * time.Second)

	c2 := dialWS(t, s, "held-e2e", false, -1)
	log := waitPromptEnd(t, c2, id)
	checkErr(t, c2)
	if log[0].Type != protocol.TypeStatus {
		t.Fatalf("first message %v, want status", log[0])
	}
	images := 0
	for _, r := range log {
		if r.Kind == testclient.Whole {
			images++
			checkPNG(t, r.Image, p)
		}
	}
	for _, r := range c.Log() {
		if r.Kind == testclient.Whole {
			images++
		}
	}
	if images != n {
		t.Fatalf("got %d images over both connections, want %d; after the reconnect: %v", images, n, log)
	}
	if !log[len(log)-1].IsJSON(protocol.TypeExecuting, id) {
		t.Errorf("last message %v, want executing null", log[len(log)-1])
	}
	if st := s.Host.Hub().Stats(); st.HeldDelivered == 0 {
		t.Errorf("hub stats %+v: nothing was held", st)
	}
}
