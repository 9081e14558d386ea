package hub

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nodecast/nodecast/protocol"
)

// safetyTimeout only keeps a broken test from hanging; no assertion is timed.
const safetyTimeout = 60 * time.Second

// startHub serves a new hub on 127.0.0.1 and closes both at the end of t.
func startHub(t testing.TB, opts Options) (*Hub, *httptest.Server) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = safetyTimeout // the race detector on a loaded machine is slow
	}
	h := New(opts)
	mux := http.NewServeMux()
	mux.Handle("/ws", h)
	mux.Handle("/api/ws", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	return h, srv
}

func wsURL(srv *httptest.Server, query string) string {
	u := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// testClient is one gorilla client connection.
type testClient struct {
	t    testing.TB
	conn *websocket.Conn
	sid  string
}

// dialOpts are the knobs a test client may turn.
type dialOpts struct {
	query     string
	header    http.Header
	flags     protocol.FeatureFlags // sent as feature_flags when non-nil
	readLimit int64
}

// connect dials, reads the status message and, when flags are given, sends
// them and reads the server's answer.
func connect(t testing.TB, srv *httptest.Server, o dialOpts) *testClient {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, o.query), o.header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %q: %v (HTTP %d)", o.query, err, status)
	}
	t.Cleanup(func() { conn.Close() })
	if o.readLimit > 0 {
		conn.SetReadLimit(o.readLimit)
	}
	c := &testClient{t: t, conn: conn}
	var st struct {
		Type string              `json:"type"`
		Data protocol.StatusData `json:"data"`
	}
	c.readJSON(&st)
	if st.Type != protocol.TypeStatus || st.Data.SID == "" {
		t.Fatalf("first message: got type %q sid %q, want status with a sid", st.Type, st.Data.SID)
	}
	c.sid = st.Data.SID
	if o.flags != nil {
		c.sendFlags(o.flags)
		if typ, _ := c.readRaw(); typ != protocol.TypeFeatureFlags {
			t.Fatalf("answer to feature_flags: got type %q", typ)
		}
	}
	return c
}

func (c *testClient) sendFlags(flags protocol.FeatureFlags) {
	c.t.Helper()
	if err := c.conn.WriteJSON(protocol.Message{Type: protocol.TypeFeatureFlags, Data: flags}); err != nil {
		c.t.Fatalf("send feature_flags: %v", err)
	}
}

// read returns the next message.
func (c *testClient) read() (int, []byte) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(safetyTimeout))
	kind, data, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("client %s: read: %v", c.sid, err)
	}
	return kind, data
}

func (c *testClient) readJSON(v any) {
	c.t.Helper()
	kind, data := c.read()
	if kind != websocket.TextMessage {
		c.t.Fatalf("client %s: got binary message of %d bytes, want JSON", c.sid, len(data))
	}
	if err := json.Unmarshal(data, v); err != nil {
		c.t.Fatalf("client %s: %v in %.200s", c.sid, err, data)
	}
}

// readRaw returns the type and data of the next JSON message.
func (c *testClient) readRaw() (string, json.RawMessage) {
	c.t.Helper()
	var m protocol.RawMessage
	c.readJSON(&m)
	return m.Type, m.Data
}

// expectMarker reads the next message and checks that it is a marker event
// carrying want; markers show that nothing else was queued before them.
func (c *testClient) expectMarker(want string) {
	c.t.Helper()
	typ, data := c.readRaw()
	var got string
	json.Unmarshal(data, &got)
	if typ != "marker" || got != want {
		c.t.Fatalf("client %s: got %q %.100s, want marker %q", c.sid, typ, data, want)
	}
}

// receivedImage is an image as one client reassembled it.
type receivedImage struct {
	data     []byte
	messages int
	largest  int // largest message, in bytes
}

