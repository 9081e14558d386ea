package e2e_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nodecast/nodecast/protocol"
)

// waitTimeout bounds every wait for a message: generous, since CI runs
// these tests on two cores under the race detector.
const waitTimeout = 4 * time.Minute

// stockReadLimit is the largest message a stock aiohttp client accepts: a
// message of protocol.DefaultMessageLimit bytes or more fails the client.
const stockReadLimit = protocol.DefaultMessageLimit - 1

// msgKind is the wire shape of one received WebSocket message.
type msgKind int

const (
	kindJSON  msgKind = iota // a JSON text message
	kindWhole                // a type 1 binary frame: one whole image
	kindPART                 // a PART binary frame
)

// received is one WebSocket message as a client received it.
type received struct {
	Kind   msgKind
	Size   int             // bytes of the message
	Type   string          // kindJSON: the message type
	Data   json.RawMessage // kindJSON: the message data
	Format uint32          // kindWhole: the image format code
	Image  []byte          // kindWhole: the image bytes
	Part   protocol.PartHeader
	Done   *protocol.Image // kindPART: the image this frame completed, or nil
}

// field decodes one field of a JSON message's data.
func (r received) field(name string) any {
	var m map[string]any
	if json.Unmarshal(r.Data, &m) != nil {
		return nil
	}
	return m[name]
}

func (r received) String() string {
	switch r.Kind {
	case kindWhole:
		return fmt.Sprintf("type1(format %d, %d bytes)", r.Format, len(r.Image))
	case kindPART:
		return fmt.Sprintf("PART(%s img %d part %d/%d)", r.Part.Event, r.Part.Index, r.Part.Part, r.Part.Parts)
	}
	d := string(r.Data)
	if len(d) > 160 {
		d = d[:160] + "..."
	}
	return r.Type + " " + d
}

// wsClient is a ComfyUI WebSocket client that records every message in the
// order it arrived. A parts client negotiates supports_image_parts first.
type wsClient struct {
	ID   string
	conn *websocket.Conn

	mu     sync.Mutex
	cond   *sync.Cond
	log    []received
	err    error // first read or protocol error
	closed bool  // Close was called
	reasm  *protocol.Reassembler
}

// dialWS connects to s's /ws as id. readLimit bounds each message the client
// accepts (-1 = any size); a larger message fails the client, as it would
// fail aiohttp.
func dialWS(t *testing.T, s *server, id string, parts bool, readLimit int64) *wsClient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(s.URL, "http") + "/ws?clientId=" + id
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second}
	conn, _, err := d.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	conn.SetReadLimit(readLimit)
	c := &wsClient{ID: id, conn: conn, reasm: protocol.NewReassembler(protocol.ReassemblerOptions{})}
	c.cond = sync.NewCond(&c.mu)
	t.Cleanup(c.Close)
	if parts {
		flags := protocol.Message{Type: protocol.TypeFeatureFlags, Data: protocol.FeatureFlags{protocol.FlagImageParts: true}}
		if err := conn.WriteJSON(flags); err != nil {
			t.Fatalf("client %s: send feature flags: %v", id, err)
		}
	}
	go c.read()
	first := protocol.TypeStatus
	if parts {
		first = protocol.TypeFeatureFlags // the server's answer: parts are on from here
	}
	if _, err := c.waitFor(func(r received) bool { return r.Kind == kindJSON && r.Type == first }); err != nil {
		t.Fatalf("client %s: %v", id, err)
	}
	return c
}

