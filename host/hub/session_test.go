package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nodecast/nodecast/host/internal/logbuf"
	"github.com/nodecast/nodecast/internal/wait"
	"github.com/nodecast/nodecast/protocol"
)

// readClose reads until the connection ends and returns the close error.
func readClose(t testing.TB, conn *websocket.Conn) *websocket.CloseError {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(safetyTimeout))
	var err error
	for err == nil {
		_, _, err = conn.ReadMessage()
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("connection ended with %v, want a close frame", err)
	}
	return ce
}

// cut closes a client's TCP connection without a close frame, as a dropped
// network does.
func cut(c *testClient) { c.conn.NetConn().Close() }

func TestTakeover(t *testing.T) {
	var logs logbuf.Buffer
	h, srv := startHub(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	old := connect(t, srv, dialOpts{query: "clientId=krita"})
	h.SendJSON("krita", "marker", "to old")
	old.expectMarker("to old")

	fresh := connect(t, srv, dialOpts{query: "clientId=krita"})
	ce := readClose(t, old.conn)
	if ce.Code != protocol.CloseReplaced || ce.Text != "replaced by a new connection" {
		t.Errorf("old socket: got close %d %q, want 4001 %q", ce.Code, ce.Text, protocol.CloseReplacedText)
	}
	h.SendJSON("krita", "marker", "to new")
	fresh.expectMarker("to new")
	if s := h.Stats(); s.Takeovers != 1 || s.Clients != 1 {
		t.Errorf("stats: %+v, want 1 takeover and 1 client", s)
	}
	if n := strings.Count(logs.String(), "replaced by a new one"); n != 1 {
		t.Errorf("want one log line for the takeover, got %d:\n%s", n, logs.String())
	}

	t.Run("refuse", func(t *testing.T) {
		h, srv := startHub(t, Options{OnDuplicateClientID: DuplicateRefuse})
		first := connect(t, srv, dialOpts{query: "clientId=krita"})
		_, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, "clientId=krita"), nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusConflict {
			t.Fatalf("second connection: got %v, want HTTP 409", err)
		}
		h.SendJSON("krita", "marker", "still first")
		first.expectMarker("still first")
		if s := h.Stats(); s.Takeovers != 0 || s.Refused != 1 {
			t.Errorf("stats: %+v", s)
		}
	})
	t.Run("token guards both sockets", func(t *testing.T) {
		_, srv := startHub(t, Options{Token: "s3cret"})
		first := connect(t, srv, dialOpts{query: "clientId=k&token=s3cret"})
		_, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, "clientId=k"), nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("takeover without the token: got %v, want HTTP 401", err)
		}
		connect(t, srv, dialOpts{query: "clientId=k&token=s3cret"})
		if ce := readClose(t, first.conn); ce.Code != protocol.CloseReplaced {
			t.Errorf("got close %d, want 4001", ce.Code)
		}
	})
}

