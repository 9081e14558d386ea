package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nodecast/nodecast/protocol"
)

// Options configures a Client. The zero value works.
type Options struct {
	// ClientID is the clientId the host routes this client's prompts by;
	// "" = a new random one.
	ClientID string
	// Token is sent as "Authorization: Bearer" when the host requires one.
	Token string
	// Backoff paces reconnects after a dropped connection.
	Backoff Backoff
	// MaxAttempts bounds the reconnects in a row that fail before the
	// client gives up (Err then says why); 0 = never give up.
	MaxAttempts int
	// Reassembler bounds the memory of images being reassembled.
	Reassembler protocol.ReassemblerOptions
	// ReadLimit is the largest message accepted; 0 = 64 MiB (a type 1 whole
	// image may exceed the host's message limit).
	ReadLimit int64
	// EventBuffer is the capacity of the Events channel; 0 = 64. A caller
	// that stops reading stops the client reading its socket, and the host
	// then drops the connection: the client resumes when read again.
	EventBuffer int
	// HTTPClient is used for QueuePrompt and Upload; nil = a client with a
	// 5-minute timeout.
	HTTPClient *http.Client
	// Dialer dials the WebSocket; nil = websocket.DefaultDialer's settings.
	Dialer *websocket.Dialer
	// Logger receives reconnects and resume outcomes; nil = discard.
	Logger *slog.Logger
}

// Kind says what an Event carries.
type Kind int

const (
	// KindMessage is a ComfyUI JSON message: Type and Data.
	KindMessage Kind = iota
	// KindImage is a whole image, its size and sha256 checked: Image.
	KindImage
	// KindResumeLost: after a reconnect the host could not resume (Reason
	// says why); messages were missed, read /history for them. Images that
	// were incomplete at the drop are listed in Dropped.
	KindResumeLost
	// KindProgressText is a node's progress text, a TEXT frame (type 3, as
	// ComfyUI's send_progress_text sends it): Node and Text. It carries no
	// seq and is not replayed after a resume.
	KindProgressText
)

// Event is one thing the host sent, in the host's order.
type Event struct {
	Kind    Kind
	Seq     uint64          // position in the stream; 0 for messages outside it
	Type    string          // ComfyUI message type (KindMessage)
	Data    json.RawMessage // its data (KindMessage)
	Image   *protocol.Image // KindImage
	Reason  string          // KindResumeLost
	Dropped []protocol.PendingImage

	Node string // KindProgressText: the node id
	Text string // KindProgressText: the text
}

// IsPromptDone reports whether ev is the executing message with node null
// that ends promptID (ComfyUI's end of a prompt, success or not).
func (ev Event) IsPromptDone(promptID string) bool {
	if ev.Kind != KindMessage || ev.Type != protocol.TypeExecuting {
		return false
	}
	var d protocol.ExecutingData
	return json.Unmarshal(ev.Data, &d) == nil && d.Node == nil && d.PromptID == promptID
}

// Stats count what the client went through.
type Stats struct {
	Connects   int // successful connections, the first included
	Resumed    int // reconnects that resumed with nothing lost
	ResumeLost int // reconnects that could not resume
	Images     int // images delivered
	Messages   int // JSON messages delivered
}

// ErrReplaced is Err when another connection with this clientId replaced
// the client's (close code 4001): reconnecting would only fight it.
var ErrReplaced = errors.New("client: replaced by another connection with the same clientId")

// Client is a connection to a host that survives drops. Its methods are safe
// for concurrent use.
type Client struct {
	opts   Options
	base   *url.URL
	log    *slog.Logger
	events chan Event
	http   *http.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	conn  *websocket.Conn
	pos   protocol.Position // epoch "" until the host answered with one
	flags protocol.FeatureFlags
	stats Stats
	err   error

	reasm *protocol.Reassembler // used by the run goroutine only
}

