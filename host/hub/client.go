package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nodecast/nodecast/protocol"
)

// closeGrace bounds how long a closing connection waits for the client to
// answer its close frame.
const closeGrace = 2 * time.Second

// frame is one WebSocket message. Its data is shared between clients and
// never modified after it is queued.
type frame struct {
	kind int // websocket.TextMessage or websocket.BinaryMessage
	data []byte
}

// batch is the frames of one commit, queued to a client all or nothing.
type batch struct {
	frames []frame
	size   int64
}

// client is one connection. The reader goroutine runs in ServeHTTP, the
// writer in writeLoop; the hub is the only one that closes the send path.
type client struct {
	hub    *Hub
	id     string
	remote string
	conn   *websocket.Conn // nil while the id is reserved during the upgrade

	wake       chan struct{} // cap 1: the queue has frames or the client is closing
	readerDone chan struct{}

	mu        sync.Mutex
	flags     protocol.FeatureFlags
	parts     bool // flags has supports_image_parts: true
	preview   bool // flags has supports_preview_metadata: true (type 4 instead of type 1)
	queue     []frame
	queued    int64 // bytes in queue, including the frame being written
	gone      bool  // reader ended or write failed: nothing more is sent
	evicted   bool  // queue dropped; send closeCode now
	closeCode int   // close frame to send once the queue is written (0: none)
	closeText string
	closeBy   time.Time // deadline for writes after Close
}

func newClient(h *Hub, id, remote string) *client {
	return &client{hub: h, id: id, remote: remote, wake: make(chan struct{}, 1), readerDone: make(chan struct{})}
}

func (c *client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// pushLocked appends b without the queue bound; only for a connection's first
// message, queued while c.mu and the hub's lock are held.
func (c *client) pushLocked(b *batch) {
	c.queue = append(c.queue, b.frames...)
	c.queued += b.size
	c.signal()
}

// enqueue queues b, or evicts the client when its queue would exceed
// QueueBytes. It never blocks on the connection.
func (c *client) enqueue(b *batch) {
	limit := c.hub.opts.QueueBytes
	c.mu.Lock()
	if c.gone || c.evicted || c.closeCode != 0 {
		c.mu.Unlock()
		return
	}
	if c.queued+b.size <= limit {
		c.queue = append(c.queue, b.frames...)
		c.queued += b.size
		c.mu.Unlock()
		c.signal()
		return
	}
	queued := c.queued + b.size
	c.evicted = true
	c.queue = nil
	c.queued = 0
	c.closeCode = CloseSlowClient
	c.closeText = fmt.Sprintf("slow client: %d bytes queued, limit %d", queued, limit)
	c.mu.Unlock()
	c.signal()

	c.hub.forget(c)
	c.hub.evictions.Add(1)
	c.hub.log.Warn("hub: slow client evicted", "client", c.id, "remote", c.remote, "queued", queued, "limit", limit)
}

// shutdown makes the writer flush the queue by deadline, then close with code.
func (c *client) shutdown(code int, text string, deadline time.Time) {
	c.mu.Lock()
	if c.closeCode == 0 {
		c.closeCode, c.closeText, c.closeBy = code, text, deadline
	}
	c.mu.Unlock()
	c.signal()
}

// writeLoop is the only goroutine that writes messages to c.conn.
func (c *client) writeLoop() {
	defer c.hub.writers.Done()
	ping := time.NewTicker(c.hub.opts.PingInterval)
	defer ping.Stop()
	for c.drain(ping.C) {
		select {
		case <-c.wake:
		case <-c.readerDone: // the reader marked the client gone: drain stops
		case <-ping.C:
			c.ping()
		}
	}
	c.finish()
}

// drain writes queued frames in order, pinging between them when a ping is
// due, so that a long stream does not starve the client's pong deadline. It
// returns false when the writer must stop: the client is gone, evicted, or
// closing with its queue written.
func (c *client) drain(ping <-chan time.Time) bool {
	for {
		c.mu.Lock()
		if c.gone || c.evicted {
			c.mu.Unlock()
			return false
		}
		if len(c.queue) == 0 {
			closing := c.closeCode != 0
			c.mu.Unlock()
			return !closing
		}
		f := c.queue[0]
		deadline := time.Now().Add(c.hub.writeTimeout(len(f.data)))
		if !c.closeBy.IsZero() && c.closeBy.Before(deadline) {
			deadline = c.closeBy
		}
		c.mu.Unlock()

		c.conn.SetWriteDeadline(deadline)
		err := c.conn.WriteMessage(f.kind, f.data)

		c.mu.Lock()
		if !c.evicted && len(c.queue) > 0 {
			c.queue[0] = frame{}
			c.queue = c.queue[1:]
			c.queued -= int64(len(f.data))
			if len(c.queue) == 0 {
				c.queue = nil
			}
		}
		c.mu.Unlock()
		if err != nil {
			c.fail("write", err)
			return false
		}
		select {
		case <-ping:
			if !c.ping() {
				return false
			}
		default:
		}
	}
}

// ping sends a ping; the client's pong extends the read deadline.
func (c *client) ping() bool {
	err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.hub.opts.WriteTimeout))
	if err != nil {
		c.fail("ping", err)
		return false
	}
	return true
}