// readImage reads one image in the given shape; see readImageErr.
func (c *testClient) readImage(want shape) receivedImage {
	c.t.Helper()
	r, err := c.readImageErr(want)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// readImageErr reads the messages of one image in the given shape and
// reassembles it, checking every header against the image's sha256. It may
// run in its own goroutine.
func (c *testClient) readImageErr(want shape) (receivedImage, error) {
	var (
		r        receivedImage
		buf      []byte
		seen     = map[int]bool{}
		parts    = -1
		checksum string
	)
	fail := func(format string, args ...any) (receivedImage, error) {
		return r, fmt.Errorf("client %s: %s", c.sid, fmt.Sprintf(format, args...))
	}
	for parts < 0 || len(seen) < parts {
		c.conn.SetReadDeadline(time.Now().Add(safetyTimeout))
		kind, msg, err := c.conn.ReadMessage()
		if err != nil {
			return fail("read: %v", err)
		}
		r.messages++
		r.largest = max(r.largest, len(msg))
		var h protocol.PartHeader
		var data []byte
		switch {
		case want == shapeWhole && kind == websocket.BinaryMessage:
			_, img, err := protocol.ParseImageFrame(msg)
			r.data = img
			return r, err
		case want == shapePART && kind == websocket.BinaryMessage:
			if h, data, err = protocol.ParsePartFrame(msg); err != nil {
				return r, err
			}
		case want == shapeBase64 && kind == websocket.TextMessage:
			typ, body, err := splitEnvelope(msg)
			if err != nil {
				return fail("%v in %.100s", err, msg)
			}
			p, err := protocol.ParseB64Part(typ, body)
			if err != nil {
				return r, err
			}
			h, data = p.PartHeader, p.Data
		default:
			return fail("got message kind %d %.100q, want %v", kind, msg, want)
		}
		if parts < 0 {
			parts, checksum, buf = h.Parts, h.SHA256, make([]byte, h.Size)
		}
		if h.Parts != parts || h.SHA256 != checksum || seen[h.Part] {
			return fail("inconsistent part %+v", h)
		}
		seen[h.Part] = true
		copy(buf[h.Offset:], data)
	}
	if sum := sha256.Sum256(buf); hex.EncodeToString(sum[:]) != checksum {
		return fail("reassembled image does not match its sha256")
	}
	r.data = buf
	return r, nil
}

// splitEnvelope splits {"type":T,"data":D} as protocol.Marshal writes it,
// without scanning megabytes of base64 twice as json.Unmarshal would.
func splitEnvelope(msg []byte) (string, []byte, error) {
	const pre, mid = `{"type":`, `,"data":`
	i := bytes.Index(msg, []byte(mid))
	if !bytes.HasPrefix(msg, []byte(pre)) || i < 0 || !bytes.HasSuffix(msg, []byte("}")) {
		return "", nil, fmt.Errorf("not a {type,data} message")
	}
	var typ string
	if err := json.Unmarshal(msg[len(pre):i], &typ); err != nil {
		return "", nil, err
	}
	return typ, msg[i+len(mid) : len(msg)-1], nil
}

var (
	pngOnce            sync.Once
	bigPNG, mediumPNGb []byte
)

func makePNGs() {
	noise := func(w, h int) []byte {
		m := image.NewNRGBA(image.Rect(0, 0, w, h))
		rand.NewChaCha8([32]byte{1, 2}).Read(m.Pix)
		var b bytes.Buffer
		if err := (&png.Encoder{CompressionLevel: png.NoCompression}).Encode(&b, m); err != nil {
			panic(err)
		}
		return b.Bytes()
	}
	bigPNG = noise(1100, 1000)
	mediumPNGb = noise(100, 100)
}

// testPNG returns a noisy, uncompressed PNG larger than the 4 MiB message limit.
func testPNG(t testing.TB) []byte {
	pngOnce.Do(makePNGs)
	if len(bigPNG) < protocol.DefaultMessageLimit {
		t.Fatalf("test PNG is %d bytes, want more than %d", len(bigPNG), protocol.DefaultMessageLimit)
	}
	return bigPNG
}

// mediumPNG returns a noisy PNG of about 40 KB.
func mediumPNG(t testing.TB) []byte {
	pngOnce.Do(makePNGs)
	return mediumPNGb
}

// smallPNG returns a tiny PNG.
func smallPNG(t testing.TB) []byte {
	m := image.NewNRGBA(image.Rect(0, 0, 4, 3))
	m.Set(1, 1, color.NRGBA{R: 200, A: 255})
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// checkPNG checks that got is byte-identical to want and decodes.
func checkPNG(t testing.TB, who string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: image differs: %d bytes, want %d", who, len(got), len(want))
	}
	if _, err := png.Decode(bytes.NewReader(got)); err != nil {
		t.Fatalf("%s: decode: %v", who, err)
	}
}

// split cuts an image into parts of at most chunk bytes, as a sender does.
func split(img []byte, chunk int, wire protocol.Wire, imageID string) []*protocol.ImagePart {
	sum := sha256.Sum256(img)
	n := max(1, (len(img)+chunk-1)/chunk)
	parts := make([]*protocol.ImagePart, n)
	for i := range parts {
		lo, hi := i*chunk, min(len(img), (i+1)*chunk)
		parts[i] = &protocol.ImagePart{
			PartHeader: protocol.PartHeader{
				Event: "images", PromptID: "prompt-1", Node: "9", ImageID: imageID,
				Index: 0, Batch: 1, Part: i, Parts: n, Offset: int64(lo), Size: int64(len(img)),
				MIME: "image/png", SHA256: hex.EncodeToString(sum[:]),
			},
			Label: "9", Wire: wire, Data: img[lo:hi],
		}
	}
	return parts
}

func publishAll(t testing.TB, h *Hub, clientID string, parts []*protocol.ImagePart) {
	t.Helper()
	for _, p := range parts {
		if err := h.Publish(clientID, p); err != nil {
			t.Fatalf("publish part %d: %v", p.Part, err)
		}
	}
}
