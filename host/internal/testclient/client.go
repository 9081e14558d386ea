package testclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nodecast/nodecast/protocol"
)

// Kind is the kind of client to connect as.
type Kind int

const (
	// Parts negotiates supports_image_parts and reads PART frames.
	Parts Kind = iota
	// Plain sends no feature flags: base64 JSON parts or type 1 frames.
	Plain
)

// Dialer connects clients. Its zero value connects a Parts client that reads
// messages of any size.
type Dialer struct {
	Kind   Kind
	Header http.Header // sent with the handshake (a token, an Origin)
	// ReadLimit is the largest message the client accepts; a larger one
	// fails it, as it fails aiohttp (whose limit is
	// protocol.DefaultMessageLimit - 1). 0 = any size.
	ReadLimit int64
	// Timeout bounds the handshake and the wait for the server's first
	// message. 0 = 30 s.
	Timeout time.Duration
	// Flags, when set, are the feature flags the client sends instead of
	// its Kind's (which still says how it reads images).
	Flags protocol.FeatureFlags
}

// Dial connects to serverURL's /ws as clientID, as a client of kind, with
// header sent in the handshake. See Dialer.Dial.
func Dial(serverURL, clientID string, kind Kind, header http.Header) (*Client, error) {
	return Dialer{Kind: kind, Header: header}.Dial(serverURL, clientID)
}

// Dial connects to serverURL's /ws as clientID. A Parts client sends its
// feature flags and returns once the server answered them (parts are on from
// there); a Plain client returns once the server's first status arrived.
func (d Dialer) Dial(serverURL, clientID string) (*Client, error) {
	timeout := d.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	u := "ws" + strings.TrimPrefix(serverURL, "http") + "/ws?clientId=" + clientID
	conn, _, err := (&websocket.Dialer{HandshakeTimeout: timeout}).Dial(u, d.Header)
	if err != nil {
		return nil, fmt.Errorf("client %s: dial %s: %w", clientID, u, err)
	}
	conn.SetReadLimit(d.ReadLimit)
	c := &Client{ID: clientID, conn: conn, reasm: protocol.NewReassembler(protocol.ReassemblerOptions{}), consumed: map[int]bool{}}
	c.cond = sync.NewCond(&c.mu)
	first := protocol.TypeStatus
	flags := d.Flags
	if flags == nil && d.Kind == Parts {
		flags = protocol.FeatureFlags{protocol.FlagImageParts: true}
	}
	if flags != nil {
		first = protocol.TypeFeatureFlags // the server's answer
		if err := conn.WriteJSON(protocol.Message{Type: protocol.TypeFeatureFlags, Data: flags}); err != nil {
			conn.Close()
			return nil, fmt.Errorf("client %s: send feature flags: %w", clientID, err)
		}
	}
	go c.read()
	if _, err := c.WaitMessage(first, timeout); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Client is a connected test client. Its reader records every message until
// the connection ends.
type Client struct {
	ID   string
	conn *websocket.Conn

	mu       sync.Mutex
	cond     *sync.Cond // broadcast on every message, error and close
	log      []Received
	consumed map[int]bool // log indexes taken by WaitMessage and WaitMessageWhere
	images   int          // messages that completed an image, or were one
	err      error        // the first read or protocol error
	closed   bool
	reasm    *protocol.Reassembler
}

func (c *Client) read() {
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
			c.err = fmt.Errorf("client %s: message %d (%v): %w", c.ID, len(c.log), r, perr)
		}
		c.log = append(c.log, r)
		if r.Done != nil || r.Kind == Whole || r.Kind == Preview {
			c.images++
		}
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

// parse records one message; base64 JSON parts and PART frames go through
// the client's Reassembler.
func (c *Client) parse(typ int, msg []byte) (Received, error) {
	r := Received{Size: len(msg)}
	if typ == websocket.TextMessage {
		var m protocol.RawMessage
		if err := json.Unmarshal(msg, &m); err != nil {
			return r, fmt.Errorf("text message is not JSON: %w", err)
		}
		r.Type, r.Data = m.Type, m.Data
		if strings.Contains(string(m.Data), `"part_b64"`) {
			var err error
			r.Done, err = c.reasm.AddB64(m.Type, m.Data)
			return r, err
		}
		return r, nil
	}
	ft, err := protocol.FrameType(msg)
	if err != nil {
		return r, err
	}
	switch ft {
	case protocol.BinaryPreviewImage:
		r.Kind = Whole
		var data []byte
		r.Format, data, err = protocol.ParseImageFrame(msg)
		r.Image = append([]byte(nil), data...)
		return r, err
	case protocol.BinaryPart:
		r.Kind = PART
		if r.Part, _, err = protocol.ParsePartFrame(msg); err != nil {
			return r, err
		}
		r.Done, err = c.reasm.AddFrame(msg)
		return r, err
	case protocol.BinaryPreviewImageWithMetadata:
		r.Kind = Preview
		var data []byte
		r.Meta, data, err = protocol.ParsePreviewFrame(msg)
		r.Image = append([]byte(nil), data...)
		return r, err
	case protocol.BinaryText:
		r.Kind = Text
		r.Frame = append([]byte(nil), msg...)
		r.Node, r.Text, err = protocol.ParseTextFrame(msg)
		return r, err
	}
	return r, fmt.Errorf("unexpected binary message type %#x", ft)
}

// wait blocks until done, called with c.mu held after every message,
// reports true; or the connection fails or ends; or timeout passes.
func (c *Client) wait(timeout time.Duration, what string, done func() bool) error {
	t := time.AfterFunc(timeout, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer t.Stop()
	deadline := time.Now().Add(timeout)
	c.mu.Lock()
	defer c.mu.Unlock()
	for !done() {
		switch {
		case c.err != nil:
			return c.err
		case c.closed:
			return fmt.Errorf("client %s: connection closed while waiting for %s", c.ID, what)
		case time.Now().After(deadline):
			return fmt.Errorf("client %s: no %s within %s; last messages: %v", c.ID, what, timeout, c.log[max(0, len(c.log)-8):])
		}
		c.cond.Wait()
	}
	return nil
}

// WaitFor waits for a message that satisfies ok, looking at every message
// received since the client connected, and returns the first.
func (c *Client) WaitFor(timeout time.Duration, ok func(Received) bool) (Received, error) {
	var found Received
	i := 0
	err := c.wait(timeout, "matching message", func() bool {
		for ; i < len(c.log); i++ {
			if ok(c.log[i]) {
				found = c.log[i]
				return true
			}
		}
		return false
	})
	return found, err
}

// WaitPromptEnd waits for ComfyUI's end of promptID (executing with node
// null) and returns every message received so far.
func (c *Client) WaitPromptEnd(timeout time.Duration, promptID string) ([]Received, error) {
	if _, err := c.WaitFor(timeout, func(r Received) bool { return r.IsPromptEnd(promptID) }); err != nil {
		return nil, err
	}
	return c.Log(), nil
}

// WaitImages waits until n images (reassembled or whole) have arrived.
func (c *Client) WaitImages(n int, timeout time.Duration) error {
	return c.wait(timeout, fmt.Sprintf("%d images", n), func() bool { return c.images >= n })
}

// WaitMessage waits for the first JSON message of type typ not yet taken by
// an earlier WaitMessage or WaitMessageWhere, takes it and returns it.
func (c *Client) WaitMessage(typ string, timeout time.Duration) (protocol.RawMessage, error) {
	return c.WaitMessageWhere(typ, timeout, func(json.RawMessage) bool { return true })
}

// WaitMessageWhere is WaitMessage for a message whose data satisfies ok.
func (c *Client) WaitMessageWhere(typ string, timeout time.Duration, ok func(json.RawMessage) bool) (protocol.RawMessage, error) {
	var found protocol.RawMessage
	err := c.wait(timeout, typ+" message", func() bool {
		for i, r := range c.log {
			if r.Kind == JSON && r.Type == typ && !c.consumed[i] && ok(r.Data) {
				c.consumed[i] = true
				found = protocol.RawMessage{Type: r.Type, Data: r.Data}
				return true
			}
		}
		return false
	})
	return found, err
}

// Log returns every message received so far, in order.
func (c *Client) Log() []Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Received(nil), c.log...)
}