func (c *wsClient) read() {
	for {
		typ, msg, err := c.conn.ReadMessage()
		c.mu.Lock()
		if err != nil {
			if c.err == nil && !c.closed {
				c.err = fmt.Errorf("client %s: read: %w", c.ID, err)
			}
			c.closed = true
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		r, perr := c.parse(typ, msg)
		if perr != nil && c.err == nil {
			c.err = fmt.Errorf("client %s: message %d: %w", c.ID, len(c.log), perr)
		}
		c.log = append(c.log, r)
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

func (c *wsClient) parse(typ int, msg []byte) (received, error) {
	r := received{Size: len(msg)}
	if typ == websocket.TextMessage {
		var m protocol.RawMessage
		if err := json.Unmarshal(msg, &m); err != nil {
			return r, fmt.Errorf("text message is not JSON: %w", err)
		}
		r.Type, r.Data = m.Type, m.Data
		return r, nil
	}
	ft, err := protocol.FrameType(msg)
	if err != nil {
		return r, err
	}
	switch ft {
	case protocol.BinaryPreviewImage:
		r.Kind = kindWhole
		r.Format, r.Image, err = protocol.ParseImageFrame(msg)
		return r, err
	case protocol.BinaryPart:
		r.Kind = kindPART
		if r.Part, _, err = protocol.ParsePartFrame(msg); err != nil {
			return r, err
		}
		r.Done, err = c.reasm.AddFrame(msg)
		return r, err
	}
	return r, fmt.Errorf("unexpected binary message type %#x", ft)
}

// waitFor waits for the first message that satisfies ok and returns its
// index in the log.
func (c *wsClient) waitFor(ok func(received) bool) (int, error) {
	timer := time.AfterFunc(waitTimeout, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer timer.Stop()
	deadline := time.Now().Add(waitTimeout)
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; ; {
		for ; i < len(c.log); i++ {
			if ok(c.log[i]) {
				return i, nil
			}
		}
		switch {
		case c.err != nil:
			return -1, c.err
		case c.closed:
			return -1, fmt.Errorf("client %s: connection closed", c.ID)
		case time.Now().After(deadline):
			return -1, fmt.Errorf("client %s: nothing matched within %s; last messages: %v", c.ID, waitTimeout, tail(c.log, 8))
		}
		c.cond.Wait()
	}
}

func tail(log []received, n int) []received {
	if len(log) > n {
		return log[len(log)-n:]
	}
	return log
}

// isJSON reports whether r is a JSON message of type typ for promptID.
func isJSON(r received, typ, promptID string) bool {
	return r.Kind == kindJSON && r.Type == typ && r.field("prompt_id") == promptID
}

// isPromptEnd reports whether r is ComfyUI's end of prompt promptID:
// executing with node null.
func isPromptEnd(r received, promptID string) bool {
	if !isJSON(r, protocol.TypeExecuting, promptID) {
		return false
	}
	var d map[string]any
	_ = json.Unmarshal(r.Data, &d)
	node, has := d["node"]
	return has && node == nil
}

// waitPromptEnd waits for executing {node:null} of promptID and returns the
// messages received so far.
func (c *wsClient) waitPromptEnd(t *testing.T, promptID string) []received {
	t.Helper()
	if _, err := c.waitFor(func(r received) bool { return isPromptEnd(r, promptID) }); err != nil {
		t.Fatal(err)
	}
	return c.messages()
}

// waitMarker sends a marker through the hub to this client and waits for
// it: the hub keeps one order for everything it sends a client, so every
// message queued for the client before the marker has then arrived.
func (c *wsClient) waitMarker(t *testing.T, s *server) []received {
	t.Helper()
	s.Host.Hub().SendJSON(c.ID, "e2e.marker", map[string]string{"client": c.ID})
	if _, err := c.waitFor(func(r received) bool { return r.Kind == kindJSON && r.Type == "e2e.marker" }); err != nil {
		t.Fatal(err)
	}
	return c.messages()
}

// messages returns a copy of the log.
func (c *wsClient) messages() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.log...)
}

// checkErr fails the test on any read or protocol error so far.
func (c *wsClient) checkErr(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		t.Fatal(c.err)
	}
	if p := c.reasm.Pending(); len(p) > 0 {
		t.Fatalf("client %s: %d images incomplete: %v", c.ID, len(p), p[0].Err())
	}
}

// maxMessage is the size of the largest message received.
func (c *wsClient) maxMessage() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.log {
		n = max(n, r.Size)
	}
	return n
}

// Close closes the connection.
func (c *wsClient) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.conn.Close()
}