// TestHeldMessages: a plain client dropped mid-prompt reconnects 2 s later
// with its clientId and gets, after status, what it missed, the image whole
// and the final executing with node null.
func TestHeldMessages(t *testing.T) {
	h, srv := startHub(t, Options{})
	c := connect(t, srv, dialOpts{query: "clientId=plain"})
	node := "3"
	h.SendJSON("plain", protocol.TypeExecuting, protocol.ExecutingData{Node: &node, PromptID: "p1"})
	if typ, _ := c.readRaw(); typ != protocol.TypeExecuting {
		t.Fatalf("got %q, want executing", typ)
	}
	cut(c)
	wait.For(t, safetyTimeout, "the hub to see the drop", func() bool { return h.Stats().Detached == 1 })

	img := mediumPNG(t)
	h.SendJSON("plain", protocol.TypeProgress, protocol.ProgressData{Value: 1, Max: 2, PromptID: "p1", Node: node})
	publishAll(t, h, "plain", split(img, 8<<10, protocol.WireComfy, "held-img"))
	h.SendJSON("plain", protocol.TypeExecuting, protocol.ExecutingData{PromptID: "p1"})
	h.SendJSON("other", "marker", "not for plain")
	time.Sleep(2 * time.Second) // the reconnect the issue describes; nothing is timed

	c = connect(t, srv, dialOpts{query: "clientId=plain"})
	if typ, _ := c.readRaw(); typ != protocol.TypeProgress {
		t.Fatalf("first held message: %q, want progress", typ)
	}
	checkPNG(t, "held", c.readImage(shapeWhole).data, img)
	typ, data := c.readRaw()
	var ex protocol.ExecutingData
	json.Unmarshal(data, &ex)
	if typ != protocol.TypeExecuting || ex.Node != nil || ex.PromptID != "p1" {
		t.Fatalf("got %s %s, want executing with node null", typ, data)
	}
	h.SendJSON("plain", "marker", "live")
	c.expectMarker("live")
	if s := h.Stats(); s.HeldDelivered != 3 {
		t.Errorf("HeldDelivered: %d, want 3 (progress, image, executing)", s.HeldDelivered)
	}

	t.Run("running node on connect", func(t *testing.T) {
		h, srv := startHub(t, Options{})
		node := "7"
		h.SendJSON("late", protocol.TypeExecuting, protocol.ExecutingData{Node: &node, PromptID: "p2"})
		c := connect(t, srv, dialOpts{query: "clientId=late"})
		typ, data := c.readRaw()
		json.Unmarshal(data, &ex)
		if typ != protocol.TypeExecuting || ex.Node == nil || *ex.Node != "7" {
			t.Fatalf("got %s %s, want executing node 7", typ, data)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		h, srv := startHub(t, Options{Sessions: SessionOptions{HeldBytes: 4096, HeldAge: 50 * time.Millisecond}})
		c := connect(t, srv, dialOpts{query: "clientId=b"})
		cut(c)
		wait.For(t, safetyTimeout, "the drop", func() bool { return h.Stats().Detached == 1 })
		for i := range 100 {
			h.SendJSON("b", "marker", strings.Repeat("x", 100)+fmt.Sprint(i))
		}
		if s := h.Stats().Held; s.Bytes > 4096 || s.TrimmedBytes == 0 {
			t.Errorf("held: %+v, want at most 4096 bytes and trimmed entries", s)
		}
		wait.For(t, safetyTimeout, "the session to expire", func() bool { return h.Stats().Sessions == 0 })
		if s := h.Stats(); s.Held.Bytes != 0 || s.ExpiredSessions != 1 {
			t.Errorf("after expiry: %+v", s)
		}
	})
}

// resumeClient is a test client that negotiated supports_resume.
type resumeClient struct {
	*testClient
	state protocol.ResumeState
	last  uint64
}

var resumeFlags = protocol.FeatureFlags{protocol.FlagImageParts: true, protocol.FlagResume: true}

// dialResume connects, sends resume flags (with resume_from when from is
// non-nil) and reads the answer's resume state.
func dialResume(t testing.TB, url, id string, from *protocol.Position) *resumeClient {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(url+"?clientId="+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &resumeClient{testClient: &testClient{t: t, conn: conn, sid: id}}
	if typ, _ := c.readRaw(); typ != protocol.TypeStatus {
		t.Fatalf("first message %q, want status", typ)
	}
	flags := protocol.FeatureFlags{}
	for k, v := range resumeFlags {
		flags[k] = v
	}
	if from != nil {
		flags[protocol.FlagResumeFrom] = from
	}
	c.sendFlags(flags)
	typ, data := c.readRaw()
	var ans struct {
		Resume *protocol.ResumeState `json:"resume"`
	}
	if err := json.Unmarshal(data, &ans); typ != protocol.TypeFeatureFlags || err != nil || ans.Resume == nil {
		t.Fatalf("answer: %s %s, want feature_flags with resume", typ, data)
	}
	c.state = *ans.Resume
	c.last = ans.Resume.Seq
	return c
}

// seqMessage is one message of a resume client's stream.
type seqMessage struct {
	Seq  uint64
	Type string          // the JSON type, or "PART"
	Data json.RawMessage // JSON data
	Part protocol.PartHeader
}

// parseSeq reads the seq and type of a JSON message or PART frame.
func parseSeq(kind int, msg []byte) (seqMessage, error) {
	if kind == websocket.BinaryMessage {
		h, _, err := protocol.ParsePartFrame(msg)
		return seqMessage{Seq: h.Seq, Type: "PART", Part: h}, err
	}
	var m seqMessage
	err := json.Unmarshal(msg, &m)
	return m, err
}

// next reads one message and checks that its seq follows; it returns the
// JSON type (or "PART") and the marker text or the part header.
func (c *resumeClient) next() (string, string, protocol.PartHeader) {
	c.t.Helper()
	m, err := parseSeq(c.read())
	if err != nil {
		c.t.Fatal(err)
	}
	var text string
	json.Unmarshal(m.Data, &text)
	seq, typ, h := m.Seq, m.Type, m.Part
	if seq != c.last+1 {
		c.t.Fatalf("client %s: %s %q has seq %d, want %d", c.sid, typ, text, seq, c.last+1)
	}
	c.last = seq
	return typ, text, h
}

func (c *resumeClient) expect(marker string) {
	c.t.Helper()
	if typ, text, _ := c.next(); typ != "marker" || text != marker {
		c.t.Fatalf("client %s: got %s %q, want marker %q", c.sid, typ, text, marker)
	}
}

func TestResume(t *testing.T) {
	h, srv := startHub(t, Options{})
	url := wsURL(srv, "")
	c := dialResume(t, url, "r", nil)
	if c.state.Seq != 0 || c.state.Epoch == "" || c.state.Recovered != nil {
		t.Fatalf("first answer: %+v", c.state)
	}
	img := mediumPNG(t)
	h.SendJSON("r", "marker", "one")
	h.SendJSON("", "marker", "broadcast")
	c.expect("one")
	c.expect("broadcast")
	// An image in 5 parts: the client reads two, then the connection drops.
	publishAll(t, h, "r", split(img, len(img)/5+1, protocol.WireComfy, "img-r"))
	c.next()
	c.next()
	pos := protocol.Position{Epoch: c.state.Epoch, Seq: c.last}
	cut(c.testClient)
	wait.For(t, safetyTimeout, "the hub to see the drop", func() bool { return h.Stats().Detached == 1 })
	h.SendJSON("r", "marker", "while away")

	c2 := dialResume(t, url, "r", &pos)
	if c2.state.Recovered == nil || !*c2.state.Recovered || c2.state.Seq != pos.Seq || c2.state.Epoch != pos.Epoch {
		t.Fatalf("resume answer: %+v, want recovered at %+v", c2.state, pos)
	}
	for range 3 { // the parts it had not read: nothing twice
		if typ, _, h := c2.next(); typ != "PART" || h.ImageID != "img-r" {
			t.Fatalf("got %s %+v, want the image's remaining parts", typ, h)
		}
	}
	c2.expect("while away")
	h.SendJSON("r", "marker", "live")
	c2.expect("live")
	if s := h.Stats(); s.Resumed != 1 || s.Window.Bytes == 0 {
		t.Errorf("stats: %+v", s)
	}

	t.Run("takeover of a half-open socket resumes", func(t *testing.T) {
		pos := protocol.Position{Epoch: c2.state.Epoch, Seq: c2.last}
		h.SendJSON("r", "marker", "to the old socket")
		c3 := dialResume(t, url, "r", &pos) // c2 is still connected
		if ce := readClose(t, c2.conn); ce.Code != protocol.CloseReplaced {
			t.Errorf("old socket: close %d, want 4001", ce.Code)
		}
		if !*c3.state.Recovered {
			t.Fatalf("answer %+v", c3.state)
		}
		c3.expect("to the old socket")
	})
}

func TestResumeNotRecovered(t *testing.T) {
	h, srv := startHub(t, Options{Sessions: SessionOptions{WindowBytes: 4096}})
	url := wsURL(srv, "")
	c := dialResume(t, url, "w", nil)
	h.SendJSON("w", "marker", "first")
	c.expect("first")
	pos := protocol.Position{Epoch: c.state.Epoch, Seq: c.last}
	cut(c.testClient)
	wait.For(t, safetyTimeout, "the drop", func() bool { return h.Stats().Detached == 1 })
	for i := range 100 { // far more than the 4096-byte window
		h.SendJSON("w", "marker", fmt.Sprintf("%0100d", i))
	}
	tests := []struct {
		name   string
		from   protocol.Position
		reason string
	}{
		{"window overflow", pos, protocol.ResumeTooOld},
		{"wrong epoch", protocol.Position{Epoch: "not-the-epoch", Seq: 1}, protocol.ResumeEpochChanged},
		{"ahead", protocol.Position{Epoch: pos.Epoch, Seq: 1 << 40}, protocol.ResumeAhead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialResume(t, url, "w", &tt.from)
			st := c.state
			if st.Recovered == nil || *st.Recovered || !strings.HasPrefix(st.Reason, tt.reason) {
				t.Fatalf("answer %+v, want recovered:false with reason %q", st, tt.reason)
			}
			if st.Epoch == "" || st.Seq < 101 {
				t.Errorf("answer %+v: want the current position", st)
			}
			h.SendJSON("w", "marker", "live "+tt.name) // live delivery goes on, numbered
			c.expect("live " + tt.name)
		})
	}
	if s := h.Stats(); s.ResumeFailed != 3 || s.Window.OverflowedLogs == 0 || s.Window.Bytes > 4096 {
		t.Errorf("stats: %+v", s)
	}
}

// TestShortenedJSON: an execution_error carrying 10 MB arrives shortened
// under the limit, says so, and keeps its short fields.
func TestShortenedJSON(t *testing.T) {
	h, srv := startHub(t, Options{})
	plain := connect(t, srv, dialOpts{query: "clientId=a"})
	res := dialResume(t, wsURL(srv, ""), "b", nil)
	huge := strings.Repeat("é", 5<<20) // 10 MB, two bytes a rune
	h.SendJSON("", protocol.TypeExecutionError, protocol.ExecutionErrorData{
		PromptID: "p", NodeID: "4", NodeType: "KSampler", ExceptionMessage: huge,
		Traceback: []string{huge[:1<<20], "line 2"}, ExceptionType: "RuntimeError",
	})
	for _, conn := range []*websocket.Conn{plain.conn, res.conn} {
		conn.SetReadDeadline(time.Now().Add(safetyTimeout))
		_, msg, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if len(msg) >= protocol.DefaultMessageLimit {
			t.Errorf("message of %d bytes, want under %d", len(msg), protocol.DefaultMessageLimit)
		}
		var m struct {
			Type string `json:"type"`
			Data struct {
				protocol.ExecutionErrorData
				Truncated bool `json:"truncated"`
			} `json:"data"`
		}
		if err := json.Unmarshal(msg, &m); err != nil {
			t.Fatal(err)
		}
		d := m.Data
		if m.Type != protocol.TypeExecutionError || !d.Truncated || d.NodeID != "4" || d.ExceptionType != "RuntimeError" ||
			!strings.Contains(d.ExceptionMessage, "[truncated ") || !strings.HasPrefix(d.ExceptionMessage, "éé") {
			t.Errorf("got type %q truncated %v node %q message %.40q...", m.Type, d.Truncated, d.NodeID, d.ExceptionMessage)
		}
	}
	if s := h.Stats(); s.Truncated != 1 {
		t.Errorf("Truncated: %d", s.Truncated)
	}
}

// TestWriteTimeoutDrop: a client that stops reading is dropped when a write
// times out, with one log line and a counter, and the others go on.
func TestWriteTimeoutDrop(t *testing.T) {
	var logs logbuf.Buffer
	h, srv := startHub(t, Options{WriteTimeout: 200 * time.Millisecond, QueueBytes: 1 << 30,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	stuck := connect(t, srv, dialOpts{query: "clientId=stuck"})
	pad := strings.Repeat("x", 2<<20)
	wait.For(t, safetyTimeout, "the write to time out", func() bool { // the client reads nothing
		h.SendJSON("stuck", "big", pad)
		return h.Stats().WriteTimeouts > 0
	})
	stuck.conn.SetReadDeadline(time.Now().Add(safetyTimeout))
	var err error
	for err == nil { // what was on its way, then the end
		_, _, err = stuck.conn.ReadMessage()
	}
	if n := strings.Count(logs.String(), "write timed out"); n != 1 {
		t.Errorf("want one log line, got %d:\n%s", n, logs.String())
	}
	wait.For(t, safetyTimeout, "the session to detach", func() bool { return h.Stats().Clients == 0 })
	c := connect(t, srv, dialOpts{query: "clientId=other"})
	h.SendJSON("other", "marker", "ok")
	c.expectMarker("ok")
	if s := h.Stats(); s.WriteTimeouts != 1 || s.Evictions != 0 {
		t.Errorf("stats: %+v", s)
	}
}

// TestInvalidUTF8Closed: a text message that is not UTF-8 closes the
// connection with 1007, as RFC 6455 asks.
func TestInvalidUTF8Closed(t *testing.T) {
	h, srv := startHub(t, Options{})
	c := connect(t, srv, dialOpts{query: "clientId=u"})
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte{'{', 0xff, 0xfe, '}'}); err != nil {
		t.Fatal(err)
	}
	ce := readClose(t, c.conn)
	if ce.Code != websocket.CloseInvalidFramePayloadData || !strings.Contains(ce.Text, "UTF-8") {
		t.Errorf("got close %d %q, want 1007", ce.Code, ce.Text)
	}
	if s := h.Stats(); s.InvalidUTF8 != 1 {
		t.Errorf("stats: %+v", s)
	}
}

// TestResumeReplayOverQueueBound: a replay larger than the client's queue
// bound would evict it in a loop; the hub says so instead.
func TestResumeReplayOverQueueBound(t *testing.T) {
	h, srv := startHub(t, Options{QueueBytes: 1 << 20, Sessions: SessionOptions{WindowBytes: -1}}) // a window without a byte bound
	url := wsURL(srv, "")
	c := dialResume(t, url, "big", nil)
	pos := protocol.Position{Epoch: c.state.Epoch, Seq: c.last}
	cut(c.testClient)
	wait.For(t, safetyTimeout, "the drop", func() bool { return h.Stats().Detached == 1 })
	pad := strings.Repeat("x", 256<<10)
	for range 8 { // 2 MiB in the window, over the 1 MiB queue bound
		h.SendJSON("big", "marker", pad)
	}
	c = dialResume(t, url, "big", &pos)
	if st := c.state; st.Recovered == nil || *st.Recovered || !strings.HasPrefix(st.Reason, protocol.ResumeTooLarge) {
		t.Fatalf("answer %+v, want recovered:false, %s", st, protocol.ResumeTooLarge)
	}
	h.SendJSON("big", "marker", "live")
	c.expect("live")
}

// TestTakeoverHandsOverUnwritten: what was queued to a plain client's old
// socket and not yet written goes to the socket that took over, in order,
// after its status.
func TestTakeoverHandsOverUnwritten(t *testing.T) {
	h, srv := startHub(t, Options{})
	old := connect(t, srv, dialOpts{query: "clientId=slowpoke"}) // reads nothing more
	pad := strings.Repeat("x", 1<<20)
	const n = 40 // 40 MiB: far more than the socket buffers take
	for i := range n {
		h.SendJSON("slowpoke", "big", map[string]any{"i": i, "pad": pad})
	}
	fresh := connect(t, srv, dialOpts{query: "clientId=slowpoke"})
	first, next := -1, -1
	for next != n-1 {
		var m struct {
			Type string
			Data struct{ I int }
		}
		fresh.readJSON(&m)
		if m.Type != "big" || (next >= 0 && m.Data.I != next+1) {
			t.Fatalf("got %s %d after %d, want the queued messages in order", m.Type, m.Data.I, next)
		}
		if first < 0 {
			first = m.Data.I
		}
		next = m.Data.I
	}
	t.Logf("the new socket got messages %d..%d, which the old one had not been sent", first, n-1)
	if ce := readClose(t, old.conn); ce.Code != protocol.CloseReplaced {
		t.Errorf("old socket: close %d, want 4001", ce.Code)
	}
	h.SendJSON("slowpoke", "marker", "live")
	fresh.expectMarker("live")
}

// TestEvictedResumeClientResumes: a resume client that stops reading is
// evicted once half its window behind, and resumes with nothing lost.
func TestEvictedResumeClientResumes(t *testing.T) {
	const window = 4 << 20
	h, srv := startHub(t, Options{Sessions: SessionOptions{WindowBytes: window}})
	url := wsURL(srv, "")
	c := dialResume(t, url, "lazy", nil)
	pad := strings.Repeat("x", 256<<10)
	sent := 0
	for ; h.Stats().Evictions == 0; sent++ {
		if sent == 1000 {
			t.Fatal("never evicted")
		}
		h.SendJSON("lazy", "marker", fmt.Sprintf("%d %s", sent, pad))
	}
	// The old connection: what reached it, then close 1008.
	got := 0
	for {
		c.conn.SetReadDeadline(time.Now().Add(safetyTimeout))
		kind, msg, err := c.conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != CloseSlowClient {
				t.Fatalf("old connection ended with %v, want 1008", err)
			}
			break
		}
		m, err := parseSeq(kind, msg)
		if err != nil || m.Seq != c.last+1 {
			t.Fatalf("seq %d after %d (%v)", m.Seq, c.last, err)
		}
		c.last = m.Seq
		got++
	}
	pos := protocol.Position{Epoch: c.state.Epoch, Seq: c.last}
	r := dialResume(t, url, "lazy", &pos)
	if st := r.state; st.Recovered == nil || !*st.Recovered {
		t.Fatalf("resume after eviction: %+v", st)
	}
	r.last = c.last
	for i := got; i < sent; i++ {
		typ, text, _ := r.next()
		if typ != "marker" || !strings.HasPrefix(text, fmt.Sprintf("%d ", i)) {
			t.Fatalf("got %s %.20q, want marker %d", typ, text, i)
		}
	}
	h.SendJSON("lazy", "marker", "live")
	r.expect("live")
	t.Logf("%d messages sent, %d reached the evicted connection, %d replayed", sent, got, sent-got)
	if s := h.Stats(); s.Evictions != 1 || s.Resumed != 1 {
		t.Errorf("stats %+v", s)
	}
}