// Images returns the images reassembled from parts (PART frames or base64
// JSON parts) so far.
func (c *Client) Images() []*protocol.Image {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*protocol.Image
	for _, r := range c.log {
		if r.Done != nil {
			out = append(out, r.Done)
		}
	}
	return out
}

// Whole returns the image bytes of the type 1 frames so far.
func (c *Client) Whole() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out [][]byte
	for _, r := range c.log {
		if r.Kind == Whole {
			out = append(out, r.Image)
		}
	}
	return out
}

// Messages returns the JSON messages received and not taken by a
// WaitMessage or WaitMessageWhere.
func (c *Client) Messages() []protocol.RawMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []protocol.RawMessage
	for i, r := range c.log {
		if r.Kind == JSON && !c.consumed[i] {
			out = append(out, protocol.RawMessage{Type: r.Type, Data: r.Data})
		}
	}
	return out
}

// MaxMessage is the size of the largest message received.
func (c *Client) MaxMessage() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.log {
		n = max(n, r.Size)
	}
	return n
}

// Err is the first read or protocol error seen (a message that did not
// parse, or a part the Reassembler refused); nil when there was none, or the
// server closed the connection normally.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if isNormalClose(c.err) {
		return nil
	}
	return c.err
}

// Check fails on any read or protocol error so far, a normal close by the
// server included, and on an image with parts received but not all of them:
// a torn image.
func (c *Client) Check() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if p := c.reasm.Pending(); len(p) > 0 {
		return fmt.Errorf("client %s: %d images incomplete: %v", c.ID, len(p), p[0].Err())
	}
	return nil
}

func isNormalClose(err error) bool {
	var ce *websocket.CloseError
	return err == nil || errors.As(err, &ce) && (ce.Code == websocket.CloseNormalClosure || ce.Code == websocket.CloseGoingAway)
}

// Close closes the connection.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.conn.Close()
}

// Drop closes the network connection without a close frame, as a dropped
// network does; the client records no error for it.
func (c *Client) Drop() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.conn.NetConn().Close()
}
