package host_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/protocol"
)

// The attacks of issue 6, each reproduced at a size CI holds against a host
// whose built-in pack runs as a real subprocess, served on 127.0.0.1.

// loopbackHost starts a host that, like `nodecast serve`, knows it listens
// on loopback.
func loopbackHost(t *testing.T, opts host.Options) (*host.Host, *httptest.Server) {
	t.Helper()
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	return startHost(t, opts)
}

// request sends one request with the given headers ("Host" sets the Host)
// and returns the status and the body.
func request(t *testing.T, srv *httptest.Server, method, path string, headers map[string]string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// errorOf decodes ComfyUI's {"error":{type,message,...}} answer.
func errorOf(t *testing.T, raw []byte) executor.ErrorDetail {
	t.Helper()
	var v executor.ValidationError
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("answer %q is not ComfyUI's error shape: %v", raw, err)
	}
	return v.Detail
}

const tinyPrompt = `{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1}},
  "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0], "event": "sec.test"}}}}`

// uploadBody is a multipart body with one small PNG in "image".
func uploadBody(t *testing.T, name string, data []byte, fields map[string]string) (string, *bytes.Buffer) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	fw, err := mw.CreateFormFile("image", name)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(data)
	_ = mw.Close()
	return mw.FormDataContentType(), &b
}

// Item 1: a page in a sandboxed frame (Origin: null) or on another site
// posts a text/plain or form body, which browsers send without asking.
func TestCSRFOriginNullRefused(t *testing.T) {
	_, srv := loopbackHost(t, host.Options{})
	png8 := encodePNG(t, 8, 8)
	for _, route := range []struct {
		path  string
		ctype string
		body  func() io.Reader
	}{
		{"/prompt", "text/plain", func() io.Reader { return strings.NewReader(tinyPrompt) }},
		{"/api/prompt", "application/x-www-form-urlencoded", func() io.Reader { return strings.NewReader(tinyPrompt) }},
		{"/queue", "text/plain", func() io.Reader { return strings.NewReader(`{"clear": true}`) }},
		{"/interrupt", "text/plain", func() io.Reader { return strings.NewReader(`{}`) }},
		{"/history", "application/x-www-form-urlencoded", func() io.Reader { return strings.NewReader(`{"clear": true}`) }},
		{"/upload/image", "", nil},
	} {
		for _, origin := range []struct{ origin, site string }{
			{"null", ""},
			{"null", "cross-site"},
			{"https://evil.example", ""},
			{"https://evil.example", "cross-site"},
		} {
			t.Run(route.path+" from "+origin.origin+" "+origin.site, func(t *testing.T) {
				ctype, body := route.ctype, io.Reader(nil)
				if route.body != nil {
					body = route.body()
				} else {
					var b *bytes.Buffer
					ctype, b = uploadBody(t, "csrf.png", png8, nil)
					body = b
				}
				h := map[string]string{"Origin": origin.origin, "Content-Type": ctype}
				if origin.site != "" {
					h["Sec-Fetch-Site"] = origin.site
				}
				code, raw := request(t, srv, "POST", route.path, h, body)
				if code != http.StatusForbidden {
					t.Fatalf("status %d (%s), want 403", code, raw)
				}
				e := errorOf(t, raw)
				if e.Type != "cross_site_request" || !strings.Contains(e.Message, strconv.Quote(origin.origin)) ||
					!strings.Contains(e.Message, "websocket.allowed_origins") {
					t.Errorf("error %+v does not name the origin and the setting", e)
				}
			})
		}
	}
	// Non-browser clients (ComfyUI's scripts send no Origin, and urllib a
	// form content type) and the host's own page keep working.
	for _, h := range []map[string]string{
		{"Content-Type": "application/x-www-form-urlencoded"},
		{"Content-Type": "application/json", "Origin": srv.URL, "Sec-Fetch-Site": "same-origin"},
	} {
		if code, raw := request(t, srv, "POST", "/prompt", h, strings.NewReader(tinyPrompt)); code != 200 {
			t.Errorf("POST /prompt with %v: %d %s", h, code, raw)
		}
	}
}

