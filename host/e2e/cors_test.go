package e2e_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/nodecast/nodecast/host/config"
)

// TestCORSHost: a host started with CORSOrigin (what --enable-cors-header
// sets) answers a real preflight over 127.0.0.1 as ComfyUI's
// create_cors_middleware (server.py), accepts a cross-site POST and a
// WebSocket from that origin; a host without it refuses them with 403, as
// ComfyUI's create_origin_only_middleware.
func TestCORSHost(t *testing.T) {
	const app = "http://localhost:5173"
	opts := serveOptions(t, config.Default())
	opts.CORSOrigin = app
	s := startServer(t, opts)
	plain := startServer(t, serveOptions(t, config.Default()))

	send := func(s *server, method, path string, h map[string]string, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	pre := map[string]string{"Origin": app, "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "content-type", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}
	resp, body := send(s, "OPTIONS", "/api/prompt", pre, "")
	want := map[string]string{"Access-Control-Allow-Origin": app, "Access-Control-Allow-Methods": "POST, GET, DELETE, PUT, OPTIONS, PATCH",
		"Access-Control-Allow-Headers": "Content-Type, Authorization", "Access-Control-Allow-Credentials": "true"}
	if resp.StatusCode != 200 || body != "" {
		t.Errorf("preflight: %d %q", resp.StatusCode, body)
	}
	for k, v := range want {
		if resp.Header.Get(k) != v {
			t.Errorf("preflight %s: %q, want %q", k, resp.Header.Get(k), v)
		}
	}
	prompt := `{"prompt":{"1":{"class_type":"EmptyImage","inputs":{"width":8,"height":8,"batch_size":1,"color":0}},"2":{"class_type":"PreviewImage","inputs":{"images":["1",0]}}}}`
	post := map[string]string{"Origin": app, "Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}
	resp, body = send(s, "POST", "/api/prompt", post, prompt)
	if resp.StatusCode != 200 || !strings.Contains(body, "prompt_id") || resp.Header.Get("Access-Control-Allow-Origin") != app {
		t.Errorf("cross-site POST under CORS: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	resp, body = send(plain, "POST", "/api/prompt", post, prompt)
	if resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("cross-site POST without CORS: %d %s", resp.StatusCode, body)
	}
	for name, srv := range map[string]*server{"cors": s, "plain": plain} {
		conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws?clientId=b",
			http.Header{"Origin": {app}})
		switch {
		case name == "cors" && err != nil:
			t.Errorf("WebSocket from %s under CORS: %v", app, err)
		case name == "plain" && (err == nil || resp == nil || resp.StatusCode != 403):
			t.Errorf("WebSocket from %s without CORS: %v, want 403", app, err)
		}
		if conn != nil {
			conn.Close()
		}
	}
}

// TestBrowserCrossOrigin: a page on http://localhost:P (another site than
// 127.0.0.1 for the browser) posts a prompt with fetch (a JSON body, so
// Chromium sends a real preflight), reads the answer, and opens the
// WebSocket, against a host started with CORSOrigin naming the page's
// origin; against a host without it Chromium's fetch fails.
func TestBrowserCrossOrigin(t *testing.T) {
	ctx, _ := startBrowser(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	page := fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
	psrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<!doctype html><title>app</title>")
	})}
	go psrv.Serve(ln)
	t.Cleanup(func() { psrv.Close() })

	opts := serveOptions(t, config.Default())
	opts.CORSOrigin = page
	s := startServer(t, opts)
	plain := startServer(t, serveOptions(t, config.Default()))

	script := func(base string) string {
		return fmt.Sprintf(`(async () => {
  const out = {};
  try {
    const r = await fetch(%[1]q + "/prompt", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({prompt: {"1": {class_type: "EmptyImage", inputs: {width: 8, height: 8, batch_size: 1, color: 0}},
        "2": {class_type: "PreviewImage", inputs: {images: ["1", 0]}}}, client_id: "browser"})});
    out.status = r.status;
    out.prompt_id = (await r.json()).prompt_id || "";
  } catch (e) { out.fetch_error = String(e); }
  out.ws = await new Promise((resolve) => {
    const ws = new WebSocket(%[1]q.replace("http", "ws") + "/ws?clientId=browser");
    ws.onmessage = (ev) => { resolve(JSON.parse(ev.data).type); ws.close(); };
    ws.onerror = () => resolve("error");
  });
  return out;
})()`, base)
	}
	run := func(base string) map[string]any {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(page+"/")); err != nil {
			t.Fatal(err)
		}
		out, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](script(base), chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := run(s.URL)
	if got["status"] != float64(200) || got["prompt_id"] == "" || got["ws"] != "status" {
		t.Errorf("under CORS: %v, want status 200, a prompt_id and the status message", got)
	}
	got = run(plain.URL)
	if got["fetch_error"] == nil || got["ws"] != "error" {
		t.Errorf("without CORS: %v, want a failed fetch and a refused WebSocket", got)
	}
}