// Dial connects to the host at baseURL (http://host:port, the address of its
// HTTP API), negotiates PART frames and resume, and starts delivering
// Events. It returns an error when the first connection fails; later drops
// are handled by reconnecting. ctx bounds the first connection only; Close
// ends the client.
func Dial(ctx context.Context, baseURL string, opts Options) (*Client, error) {
	base, err := url.Parse(strings.TrimSuffix(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("client: base URL: %w", err)
	}
	if base.Scheme != "http" && base.Scheme != "https" {
		return nil, fmt.Errorf("client: base URL %q: want http:// or https://", baseURL)
	}
	if opts.ClientID == "" {
		opts.ClientID = protocol.RandomHex(16)
	}
	if opts.ReadLimit <= 0 {
		opts.ReadLimit = 64 << 20
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = 64
	}
	c := &Client{
		opts:   opts,
		base:   base,
		log:    opts.Logger,
		events: make(chan Event, opts.EventBuffer),
		http:   opts.HTTPClient,
		done:   make(chan struct{}),
		reasm:  protocol.NewReassembler(opts.Reassembler),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.http == nil {
		c.http = &http.Client{Timeout: 5 * time.Minute}
	}
	conn, early, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go c.run(runCtx, conn, early)
	return c, nil
}

// ClientID is the clientId the client connects with; prompts queued with it
// are delivered to this client.
func (c *Client) ClientID() string { return c.opts.ClientID }

// Events delivers messages and images in the host's order. It is closed
// when the client ends (Close, or Err is set).
func (c *Client) Events() <-chan Event { return c.events }

// Position is the last position received (for logs and tests).
func (c *Client) Position() protocol.Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pos
}

// ServerFlags are the feature flags of the host's last answer.
func (c *Client) ServerFlags() protocol.FeatureFlags {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flags
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Err is why the client ended: nil after Close, ErrReplaced, or the error
// of the last failed reconnect.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the client and closes Events.
func (c *Client) Close() error {
	c.cancel()
	c.mu.Lock()
	if c.conn != nil {
		c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
			time.Now().Add(time.Second))
		c.conn.Close()
	}
	c.mu.Unlock()
	<-c.done
	return nil
}

func (c *Client) wsURL() string {
	u := *c.base
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.Path += "/ws"
	u.RawQuery = url.Values{"clientId": {c.opts.ClientID}}.Encode()
	return u.String()
}

// connect dials, sends the feature flags (with resume_from when the client
// has a position) and reads up to the host's answer, so that a prompt queued
// after Dial returns is numbered for this client. The messages that came
// before the answer are returned to deliver first.
func (c *Client) connect(ctx context.Context) (*websocket.Conn, []Event, error) {
	d := c.opts.Dialer
	if d == nil {
		d = websocket.DefaultDialer
	}
	h := http.Header{}
	if c.opts.Token != "" {
		h.Set("Authorization", "Bearer "+c.opts.Token)
	}
	conn, resp, err := d.DialContext(ctx, c.wsURL(), h)
	if err != nil {
		if resp != nil {
			return nil, nil, fmt.Errorf("client: connect: %w (HTTP %s)", err, resp.Status)
		}
		return nil, nil, fmt.Errorf("client: connect: %w", err)
	}
	conn.SetReadLimit(c.opts.ReadLimit)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	flags := protocol.FeatureFlags{protocol.FlagImageParts: true, protocol.FlagResume: true}
	c.mu.Lock()
	resuming := c.pos.Epoch != ""
	if resuming {
		flags[protocol.FlagResumeFrom] = c.pos
	}
	c.conn = conn
	c.mu.Unlock()
	if err := conn.WriteJSON(protocol.Message{Type: protocol.TypeFeatureFlags, Data: flags}); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("client: send feature_flags: %w", err)
	}
	var early []Event
	for answered := false; !answered; {
		kind, msg, err := conn.ReadMessage()
		if err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("client: waiting for the feature_flags answer: %w", err)
		}
		evs, ans, err := c.handle(kind, msg, resuming, false)
		if err != nil {
			conn.Close()
			return nil, nil, err
		}
		answered = ans
		early = append(early, evs...)
	}
	return conn, early, nil
}

// run reads connections until the client ends, reconnecting after drops.
func (c *Client) run(ctx context.Context, conn *websocket.Conn, early []Event) {
	defer close(c.done)
	defer close(c.events)
	failures := 0
	for {
		c.mu.Lock()
		c.stats.Connects++
		c.mu.Unlock()
		err := c.read(ctx, conn, early)
		conn.Close()
		if ctx.Err() != nil {
			return
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code == protocol.CloseReplaced {
			c.fail(ErrReplaced)
			return
		}
		c.log.Info("client: connection dropped; reconnecting", "client", c.opts.ClientID, "err", err)
		for conn = nil; conn == nil; {
			select {
			case <-ctx.Done():
				return
			case <-time.After(c.opts.Backoff.Delay(failures)):
			}
			conn, early, err = c.connect(ctx)
			if err != nil {
				failures++
				c.log.Info("client: reconnect failed", "client", c.opts.ClientID, "attempt", failures, "err", err)
				if c.opts.MaxAttempts > 0 && failures >= c.opts.MaxAttempts {
					c.fail(fmt.Errorf("client: gave up after %d failed reconnects: %w", failures, err))
					return
				}
			}
		}
		failures = 0
	}
}

func (c *Client) fail(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

// read serves one connection until it ends, after delivering early.
func (c *Client) read(ctx context.Context, conn *websocket.Conn, early []Event) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	for _, ev := range early {
		if !c.deliver(ctx, ev) {
			return ctx.Err()
		}
	}
	for {
		kind, msg, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		evs, _, err := c.handle(kind, msg, false, true)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if !c.deliver(ctx, ev) {
				return ctx.Err()
			}
		}
	}
}

