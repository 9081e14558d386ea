package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/nodecast/nodecast/host/stream"
	"github.com/nodecast/nodecast/protocol"
)

// closeGrace bounds how long a closing connection waits for the client to
// answer its close frame.
const closeGrace = 2 * time.Second

// batch is the messages of one commit, queued to a client all or nothing.
// Their bytes are shared between clients and never modified once queued.
type batch struct {
	frames []stream.Message
	size   int64
	// unnumbered frames (TEXT) have no place for a seq: resume clients get
	// them live, in order, but they take no seq and are not replayed.
	unnumbered bool
}

// client is one connection. The reader goroutine runs in ServeHTTP, the
// writer in writeLoop; the hub is the only one that closes the send path.
type client struct {
	hub    *Hub
	id     string
	remote string
	conn   *websocket.Conn
	sess   *session // set when the connection is attached

	wake       chan struct{} // cap 1: the queue has frames or the client is closing
	readerDone chan struct{}

	mu        sync.Mutex
	queue     []stream.Message
	queued    int64  // bytes in queue, including the frame being written
	gone      bool   // reader ended or write failed: nothing more is sent
	writing   bool   // the writer is writing queue[0]
	status    []byte // the status message this connection got first
	bound     int64  // queue bound; 0 = Options.QueueBytes (resume clients: Hub.resumeBound)
	written   int64  // bytes taken off the queue so far
	replayEnd int64  // written reaches this when the queued replay is written
	evicted   bool   // queue dropped; send closeCode now
	closeCode int    // close frame to send once the queue is written (0: none)
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

// pushLocked appends b without the queue bound; only for what a connection
// gets when it attaches (status, held messages), queued while c.mu and the
// hub's locks are held.
func (c *client) pushLocked(b *batch) {
	c.queue = append(c.queue, b.frames...)
	c.queued += b.size
	c.signal()
}

// enqueue queues b, or evicts the client when its queue would exceed
// QueueBytes. It never blocks on the connection.
func (c *client) enqueue(b *batch) {
	c.mu.Lock()
	limit := c.bound
	if limit == 0 {
		limit = c.hub.opts.QueueBytes
	}
	if c.gone || c.evicted || c.closeCode != 0 {
		c.mu.Unlock()
		return
	}
	// A replay being written does not count: it is no backlog of this
	// connection's, and counting it would evict a client that resumes
	// after an eviction again at once.
	replay := min(c.queued, max(0, c.replayEnd-c.written))
	if c.queued-replay+b.size <= limit {
		c.queue = append(c.queue, b.frames...)
		c.queued += b.size
		c.mu.Unlock()
		c.signal()
		return
	}
	queued := c.queued - replay + b.size
	c.evicted = true
	c.queue = nil
	c.queued = 0
	c.closeCode = CloseSlowClient
	c.closeText = fmt.Sprintf("slow client: %d bytes queued, limit %d", queued, limit)
	c.mu.Unlock()
	c.signal()

	c.hub.detachLocked(c) // callers of enqueue hold commitMu
	c.hub.evictions.Add(1)
	c.hub.log.Warn("hub: slow client evicted", "client", c.id, "remote", c.remote, "queued", queued, "limit", limit)
}

// closeNow drops what is queued and makes the writer close with code at
// once: the connection was replaced, or broke the protocol.
func (c *client) closeNow(code int, text string) {
	c.mu.Lock()
	c.evicted = true
	c.queue, c.queued = nil, 0
	c.closeCode, c.closeText = code, text
	c.mu.Unlock()
	c.signal()
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
		timeout := c.hub.writeTimeout(f.Len())
		deadline := time.Now().Add(timeout)
		closing := !c.closeBy.IsZero()
		if closing && c.closeBy.Before(deadline) {
			deadline = c.closeBy
		}
		c.writing = true
		c.mu.Unlock()

		c.conn.SetWriteDeadline(deadline)
		err := c.write(f)

		c.mu.Lock()
		c.writing = false
		if !c.evicted && len(c.queue) > 0 {
			c.queue[0] = stream.Message{}
			c.queue = c.queue[1:]
			c.queued -= int64(f.Len())
			c.written += int64(f.Len())
			if len(c.queue) == 0 {
				c.queue = nil
			}
		}
		c.mu.Unlock()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !closing {
				c.timedOut(f.Len(), timeout)
				return false
			}
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

// write writes one message: Head and Body as one WebSocket message, without
// copying the shared Body.
func (c *client) write(m stream.Message) error {
	kind := websocket.TextMessage
	if m.Binary {
		kind = websocket.BinaryMessage
	}
	if len(m.Head) == 0 {
		return c.conn.WriteMessage(kind, m.Body)
	}
	if m.Len() <= smallMessage {
		return c.conn.WriteMessage(kind, append(append(make([]byte, 0, m.Len()), m.Head...), m.Body...))
	}
	w, err := c.conn.NextWriter(kind)
	if err != nil {
		return err
	}
	if _, err := w.Write(m.Head); err != nil {
		w.Close()
		return err
	}
	if _, err := w.Write(m.Body); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// smallMessage: a message up to this size with a head is copied into one
// buffer and sent as one frame; larger ones are written head then body.
const smallMessage = 64 << 10

// timedOut drops a client whose write did not finish in time: one log line,
// one counter, and a close frame when the connection still takes one (the
// timed-out write may have left a frame half sent, so the client may see
// only the connection end).
func (c *client) timedOut(size int, timeout time.Duration) {
	c.mu.Lock()
	c.gone = true
	c.mu.Unlock()
	c.hub.writeTimeouts.Add(1)
	c.hub.log.Warn("hub: client dropped: write timed out", "client", c.id, "remote", c.remote,
		"size", size, "timeout", timeout)
	c.conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(CloseSlowClient, "write timed out after "+timeout.String()),
		time.Now().Add(min(closeGrace, c.hub.opts.WriteTimeout)))
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
// What is still queued stays for detach, which holds it for a plain
// client's reconnect.
func (c *client) fail(what string, err error) {
	c.mu.Lock()
	c.gone = true
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
		c.hub.detach(c) // takes what is still queued, for a plain client's reconnect
		c.mu.Lock()
		c.gone = true
		c.queue, c.queued = nil, 0
		c.mu.Unlock()
		close(c.readerDone)
		c.conn.Close()
	}()
	pongWait := 2 * c.hub.opts.PingInterval
	c.conn.SetReadLimit(c.hub.opts.ReadLimit)
	c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(pongWait))
	})
	first := true     // the connection's first message of any kind: the only one that may resume a waiting session
	flagsOpen := true // no JSON object read yet: ComfyUI honours feature_flags only as the first one
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
		c.mu.Lock()
		closing := c.evicted
		c.mu.Unlock()
		if closing { // closed by the hub: only the client's close answer matters now
			continue
		}
		if kind == websocket.TextMessage && !utf8.Valid(data) {
			c.hub.invalidUTF8.Add(1)
			c.hub.log.Warn("hub: client closed: text message is not valid UTF-8", "client", c.id, "remote", c.remote,
				"size", len(data))
			c.closeNow(CloseInvalidUTF8, "text message is not valid UTF-8")
			c.hub.detach(c)
			continue
		}
		wasFirst := first
		first = false
		if kind != websocket.TextMessage {
			c.hub.log.Debug("hub: ignored binary message from client", "client", c.id, "size", len(data))
			if wasFirst {
				c.hub.endWaiting(c, "first message was binary")
			}
			continue
		}
		if c.handle(data, wasFirst, flagsOpen) {
			flagsOpen = false
		}
	}
}

