package e2e_test

import (
	"testing"
	"time"

	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/protocol"
)

// waitTimeout bounds every wait for a message: generous, since CI runs
// these tests on two cores under the race detector.
const waitTimeout = 4 * time.Minute

// stockReadLimit is the largest message a stock aiohttp client accepts: a
// message of protocol.DefaultMessageLimit bytes or more fails the client.
const stockReadLimit = protocol.DefaultMessageLimit - 1

// dialWS connects a recording client to s's /ws as id, closed with the
// test. readLimit bounds each message the client accepts (-1 = any size);
// a larger message fails the client, as it would fail aiohttp.
func dialWS(t *testing.T, s *server, id string, parts bool, readLimit int64) *testclient.Client {
	t.Helper()
	kind := testclient.Plain
	if parts {
		kind = testclient.Parts
	}
	c, err := testclient.Dialer{Kind: kind, ReadLimit: readLimit, Timeout: waitTimeout}.Dial(s.URL, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// waitPromptEnd waits for executing {node:null} of promptID and returns the
// messages c received so far.
func waitPromptEnd(t *testing.T, c *testclient.Client, promptID string) []testclient.Received {
	t.Helper()
	log, err := c.WaitPromptEnd(waitTimeout, promptID)
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// waitMarker sends a marker through the hub to c and waits for it: the hub
// keeps one order for everything it sends a client, so every message queued
// for the client before the marker has then arrived.
func waitMarker(t *testing.T, s *server, c *testclient.Client) []testclient.Received {
	t.Helper()
	s.Host.Hub().SendJSON(c.ID, "e2e.marker", map[string]string{"client": c.ID})
	if _, err := c.WaitFor(waitTimeout, func(r testclient.Received) bool { return r.Kind == testclient.JSON && r.Type == "e2e.marker" }); err != nil {
		t.Fatal(err)
	}
	return c.Log()
}

// checkErr fails the test on any read or protocol error of c so far, and on
// a torn image.
func checkErr(t *testing.T, c *testclient.Client) {
	t.Helper()
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
}