// handle turns one message into the events it completes. answered says
// whether the host's feature_flags answer was read already on this
// connection; the result's second value says whether msg was that answer.
func (c *Client) handle(kind int, msg []byte, resuming, answered bool) ([]Event, bool, error) {
	if kind == websocket.BinaryMessage {
		ft, err := protocol.FrameType(msg)
		if err != nil {
			return nil, false, err
		}
		switch ft {
		case protocol.BinaryPart:
			h, _, err := protocol.ParsePartFrame(msg)
			if err != nil {
				return nil, false, err
			}
			if err := c.advance(h.Seq); err != nil {
				return nil, false, err
			}
			img, err := c.reasm.AddFrame(msg)
			if err != nil && !errors.Is(err, protocol.ErrImageDropped) {
				c.log.Warn("client: image part refused", "err", err)
			}
			if img == nil {
				return nil, false, nil
			}
			return []Event{{Kind: KindImage, Seq: h.Seq, Image: img}}, false, nil
		case protocol.BinaryPreviewImage:
			format, data, err := protocol.ParseImageFrame(msg)
			if err != nil {
				return nil, false, err
			}
			mime := "image/png"
			if format == protocol.ImageFormatJPEG {
				mime = "image/jpeg"
			}
			return []Event{{Kind: KindImage, Image: &protocol.Image{MIME: mime, Size: int64(len(data)), Data: data}}}, false, nil
		case protocol.BinaryText:
			node, text, err := protocol.ParseTextFrame(msg)
			if err != nil {
				return nil, false, err
			}
			return []Event{{Kind: KindProgressText, Node: node, Text: text}}, false, nil
		}
		return nil, false, nil // a frame type this client does not know
	}
	var m struct {
		Seq  uint64          `json:"seq"`
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(msg, &m); err != nil {
		return nil, false, fmt.Errorf("client: bad JSON message: %w", err)
	}
	if m.Type == protocol.TypeFeatureFlags && !answered {
		lost, err := c.answer(m.Data, resuming)
		if err != nil || lost == nil {
			return nil, true, err
		}
		return []Event{*lost}, true, nil
	}
	if m.Seq != 0 {
		if err := c.advance(m.Seq); err != nil {
			return nil, false, err
		}
	} else if bytes.Contains(m.Data, []byte(`"part_b64"`)) {
		// A base64 part: what a host sends before it knows this client
		// takes PART frames (an image committed before the flags arrived).
		img, err := c.reasm.AddB64(m.Type, m.Data)
		if err != nil && !errors.Is(err, protocol.ErrImageDropped) {
			c.log.Warn("client: image part refused", "err", err)
		}
		if img == nil {
			return nil, false, nil
		}
		return []Event{{Kind: KindImage, Image: img}}, false, nil
	}
	return []Event{{Kind: KindMessage, Seq: m.Seq, Type: m.Type, Data: m.Data}}, false, nil
}

// answer reads the host's feature_flags answer: the position to count from,
// and whether the resume worked.
func (c *Client) answer(data json.RawMessage, resuming bool) (*Event, error) {
	var flags protocol.FeatureFlags
	json.Unmarshal(data, &flags)
	var a struct {
		Resume *protocol.ResumeState `json:"resume"`
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("client: feature_flags answer: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flags = flags
	if a.Resume == nil { // a host without resume (ComfyUI): live only
		c.pos = protocol.Position{}
		return nil, nil
	}
	st := a.Resume
	c.pos = protocol.Position{Epoch: st.Epoch, Seq: st.Seq}
	if !resuming {
		return nil, nil
	}
	if st.Recovered != nil && *st.Recovered {
		c.stats.Resumed++
		c.log.Info("client: resumed", "client", c.opts.ClientID, "seq", st.Seq)
		return nil, nil
	}
	c.stats.ResumeLost++
	c.log.Warn("client: could not resume; messages were missed", "client", c.opts.ClientID, "reason", st.Reason)
	return &Event{Kind: KindResumeLost, Reason: st.Reason, Dropped: c.reasm.FlushAll()}, nil
}

// advance checks that seq follows the last one.
func (c *Client) advance(seq uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pos.Epoch == "" {
		return nil // numbered messages before the answer: nothing to count from yet
	}
	if seq != c.pos.Seq+1 {
		return fmt.Errorf("client: got seq %d after %d; reconnecting to resume", seq, c.pos.Seq)
	}
	c.pos.Seq = seq
	return nil
}

// deliver hands ev to the caller; false when the client is closing.
func (c *Client) deliver(ctx context.Context, ev Event) bool {
	select {
	case c.events <- ev:
	case <-ctx.Done():
		return false
	}
	c.mu.Lock()
	switch ev.Kind {
	case KindImage:
		c.stats.Images++
	case KindMessage:
		c.stats.Messages++
	}
	c.mu.Unlock()
	return true
}