// Item 2: a page whose name rebinds to 127.0.0.1 sends its own name as Host
// and as Origin: same-origin to the browser, refused by the host on every
// route, the WebSocket included.
func TestDNSRebindingRefused(t *testing.T) {
	_, srv := loopbackHost(t, host.Options{})
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	evil := fmt.Sprintf("evil.example:%d", port)
	hdr := map[string]string{"Host": evil, "Origin": "http://" + evil, "Content-Type": "application/json"}
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/prompt", tinyPrompt},
		{"GET", "/view?filename=x.png&type=input", ""},
		{"GET", "/history", ""},
		{"GET", "/api/object_info", ""},
		{"GET", "/metrics", ""},
		{"GET", "/no/such/route", ""},
		{"GET", "/ws?clientId=evil", ""},
	} {
		code, raw := request(t, srv, r.method, r.path, hdr, strings.NewReader(r.body))
		if code != http.StatusForbidden {
			t.Errorf("%s %s with Host %s: %d %s, want 403", r.method, r.path, evil, code, raw)
			continue
		}
		if e := errorOf(t, raw); e.Type != "host_not_allowed" || !strings.Contains(e.Message, strconv.Quote(evil)) ||
			!strings.Contains(e.Message, "websocket.allowed_hosts") {
			t.Errorf("%s %s: error %+v", r.method, r.path, e)
		}
	}
	// A real WebSocket handshake with that Host is refused before the hub.
	u := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws?clientId=evil"
	_, resp, err := websocket.DefaultDialer.Dial(u, http.Header{"Host": {evil}, "Origin": {"http://" + evil}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("websocket with Host %s: err %v, response %v", evil, err, resp)
	}
	// Loopback names, with any port, are served.
	for _, name := range []string{fmt.Sprintf("localhost:%d", port), fmt.Sprintf("[::1]:%d", port), "127.0.0.1"} {
		if code, raw := request(t, srv, "GET", "/history", map[string]string{"Host": name}, nil); code != 200 {
			t.Errorf("Host %s: %d %s", name, code, raw)
		}
	}
}

// Item 2, exposed on purpose: websocket.allowed_hosts names the host.
func TestAllowedHostsExposeTheHost(t *testing.T) {
	_, srv := loopbackHost(t, host.Options{})
	_ = srv
	opts := host.Options{Listen: "127.0.0.1:0"}
	opts.Hub.AllowedHosts = []string{"studio.example"}
	_, srv2 := startHost(t, opts)
	port := srv2.Listener.Addr().(*net.TCPAddr).Port
	for name, want := range map[string]int{
		fmt.Sprintf("studio.example:%d", port): 200,
		fmt.Sprintf("localhost:%d", port):      403, // the list replaces the loopback rule
		"evil.example":                         403,
	} {
		if code, raw := request(t, srv2, "GET", "/history", map[string]string{"Host": name}, nil); code != want {
			t.Errorf("Host %s: %d %s, want %d", name, code, raw, want)
		}
	}
}

// rawPost writes a request with a chunked body of n bytes, all of it,
// before reading the answer: what Python's requests does. It returns the
// status line's code, or an error when the connection broke first.
func rawPost(t *testing.T, srv *httptest.Server, path, ctype string, head, fill []byte, n int) (int, string, error) {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w := bufio.NewWriterSize(conn, 64<<10)
	fmt.Fprintf(w, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n", path, srv.Listener.Addr(), ctype)
	chunk := func(b []byte) error {
		fmt.Fprintf(w, "%x\r\n", len(b))
		_, _ = w.Write(b)
		_, err := w.WriteString("\r\n")
		return err
	}
	sent := 0
	if err := chunk(head); err != nil {
		return 0, "", err
	}
	sent += len(head)
	for sent < n {
		b := fill[:min(len(fill), n-sent)]
		if err := chunk(b); err != nil {
			return 0, "", err
		}
		sent += len(b)
	}
	_, _ = w.WriteString("0\r\n\r\n")
	if err := w.Flush(); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// Item 6: a chunked body over the limit gets a 413 the client can read,
// even a client that writes everything before it reads; uploads stream to
// disk with the limit enforced.
func TestOversizeChunkedBodiesGet413(t *testing.T) {
	const limit = 1 << 20
	_, srv := loopbackHost(t, host.Options{MaxBodyBytes: limit})
	fill := bytes.Repeat([]byte("A"), 64<<10)
	for _, tc := range []struct{ path, ctype string }{
		{"/prompt", "application/json"},
		{"/upload/image", "multipart/form-data; boundary=XXX"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			head := []byte(`{"prompt": {}, "pad": "`)
			if strings.HasPrefix(tc.ctype, "multipart") {
				head = []byte("--XXX\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.png\"\r\nContent-Type: image/png\r\n\r\n")
			}
			code, body, err := rawPost(t, srv, tc.path, tc.ctype, head, fill, 48*limit)
			if err != nil {
				t.Fatalf("connection broke before the answer: %v", err)
			}
			if code != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d (%s), want 413", code, body)
			}
			if e := errorOf(t, []byte(body)); e.Type != "request_too_large" || !strings.Contains(e.Message, strconv.Itoa(limit)) {
				t.Errorf("error %+v does not name the limit", e)
			}
		})
	}
}