// handle acts on one client text message and reports whether it was a JSON
// object, which ends the time for feature_flags (server.py
// websocket_handler: first_message becomes False after any message that
// parses, and stays True after one that does not). Only feature_flags means
// anything; the rest is ignored, as ComfyUI does. first says whether it is
// the connection's first message of any kind, the only one that may resume;
// flagsOpen whether feature_flags may still be sent: a later one is answered
// with an error message and ignored.
func (c *client) handle(data []byte, first, flagsOpen bool) (object bool) {
	var m protocol.RawMessage
	var flags protocol.FeatureFlags
	err := json.Unmarshal(data, &m)
	isObject := err == nil && bytes.HasPrefix(bytes.TrimSpace(data), []byte("{"))
	switch {
	case err != nil:
		c.hub.log.Debug("hub: ignored malformed client message", "client", c.id, "err", err)
	case m.Type != protocol.TypeFeatureFlags:
		c.hub.log.Debug("hub: ignored client message", "client", c.id, "type", m.Type)
	case !flagsOpen:
		c.hub.lateFlags(c)
		return isObject
	default:
		if err := json.Unmarshal(m.Data, &flags); err != nil || flags == nil {
			// ComfyUI stores whatever data holds and answers; no flag is set.
			c.hub.log.Debug("hub: feature_flags without an object: no flag set", "client", c.id, "err", err)
			flags = protocol.FeatureFlags{}
		}
	}
	if flags == nil {
		if first {
			c.hub.endWaiting(c, "first message was not feature_flags")
		}
		return isObject
	}
	c.hub.log.Debug("hub: client feature flags", "client", c.id, "flags", flags)
	c.hub.handleFlags(c, flags, first)
	return true
}