// fail marks the connection unusable after a failed write.
func (c *client) fail(what string, err error) {
	c.mu.Lock()
	c.gone = true
	c.queue, c.queued = nil, 0
	c.mu.Unlock()
	c.hub.log.Debug("hub: "+what+" failed", "client", c.id, "err", err)
}

// finish sends the close frame, if any, waits for the client's answer, and
// closes the connection.
func (c *client) finish() {
	c.mu.Lock()
	code, text, gone := c.closeCode, c.closeText, c.gone
	c.mu.Unlock()
	if code != 0 && !gone {
		err := c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text),
			time.Now().Add(c.hub.opts.WriteTimeout))
		if err == nil {
			// The reader returns when the client answers the close frame;
			// closing before that could reset the connection under unread data.
			t := time.NewTimer(min(closeGrace, c.hub.opts.WriteTimeout))
			select {
			case <-c.readerDone:
			case <-t.C:
			}
			t.Stop()
		}
	}
	c.conn.Close()
}

// readLoop reads client messages until the connection ends, then frees the id.
func (c *client) readLoop() {
	defer func() {
		c.mu.Lock()
		c.gone = true
		c.queue, c.queued = nil, 0
		c.mu.Unlock()
		c.hub.forget(c)
		close(c.readerDone)
		c.conn.Close()
	}()
	pongWait := 2 * c.hub.opts.PingInterval
	c.conn.SetReadLimit(c.hub.opts.ReadLimit)
	c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(pongWait))
	})
	for {
		kind, data, err := c.conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.hub.log.Debug("hub: client closed", "client", c.id, "code", ce.Code, "text", ce.Text)
			} else {
				c.hub.log.Debug("hub: read ended", "client", c.id, "err", err)
			}
			return
		}
		if kind != websocket.TextMessage {
			c.hub.log.Debug("hub: ignored binary message from client", "client", c.id, "size", len(data))
			continue
		}
		c.handle(data)
	}
}

// handle acts on one client text message. Only feature_flags means anything;
// the rest is ignored, as ComfyUI does.
func (c *client) handle(data []byte) {
	var m protocol.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		c.hub.log.Debug("hub: ignored malformed client message", "client", c.id, "err", err)
		return
	}
	if m.Type != protocol.TypeFeatureFlags {
		c.hub.log.Debug("hub: ignored client message", "client", c.id, "type", m.Type)
		return
	}
	var flags protocol.FeatureFlags
	if err := json.Unmarshal(m.Data, &flags); err != nil || flags == nil {
		c.hub.log.Debug("hub: ignored feature_flags without an object", "client", c.id, "err", err)
		return
	}
	c.mu.Lock()
	c.flags = flags
	c.parts = flags.Bool(protocol.FlagImageParts)
	c.preview = flags.Bool(protocol.FlagPreviewMetadata)
	c.mu.Unlock()
	c.hub.log.Debug("hub: client feature flags", "client", c.id, "flags", flags)
	msg := c.hub.flagsMsg
	c.enqueue(&batch{frames: []frame{{kind: websocket.TextMessage, data: msg}}, size: int64(len(msg))})
}
