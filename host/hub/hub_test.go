package hub

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nodecast/nodecast/host/internal/logbuf"
	"github.com/nodecast/nodecast/internal/wait"
	"github.com/nodecast/nodecast/protocol"
)

func TestStatusIsFirst(t *testing.T) {
	_, srv := startHub(t, Options{QueueRemaining: func() int { return 3 }})
	tests := []struct {
		name, query string
		wantSID     func(string) bool
	}{
		{"given clientId", "clientId=abc-123", func(s string) bool { return s == "abc-123" }},
		{"generated", "", func(s string) bool {
			b, err := hex.DecodeString(s)
			return len(b) == 16 && strings.ToLower(s) == s && err == nil && b[6]>>4 == 4
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, _, err := websocket.DefaultDialer.Dial(wsURL(srv, tt.query), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, data, err := conn.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			var m struct {
				Type string `json:"type"`
				Data struct {
					Status struct {
						ExecInfo struct {
							QueueRemaining *int `json:"queue_remaining"`
						} `json:"exec_info"`
					} `json:"status"`
					SID string `json:"sid"`
				} `json:"data"`
			}
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			if m.Type != "status" || !tt.wantSID(m.Data.SID) {
				t.Errorf("got %s, want status with the right sid", data)
			}
			if q := m.Data.Status.ExecInfo.QueueRemaining; q == nil || *q != 3 {
				t.Errorf("queue_remaining: got %s, want 3", data)
			}
		})
	}
}

// TestFeatureFlags follows ComfyUI's server.py websocket_handler: the flags
// of the first JSON message are stored and answered with the server's
// (feature_flags.get_server_features); a message that is not JSON, and a
// binary one, do not count as the first; any later feature_flags is ignored,
// and nodecast answers it with an "error" message saying so.
func TestFeatureFlags(t *testing.T) {
	h, srv := startHub(t, Options{ServerFlags: map[string]any{"max_upload_size": 1 << 20, protocol.FlagImageParts: false}})
	c := connect(t, srv, dialOpts{query: "clientId=flags"})
	if _, ok := h.clientFlags("flags"); !ok {
		t.Fatal("Flags: client not found")
	}
	// Not JSON, and binary: ignored, and the next message is still the first.
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte("not json")); err != nil {
		t.Fatal(err)
	}
	c.conn.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3})
	c.sendFlags(protocol.FeatureFlags{protocol.FlagImageParts: true, "x": 0})
	typ, data := c.readRaw()
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil || typ != protocol.TypeFeatureFlags {
		t.Fatalf("got %s %s, want feature_flags", typ, data)
	}
	want := map[string]any{
		protocol.FlagImageParts: true, protocol.FlagMaxMessageSize: float64(protocol.DefaultMessageLimit),
		protocol.FlagPreviewMetadata: true, protocol.FlagMaxUploadSize: float64(1 << 20),
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("flag %s = %v, want %v", k, got[k], v)
		}
	}
	// A second feature_flags: answered with an error, and the flags stay.
	for round := range 2 {
		c.sendFlags(protocol.FeatureFlags{protocol.FlagImageParts: false, "x": round + 1})
		checkLateFlagsError(t, c)
		flags, ok := h.clientFlags("flags")
		if !ok || !flags.Bool(protocol.FlagImageParts) || flags["x"] != float64(0) {
			t.Errorf("round %d: stored flags %v, want the first message's", round, flags)
		}
	}
	// Other messages are ignored without an answer: the next message the
	// client gets is the one sent to it.
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"prompt","data":{}}`)); err != nil {
		t.Fatal(err)
	}
	h.SendJSON("flags", "after", map[string]int{"n": 1})
	if typ, _ := c.readRaw(); typ != "after" {
		t.Errorf("after an ignored message: got %q, want the next message", typ)
	}
	if got := h.Clients(); len(got) != 1 || got[0].ID != "flags" {
		t.Errorf("Clients: got %+v", got)
	}

	// A first JSON message that is not feature_flags closes the door too.
	d := connect(t, srv, dialOpts{query: "clientId=late"})
	if err := d.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"hello"}`)); err != nil {
		t.Fatal(err)
	}
	d.sendFlags(protocol.FeatureFlags{protocol.FlagImageParts: true})
	checkLateFlagsError(t, d)
	if flags, _ := h.clientFlags("late"); flags != nil {
		t.Errorf("flags stored after a late feature_flags: %v", flags)
	}
	// and a client whose first message is feature_flags with data that is
	// not an object gets the server's answer, as ComfyUI stores what it got.
	e := connect(t, srv, dialOpts{query: "clientId=odd"})
	if err := e.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"feature_flags","data":[1]}`)); err != nil {
		t.Fatal(err)
	}
	if typ, _ := e.readRaw(); typ != protocol.TypeFeatureFlags {
		t.Errorf("answer to feature_flags with a list: %q, want feature_flags", typ)
	}
}

// checkLateFlagsError reads the answer to a late feature_flags, field by
// field: {"type":"error","data":{"type","message","details","extra_info"}},
// the shape of ComfyUI's error dictionary (server.py post_prompt).
func checkLateFlagsError(t *testing.T, c *testClient) {
	t.Helper()
	typ, data := c.readRaw()
	var e map[string]any
	if err := json.Unmarshal(data, &e); err != nil || typ != protocol.TypeError {
		t.Fatalf("answer to a late feature_flags: %s %s, want error", typ, data)
	}
	if len(e) != 4 || e["type"] != protocol.ErrorFeatureFlagsNotFirst ||
		!strings.Contains(e["message"].(string), "first message") || e["details"] == "" {
		t.Errorf("error data: %s", data)
	}
	if x, ok := e["extra_info"].(map[string]any); !ok || len(x) != 0 {
		t.Errorf("extra_info: %s", data)
	}
}

func TestRouting(t *testing.T) {
	h, srv := startHub(t, Options{})
	a := connect(t, srv, dialOpts{query: "clientId=A"})
	b := connect(t, srv, dialOpts{query: "clientId=B", flags: protocol.FeatureFlags{protocol.FlagImageParts: true}})
	img := smallPNG(t)

	h.SendJSON("A", "marker", "to A")
	publishAll(t, h, "A", split(img, 10, protocol.WireParts, "only-A"))
	h.SendJSON("", "marker", "to all")
	publishAll(t, h, "", split(img, 10, protocol.WireComfy, "all"))
	h.SendJSON("nobody", "marker", "to nobody")
	publishAll(t, h, "nobody", split(img, 10, protocol.WireComfy, "nobody"))
	h.SendJSON("", "marker", "end")

	a.expectMarker("to A")
	checkPNG(t, "A", a.readImage(shapeBase64).data, img)
	a.expectMarker("to all")
	checkPNG(t, "A", a.readImage(shapeWhole).data, img)
	a.expectMarker("end")

	b.expectMarker("to all") // nothing for A reached B before it
	checkPNG(t, "B", b.readImage(shapePART).data, img)
	b.expectMarker("end")
}

// TestThreeClients sends an image over the message limit to three clients
// reading at once: PART frames, base64 JSON parts, and whole type 1 frames.
func TestThreeClients(t *testing.T) {
	const smallLimit = 16 << 10
	tests := []struct {
		name  string
		limit int
		img   []byte
		chunk int
	}{
		// 3 MiB - 3 KiB, a multiple of 3: every shape fits as the sender cut it.
		{"over 4 MiB in parts sized for base64", 0, testPNG(t), 3<<20 - 3072},
		// Parts fit PART frames but not base64: the hub splits them again.
		{"parts sized for PART frames", smallLimit, mediumPNG(t), smallLimit - 1024},
		// No message fits: the hub splits again for both shapes.
		{"one part holding the whole image", smallLimit, mediumPNG(t), len(mediumPNG(t))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, srv := startHub(t, Options{MessageLimit: tt.limit})
			limit := cmp.Or(tt.limit, protocol.DefaultMessageLimit)
			if len(tt.img) < limit {
				t.Fatalf("image of %d bytes is under the limit %d", len(tt.img), limit)
			}
			// A stock client refuses messages of limit bytes or more: read limits check it.
			withParts := connect(t, srv, dialOpts{query: "clientId=parts", readLimit: int64(limit - 1),
				flags: protocol.FeatureFlags{protocol.FlagImageParts: true}})
			base64 := connect(t, srv, dialOpts{query: "clientId=base64", readLimit: int64(limit - 1)})
			whole := connect(t, srv, dialOpts{query: "clientId=whole"}) // no read limit: type 1 is exempt
			expect := map[*testClient][]shape{
				withParts: {shapePART, shapePART},
				base64:    {shapeBase64},
				whole:     {shapeBase64, shapeWhole},
			}
			type result struct {
				c     *testClient
				shape shape
				got   receivedImage
				err   error
			}
			results := make(chan result)
			for c, shapes := range expect {
				go func() {
					for _, s := range shapes {
						got, err := c.readImageErr(s)
						results <- result{c, s, got, err}
					}
				}()
			}
			// WireParts to every client: PART frames and base64 parts, each framed once.
			publishAll(t, h, "", split(tt.img, tt.chunk, protocol.WireParts, "parts"))
			// WireComfy: type 1 to the whole-image client, PART to the PART client.
			publishAll(t, h, "whole", split(tt.img, tt.chunk, protocol.WireComfy, "comfy"))
			publishAll(t, h, "parts", split(tt.img, tt.chunk, protocol.WireComfy, "comfy-parts"))
			for range 5 {
				r := <-results
				if r.err != nil {
					t.Fatal(r.err)
				}
				checkPNG(t, r.c.sid, r.got.data, tt.img)
				if r.shape != shapeWhole && r.got.largest >= limit {
					t.Errorf("%s: a message of %d bytes, want < %d", r.c.sid, r.got.largest, limit)
				}
				if r.shape == shapeWhole && r.got.messages != 1 {
					t.Errorf("%s: %d messages, want one type 1 frame", r.c.sid, r.got.messages)
				}
			}
			h.SendJSON("", "marker", "end")
			for c := range expect {
				c.expectMarker("end")
			}
		})
	}
}

// TestTornImageNeverSeen publishes parts in shuffled order and checks that
// nothing reaches the client before the last one.
func TestTornImageNeverSeen(t *testing.T) {
	img := smallPNG(t)
	for _, shape := range []shape{shapePART, shapeBase64, shapeWhole} {
		t.Run(fmt.Sprint(shape), func(t *testing.T) {
			h, srv := startHub(t, Options{})
			o := dialOpts{query: "clientId=c"}
			if shape == shapePART {
				o.flags = protocol.FeatureFlags{protocol.FlagImageParts: true}
			}
			c := connect(t, srv, o)
			wire := protocol.WireB64Parts
			if shape == shapeWhole {
				wire = protocol.WireComfy
			}
			parts := split(img, 9, wire, "torn")
			rand.New(rand.NewPCG(7, 7)).Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
			last := parts[len(parts)-1]
			publishAll(t, h, "c", parts[:len(parts)-1])
			if s := h.Stats(); s.PendingImages != 1 || s.PendingBytes != int64(len(img)-len(last.Data)) {
				t.Errorf("stats while pending: %+v", s)
			}
			h.SendJSON("c", "marker", "before last part")
			c.expectMarker("before last part") // no part was queued before the marker
			publishAll(t, h, "c", []*protocol.ImagePart{last})
			checkPNG(t, "c", c.readImage(shape).data, img)
			if s := h.Stats(); s.PendingImages != 0 || s.PendingBytes != 0 || s.Committed != 1 {
				t.Errorf("stats after commit: %+v", s)
			}
		})
	}
}

func (s shape) String() string {
	return [...]string{"PART", "whole", "base64"}[s]
}

func TestOrder(t *testing.T) {
	h, srv := startHub(t, Options{})
	c := connect(t, srv, dialOpts{query: "clientId=c"})
	img := smallPNG(t)
	h.SendJSON("c", "marker", "executing 9")
	publishAll(t, h, "c", split(img, 7, protocol.WireB64Parts, "x"))
	h.SendJSON("c", protocol.TypeExecuting, protocol.ExecutingData{Node: nil, PromptID: "p"})
	c.expectMarker("executing 9")
	checkPNG(t, "c", c.readImage(shapeBase64).data, img)
	typ, data := c.readRaw()
	if typ != protocol.TypeExecuting || string(data) != `{"node":null,"prompt_id":"p"}` {
		t.Errorf("got %s %s, want executing with node null", typ, data)
	}
}

// TestSlowClientEvicted: a client that stops reading is cut with 1008 once
// its queue passes QueueBytes, while a fast client keeps receiving everything.
func TestSlowClientEvicted(t *testing.T) {
	var logs logbuf.Buffer
	const queueBytes = 1 << 20
	h, srv := startHub(t, Options{QueueBytes: queueBytes, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	slow := connect(t, srv, dialOpts{query: "clientId=slow"})
	fast := connect(t, srv, dialOpts{query: "clientId=fast"})
	pad := strings.Repeat("x", 256<<10)
	type msg struct {
		Seq int    `json:"seq"`
		Pad string `json:"pad"`
	}
	sent := 0
	for ; h.Stats().Evictions == 0; sent++ {
		if sent == 1000 { // 256 MB: far beyond any socket buffer
			t.Fatal("the slow client was never evicted")
		}
		h.SendJSON("", "big", msg{Seq: sent, Pad: pad})
		var got struct{ Data msg }
		fast.readJSON(&got) // lockstep: the fast client's queue never grows
		if got.Data.Seq != sent {
			t.Fatalf("fast client: got seq %d, want %d", got.Data.Seq, sent)
		}
	}
	for i := range 5 { // the fast client is unaffected
		h.SendJSON("", "marker", fmt.Sprint(i))
		fast.expectMarker(fmt.Sprint(i))
	}
	if ids := h.Clients(); len(ids) != 1 || ids[0].ID != "fast" {
		t.Errorf("Clients after eviction: %+v", ids)
	}
	// The slow client reads what was already on its way, then the close frame.
	slow.conn.SetReadDeadline(time.Now().Add(safetyTimeout))
	var err error
	for err == nil {
		_, _, err = slow.conn.ReadMessage()
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || !strings.Contains(ce.Text, "limit 1048576") {
		t.Fatalf("slow client: got %v, want close 1008 naming the limit", err)
	}
	if l := logs.String(); strings.Count(l, "slow client evicted") != 1 || !strings.Contains(l, "client=slow") ||
		!strings.Contains(l, "limit=1048576") {
		t.Errorf("log: want one eviction line naming the client and limit, got:\n%s", l)
	}
	if s := h.Stats(); s.Evictions != 1 || s.Clients != 1 {
		t.Errorf("stats: %+v", s)
	}
	// The evicted id is free again.
	connect(t, srv, dialOpts{query: "clientId=slow"})
}

func TestRefusals(t *testing.T) {
	type attempt struct {
		name   string
		query  string
		header http.Header
		status int    // 0 = accepted
		reason string // in the refusal's body
	}
	tests := []struct {
		name     string
		opts     Options
		attempts func(host string) []attempt
	}{
		{"token", Options{Token: "s3cret"}, func(string) []attempt {
			return []attempt{
				{"none", "clientId=a", nil, http.StatusUnauthorized, "token"},
				{"wrong", "clientId=a&token=nope", nil, http.StatusUnauthorized, "token"},
				{"wrong bearer", "clientId=a", http.Header{"Authorization": {"Bearer nope"}}, http.StatusUnauthorized, "token"},
				{"query", "clientId=a&token=s3cret", nil, 0, ""},
				{"bearer", "clientId=b", http.Header{"Authorization": {"Bearer s3cret"}}, 0, ""},
			}
		}},
		{"default origin policy", Options{}, func(host string) []attempt {
			return []attempt{
				{"no origin", "clientId=a", nil, 0, ""},
				{"same host", "clientId=b", http.Header{"Origin": {"http://" + host}}, 0, ""},
				{"foreign", "clientId=c", http.Header{"Origin": {"http://evil.example"}}, http.StatusForbidden, "origin"},
				{"null", "clientId=c", http.Header{"Origin": {"null"}}, http.StatusForbidden, "origin"},
			}
		}},
		{"origin allowlist", Options{AllowedOrigins: []string{"https://app.example"}}, func(host string) []attempt {
			return []attempt{
				{"listed", "clientId=a", http.Header{"Origin": {"https://app.example"}}, 0, ""},
				{"same host not listed", "clientId=b", http.Header{"Origin": {"http://" + host}}, http.StatusForbidden, "origin"},
				{"other scheme", "clientId=b", http.Header{"Origin": {"http://app.example"}}, http.StatusForbidden, "origin"},
			}
		}},
		{"host allowlist", Options{AllowedHosts: []string{"localhost", "127.0.0.1"}}, func(host string) []attempt {
			return []attempt{
				{"listed without port", "clientId=a", nil, 0, ""},
				{"rebinding", "clientId=b", http.Header{"Host": {"attacker.example"}}, http.StatusForbidden, "host"},
			}
		}},
		{"clientId", Options{OnDuplicateClientID: DuplicateRefuse}, func(string) []attempt {
			return []attempt{
				{"first", "clientId=taken", nil, 0, ""},
				{"duplicate", "clientId=taken", nil, http.StatusConflict, "already connected"},
				{"too long", "clientId=" + strings.Repeat("x", 300), nil, http.StatusBadRequest, "clientId"},
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, srv := startHub(t, tt.opts)
			refused := 0
			for _, a := range tt.attempts(strings.TrimPrefix(srv.URL, "http://")) {
				conn, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, a.query), a.header)
				if a.status == 0 {
					if err != nil {
						t.Fatalf("%s: %v", a.name, err)
					}
					t.Cleanup(func() { conn.Close() })
					if _, _, err := conn.ReadMessage(); err != nil { // status: registered
						t.Fatalf("%s: %v", a.name, err)
					}
					continue
				}
				refused++
				if err == nil {
					conn.Close()
					t.Fatalf("%s: accepted, want HTTP %d", a.name, a.status)
				}
				if resp == nil || resp.StatusCode != a.status {
					t.Fatalf("%s: got %v %+v, want HTTP %d", a.name, err, resp, a.status)
				}
				body := make([]byte, 512)
				n, _ := resp.Body.Read(body)
				if !strings.Contains(string(body[:n]), a.reason) {
					t.Errorf("%s: body %q does not explain (%q)", a.name, body[:n], a.reason)
				}
			}
			if got := h.Stats().Refused; got != uint64(refused) {
				t.Errorf("Stats.Refused: got %d, want %d", got, refused)
			}
		})
	}
}

// TestClientIDFreedOnDisconnect: a closed connection's id can be used again.
func TestClientIDFreedOnDisconnect(t *testing.T) {
	h, srv := startHub(t, Options{})
	c := connect(t, srv, dialOpts{query: "clientId=again"})
	c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	c.conn.Close()
	wait.For(t, safetyTimeout, "the hub to forget the client", func() bool { return len(h.Clients()) == 0 })
	connect(t, srv, dialOpts{query: "clientId=again"})
}

func TestClose(t *testing.T) {
	h, srv := startHub(t, Options{})
	c := connect(t, srv, dialOpts{query: "clientId=c"})
	h.SendJSON("c", "marker", "queued before Close")
	// The client reads while Close runs, so it answers the close frame.
	read := make(chan error)
	go func() {
		var err error
		var msgs []string
		for err == nil {
			var data []byte
			_, data, err = c.conn.ReadMessage()
			msgs = append(msgs, string(data))
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway || len(msgs) != 2 ||
			msgs[0] != `{"type":"marker","data":"queued before Close"}` {
			err = fmt.Errorf("got messages %q then %v, want the marker then close 1001", msgs, err)
		} else {
			err = nil
		}
		read <- err
	}()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Error(err)
	}
	_, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, ""), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after Close: got %v, want HTTP 503", err)
	}
	if err := h.Publish("", split(smallPNG(t), 10, protocol.WireComfy, "late")[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: got %v, want ErrClosed", err)
	}
}

func TestPublishErrors(t *testing.T) {
	img := smallPNG(t)
	fresh := func(id string) []*protocol.ImagePart { return split(img, 16, protocol.WireParts, id) }
	tests := []struct {
		name    string
		opts    Options
		publish func(h *Hub) error // returns the error of the bad part
		want    error
	}{
		{"duplicate part", Options{}, func(h *Hub) error {
			p := fresh("dup")
			h.Publish("", p[0])
			return h.Publish("", p[0])
		}, protocol.ErrPart},
		{"part out of range", Options{}, func(h *Hub) error {
			p := fresh("range")[1]
			p.Part = p.Parts
			return h.Publish("", p)
		}, protocol.ErrPart},
		{"size differs", Options{}, func(h *Hub) error {
			p := fresh("size")
			h.Publish("", p[0])
			p[1].Size++
			return h.Publish("", p[1])
		}, protocol.ErrPart},
		{"client differs", Options{}, func(h *Hub) error {
			p := fresh("client")
			h.Publish("a", p[0])
			return h.Publish("b", p[1])
		}, protocol.ErrPart},
		{"offsets overlap", Options{}, func(h *Hub) error {
			p := split(img, len(img)/2+1, protocol.WireParts, "overlap")
			p[1].Offset--
			p[1].Data = img[p[1].Offset:]
			h.Publish("", p[0])
			return h.Publish("", p[1])
		}, protocol.ErrPart},
		{"sha256 mismatch", Options{}, func(h *Hub) error {
			p := fresh("sha")
			bad := append([]byte(nil), p[0].Data...)
			bad[0] ^= 1
			p[0].Data = bad
			publishAllErr(h, p[:len(p)-1])
			return h.Publish("", p[len(p)-1])
		}, protocol.ErrPart},
		{"bad sha256 text", Options{}, func(h *Hub) error {
			p := fresh("shatext")[0]
			p.SHA256 = strings.ToUpper(p.SHA256)
			return h.Publish("", p)
		}, protocol.ErrPart},
		{"reserved event name", Options{}, func(h *Hub) error {
			p := fresh("event")[0]
			p.Event = protocol.TypeExecuting
			return h.Publish("", p)
		}, protocol.ErrPart},
		{"pending bytes over limit", Options{MaxPendingImageBytes: int64(len(img))}, func(h *Hub) error {
			a, b := fresh("a"), fresh("b")
			publishAllErr(h, a[:len(a)-1])
			return h.Publish("", b[0])
		}, protocol.ErrLimit},
		{"image over pending limit", Options{MaxPendingImageBytes: int64(len(img)) - 1}, func(h *Hub) error {
			return h.Publish("", fresh("big")[0])
		}, protocol.ErrLimit},
		{"later parts of a dropped image", Options{}, func(h *Hub) error {
			p := fresh("later")
			h.Publish("", p[0])
			h.Publish("", p[0])
			return h.Publish("", p[1])
		}, protocol.ErrPart},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := startHub(t, tt.opts)
			err := tt.publish(h)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			var pe *PartError
			var le *protocol.LimitError
			if !errors.As(err, &pe) && !errors.As(err, &le) {
				t.Errorf("got %T, want *PartError or *protocol.LimitError", err)
			}
			if s := h.Stats(); s.Committed != 0 || s.Dropped == 0 {
				t.Errorf("stats: %+v, want a dropped image and none committed", s)
			}
		})
	}
}

func publishAllErr(h *Hub, parts []*protocol.ImagePart) {
	for _, p := range parts {
		h.Publish("", p)
	}
}

func TestAbortImages(t *testing.T) {
	h, srv := startHub(t, Options{})
	c := connect(t, srv, dialOpts{query: "clientId=c"})
	img := smallPNG(t)
	parts := split(img, 16, protocol.WireParts, "retry")
	publishAll(t, h, "c", parts[:2])
	h.AbortImages("other-prompt")
	if s := h.Stats(); s.PendingImages != 1 {
		t.Fatalf("another prompt's abort dropped the image: %+v", s)
	}
	h.AbortImages("prompt-1")
	if s := h.Stats(); s.PendingImages != 0 || s.PendingBytes != 0 {
		t.Fatalf("after AbortImages: %+v", s)
	}
	h.SendJSON("c", "marker", "aborted")
	c.expectMarker("aborted")
	publishAll(t, h, "c", parts) // a retry sends the whole image again
	checkPNG(t, "c", c.readImage(shapeBase64).data, img)
}

// TestSilentClientDropped: a client that never answers pings is dropped and
// its id freed.
func TestSilentClientDropped(t *testing.T) {
	h, srv := startHub(t, Options{PingInterval: 50 * time.Millisecond})
	connect(t, srv, dialOpts{query: "clientId=silent"}) // reads its status, then nothing
	wait.For(t, safetyTimeout, "the silent client to be dropped", func() bool { return len(h.Clients()) == 0 })
	connect(t, srv, dialOpts{query: "clientId=silent"})
}

// TestConcurrentPublishers: producers publishing interleaved parts of many
// images at once; every client gets every image whole.
func TestConcurrentPublishers(t *testing.T) {
	const producers, images = 4, 5
	img := mediumPNG(t)
	h, srv := startHub(t, Options{})
	clients := map[*testClient]shape{
		connect(t, srv, dialOpts{query: "clientId=parts", flags: protocol.FeatureFlags{protocol.FlagImageParts: true}}): shapePART,
		connect(t, srv, dialOpts{query: "clientId=plain"}):                                                              shapeWhole,
	}
	errs := make(chan error, producers+len(clients))
	for c, s := range clients {
		go func() {
			for range producers * images {
				got, err := c.readImageErr(s)
				if err == nil && !bytes.Equal(got.data, img) {
					err = fmt.Errorf("%s: image differs", c.sid)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for p := range producers {
		go func() {
			for i := range images {
				for _, part := range split(img, 4000, protocol.WireComfy, fmt.Sprintf("p%d-%d", p, i)) {
					if err := h.Publish("", part); err != nil {
						errs <- err
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range producers + len(clients) {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if s := h.Stats(); s.Committed != producers*images || s.PendingImages != 0 {
		t.Errorf("stats: %+v", s)
	}
}
