package host_test

import (
	"context"
	"testing"
	"time"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/protocol"
)

// TestKilledPluginIsRestarted kills the built-in pack's process between two
// calls; the next call starts a new process and succeeds.
func TestKilledPluginIsRestarted(t *testing.T) {
	h, srv := startHost(t, host.Options{})
	c, err := testclient.Dial(srv.URL, "restart", testclient.Parts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	send := func() {
		t.Helper()
		_, err := h.RunNode(ctx, host.NodeCall{
			Class: "SendImageOnWebSocket", ClientID: "restart",
			Inputs: map[string]any{"images": noiseBatch(1, 64, 2), "event": "restart.test"},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	send()
	before := h.Packs()[0]
	if before.Pid == 0 {
		t.Fatal("built-in pack has no process")
	}
	killPack(t, h)
	send()
	after := h.Packs()[0]
	if after.Pid == 0 || after.Pid == before.Pid || after.Generation != before.Generation+1 {
		t.Fatalf("after restart: %+v, before: %+v", after, before)
	}
	if err := c.WaitImages(2, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, img := range c.Images() {
		if img.Event != "restart.test" || img.MIME != "image/png" {
			t.Errorf("image event=%q mime=%q", img.Event, img.MIME)
		}
	}
	_ = protocol.DefaultMessageLimit
}