// Item 8: uploads of type temp land in this host's own temp folder, which
// no other host shares, and are served from there.
func TestTempUploadsInTheHostsOwnFolder(t *testing.T) {
	_, a := loopbackHost(t, host.Options{})
	_, b := loopbackHost(t, host.Options{})
	name := fmt.Sprintf("own-temp-%d.png", time.Now().UnixNano())
	ctype, body := uploadBody(t, name, encodePNG(t, 8, 8), map[string]string{"type": "temp"})
	if code, raw := request(t, a, "POST", "/upload/image", map[string]string{"Content-Type": ctype}, body); code != 200 {
		t.Fatalf("upload: %d %s", code, raw)
	}
	q := "/view?" + url.Values{"filename": {name}, "type": {"temp"}}.Encode()
	if code, raw := request(t, a, "GET", q, nil, nil); code != 200 || !bytes.HasPrefix(raw, []byte("\x89PNG")) {
		t.Errorf("view on the host that stored it: %d", code)
	}
	if code, _ := request(t, b, "GET", q, nil, nil); code != 404 {
		t.Errorf("another host serves the first one's temp file: %d", code)
	}
	if _, err := os.Stat("/tmp/nodecast/" + name); err == nil {
		t.Errorf("temp upload went to the shared /tmp/nodecast")
	}
}

