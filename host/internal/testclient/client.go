package testclient

import (
	"encoding/json"
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

// Client is a connected test client. Its reader runs until Close.
type Client struct {
	ID   string
	Conn *websocket.Conn

	mu       sync.Mutex
	cond     *sync.Cond
	images   []*protocol.Image // completed, from PART or base64 parts
	whole    [][]byte          // type 1 frames' image bytes
	messages []protocol.RawMessage
	maxSize  int
	err      error
	closed   bool
	r        *protocol.Reassembler
}

// Dial connects to serverURL's /ws as clientID. A Parts client sends its
// feature flags and waits for the server's answer.
func Dial(serverURL, clientID string, kind Kind, header http.Header) (*Client, error) {
	u := "ws" + strings.TrimPrefix(serverURL, "http") + "/ws?clientId=" + clientID
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, _, err := d.Dial(u, header)
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(-1) // the whole-frame client reads type 1 frames of any size
	c := &Client{ID: clientID, Conn: conn, r: protocol.NewReassembler(protocol.ReassemblerOptions{})}
	c.cond = sync.NewCond(&c.mu)
	if kind == Parts {
		if err := conn.WriteJSON(protocol.Message{Type: protocol.TypeFeatureFlags, Data: protocol.FeatureFlags{protocol.FlagImageParts: true}}); err != nil {
			conn.Close()
			return nil, err
		}
	}
	go c.read()
	if kind == Parts {
		if _, err := c.WaitMessage(protocol.TypeFeatureFlags, 10*time.Second); err != nil {
			conn.Close()
			return nil, err
		}
	} else if _, err := c.WaitMessage(protocol.TypeStatus, 10*time.Second); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *Client) read() {
	for {
		typ, msg, err := c.Conn.ReadMessage()
		c.mu.Lock()
		if err != nil {
			if c.err == nil && !c.closed {
				c.err = err
			}
			c.closed = true
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		if len(msg) > c.maxSize {
			c.maxSize = len(msg)
		}
		if perr := c.handle(typ, msg); perr != nil && c.err == nil {
			c.err = perr
		}
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

func (c *Client) handle(typ int, msg []byte) error {
	if typ == websocket.BinaryMessage {
		ft, err := protocol.FrameType(msg)
		if err != nil {
			return err
		}
		switch ft {
		case protocol.BinaryPart:
			img, err := c.r.AddFrame(msg)
			if img != nil {
				c.images = append(c.images, img)
			}
			return err
		case protocol.BinaryPreviewImage:
			_, data, err := protocol.ParseImageFrame(msg)
			if err == nil {
				c.whole = append(c.whole, append([]byte(nil), data...))
			}
			return err
		}
		return fmt.Errorf("unexpected binary type %#x", ft)
	}
	var m protocol.RawMessage
	if err := json.Unmarshal(msg, &m); err != nil {
		return err
	}
	c.messages = append(c.messages, m)
	if strings.Contains(string(m.Data), `"part_b64"`) {
		img, err := c.r.AddB64(m.Type, m.Data)
		if img != nil {
			c.images = append(c.images, img)
		}
		return err
	}
	return nil
}

// wait blocks until done reports true, the connection fails, or timeout.
func (c *Client) wait(timeout time.Duration, done func() bool) error {
	t := time.AfterFunc(timeout, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer t.Stop()
	deadline := time.Now().Add(timeout)
	c.mu.Lock()
	defer c.mu.Unlock()
	for !done() {
		if c.err != nil {
			return c.err
		}
		if c.closed {
			return fmt.Errorf("client %s: connection closed", c.ID)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("client %s: timed out after %s", c.ID, timeout)
		}
		c.cond.Wait()
	}
	return nil
}

// WaitImages waits until n images (reassembled or whole) have arrived.
func (c *Client) WaitImages(n int, timeout time.Duration) error {
	return c.wait(timeout, func() bool { return len(c.images)+len(c.whole) >= n })
}

// WaitMessage waits for the first JSON message of type typ not yet consumed
// by an earlier WaitMessage, and returns it.
func (c *Client) WaitMessage(typ string, timeout time.Duration) (protocol.RawMessage, error) {
	var found protocol.RawMessage
	err := c.wait(timeout, func() bool {
		for i, m := range c.messages {
			if m.Type == typ {
				found = m
				c.messages = append(c.messages[:i:i], c.messages[i+1:]...)
				return true
			}
		}
		return false
	})
	return found, err
}

// WaitMessageWhere waits for a JSON message of type typ whose data satisfies ok.
func (c *Client) WaitMessageWhere(typ string, timeout time.Duration, ok func(json.RawMessage) bool) (protocol.RawMessage, error) {
	var found protocol.RawMessage
	err := c.wait(timeout, func() bool {
		for i, m := range c.messages {
			if m.Type == typ && ok(m.Data) {
				found = m
				c.messages = append(c.messages[:i:i], c.messages[i+1:]...)
				return true
			}
		}
		return false
	})
	return found, err
}

// Images returns the images reassembled from parts so far.
func (c *Client) Images() []*protocol.Image {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*protocol.Image(nil), c.images...)
}

// Whole returns the image bytes of the type 1 frames so far.
func (c *Client) Whole() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.whole...)
}

// Messages returns the JSON messages received and not consumed by a Wait.
func (c *Client) Messages() []protocol.RawMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]protocol.RawMessage(nil), c.messages...)
}

// MaxMessage is the size of the largest message received.
func (c *Client) MaxMessage() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxSize
}

// Err is the first read or protocol error seen.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed && !isNormalClose(c.err) {
		return c.err
	}
	return nil
}

func isNormalClose(err error) bool {
	return err == nil || websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway)
}

// Close closes the connection.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.Conn.Close()
}