// waitPrompt posts a prompt and waits for its history entry.
func waitPrompt(t *testing.T, h *host.Host, srv *httptest.Server, body string) (string, executor.HistoryEntry) {
	t.Helper()
	code, raw := request(t, srv, "POST", "/prompt", map[string]string{"Content-Type": "application/json"}, strings.NewReader(body))
	if code != 200 {
		t.Fatalf("POST /prompt: %d %s", code, raw)
	}
	var acc executor.Accepted
	if err := json.Unmarshal(raw, &acc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	entry, err := h.Executor().Wait(ctx, acc.PromptID)
	if err != nil {
		t.Fatal(err)
	}
	return acc.PromptID, entry
}

// executionError returns the execution_error of a finished prompt's history.
func executionError(t *testing.T, e executor.HistoryEntry) map[string]any {
	t.Helper()
	for _, m := range e.Status.Messages {
		if m.Type != "execution_error" {
			continue
		}
		b, err := json.Marshal(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	t.Fatalf("no execution_error in %+v", e.Status)
	return nil
}

// procStatusBytes reads a "VmRSS:   1234 kB" line of /proc/pid/status.
func procStatusBytes(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// encodePNG returns a w×h PNG of a smooth gradient.
func encodePNG(t *testing.T, w, h int) []byte {
	t.Helper()
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := m.PixOffset(x, y)
			m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = byte(x), byte(y), byte(x+y), 255
		}
	}
	var b bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// heapAllocs is the bytes this process allocated so far.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Item 6: a 40 MB upload streams to disk: the host allocates a small part
// of it while storing it, and the stored file is whole.
func TestUploadStreamsToDisk(t *testing.T) {
	opts := host.Options{MaxBodyBytes: 64 << 20, InputDir: t.TempDir()}
	_, srv := loopbackHost(t, opts)
	data := paddedPNG(t, 8, 8, 40_000_000)
	ctype, body := uploadBody(t, "big.png", data, nil)
	raw := body.Bytes()
	before := heapAllocs()
	code, answer := request(t, srv, "POST", "/upload/image", map[string]string{"Content-Type": ctype}, bytes.NewReader(raw))
	allocated := heapAllocs() - before
	if code != 200 {
		t.Fatalf("upload: %d %s", code, answer)
	}
	stored, err := os.ReadFile(filepath.Join(opts.InputDir, "big.png"))
	if err != nil || !bytes.Equal(stored, data) {
		t.Fatalf("stored file differs (%v)", err)
	}
	if allocated > 8<<20 {
		t.Errorf("a %d MB upload allocated %d MiB: held in memory, not streamed", len(data)/1e6, allocated>>20)
	}
	t.Logf("upload of %d bytes: %d KiB allocated", len(data), allocated>>10)
}

// Item 8: /object_info advertises the limits a run accepts: width and height
// at most the largest side, with the pixel bound, and a prompt over the
// pixel bound is refused before it runs.
func TestObjectInfoMatchesRunLimits(t *testing.T) {
	for _, tc := range []struct {
		limits         protocol.ImageLimits
		side, pixels   float64
		refuse, accept [2]int
		refusedWhat    string
	}{
		{protocol.ImageLimits{}, 16384, 89_478_485, [2]int{16384, 16384}, [2]int{16384, 8}, "image pixels"},
		{protocol.ImageLimits{MaxSide: 4096, MaxPixels: 4_000_000}, 4096, 4_000_000, [2]int{2048, 2048}, [2]int{4096, 512}, "image pixels"},
	} {
		h, srv := loopbackHost(t, host.Options{ImageLimits: tc.limits})
		_, raw := request(t, srv, "GET", "/object_info/EmptyImage", nil, nil)
		var info map[string]struct {
			Input struct {
				Required map[string][]any `json:"required"`
			} `json:"input"`
		}
		if err := json.Unmarshal(raw, &info); err != nil {
			t.Fatal(err)
		}
		for _, in := range []string{"width", "height"} {
			opts, _ := info["EmptyImage"].Input.Required[in][1].(map[string]any)
			if opts["max"] != tc.side || opts["max_pixels"] != tc.pixels {
				t.Errorf("limits %+v: %s advertised as %v", tc.limits, in, opts)
			}
		}
		prompt := func(wh [2]int) string {
			return fmt.Sprintf(`{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": %d, "height": %d, "batch_size": 1}},
  "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0], "event": "limits.test"}}}}`, wh[0], wh[1])
		}
		code, raw := request(t, srv, "POST", "/prompt", map[string]string{"Content-Type": "application/json"}, strings.NewReader(prompt(tc.refuse)))
		if code != 400 || !strings.Contains(string(raw), "value_bigger_than_max") || !strings.Contains(string(raw), tc.refusedWhat) {
			t.Errorf("limits %+v: %v refused with %d %s", tc.limits, tc.refuse, code, raw)
		}
		if _, e := waitPrompt(t, h, srv, prompt(tc.accept)); e.Status.StatusStr != "success" {
			t.Errorf("limits %+v: %v advertised as accepted but failed: %+v", tc.limits, tc.accept, e.Status.Messages)
		}
	}
}

// Item 6: a chunked prompt refused at the body limit costs the host about
// the limit in memory, not the two to three times that a buffer grown by
// doubling costs.
func TestOversizeChunkedPromptCostsTheLimit(t *testing.T) {
	const limit = 16 << 20
	_, srv := loopbackHost(t, host.Options{MaxBodyBytes: limit})
	fill := bytes.Repeat([]byte("A"), 64<<10)
	before := heapAllocs()
	code, body, err := rawPost(t, srv, "/prompt", "application/json", []byte(`{"prompt": {}, "pad": "`), fill, 3*limit)
	allocated := heapAllocs() - before
	if err != nil || code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d (%s), err %v; want 413", code, body, err)
	}
	if allocated > limit+limit/2 {
		t.Errorf("refusing a %d MiB chunked body at the %d MiB limit allocated %d MiB", 3*limit>>20, limit>>20, allocated>>20)
	}
	t.Logf("%d MiB allocated", allocated>>20)
}
