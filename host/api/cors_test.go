package api_test

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/nodecast/nodecast/host/api"
	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/host/hub"
)

// corsHeaders are the headers ComfyUI's create_cors_middleware (server.py)
// sets on every answer under --enable-cors-header ORIGIN.
func corsHeaders(origin string) map[string]string {
	return map[string]string{
		"Access-Control-Allow-Origin":      origin,
		"Access-Control-Allow-Methods":     "POST, GET, DELETE, PUT, OPTIONS, PATCH",
		"Access-Control-Allow-Headers":     "Content-Type, Authorization",
		"Access-Control-Allow-Credentials": "true",
	}
}

// corsEnv serves the API with a real hub at /ws, under cors ("" = off).
func corsEnv(t *testing.T, cors string) *env {
	t.Helper()
	h := hub.New(hub.Options{CORSOrigin: cors, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { h.Close() })
	return newEnv(t, api.Options{CORSOrigin: cors, WS: h}, executor.Options{})
}

// send makes a real request over 127.0.0.1 with browser headers.
func (e *env) send(t *testing.T, method, path string, header map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// preflight is what a browser sends before a cross-origin POST of JSON.
func preflight(origin string) map[string]string {
	return map[string]string{
		"Origin":                         origin,
		"Access-Control-Request-Method":  "POST",
		"Access-Control-Request-Headers": "content-type",
		"Sec-Fetch-Site":                 "cross-site",
		"Sec-Fetch-Mode":                 "cors",
	}
}

func checkCORS(t *testing.T, resp *http.Response, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
}

// TestCORSEnabled: with --enable-cors-header, ComfyUI's cors middleware
// answers every OPTIONS (preflight) with 200, an empty body and the four
// headers, and puts the headers on every other answer; no request is
// refused for its origin. With one origin, nodecast's own CSRF guard of
// POSTs accepts that origin and still refuses others.
func TestCORSEnabled(t *testing.T) {
	const app = "https://app.example:5173"
	for _, cors := range []string{"*", app} {
		t.Run(cors, func(t *testing.T) {
			e := corsEnv(t, cors)
			for _, path := range []string{"/prompt", "/api/prompt", "/upload/image", "/queue", "/nowhere", "/ws"} {
				resp, body := e.send(t, http.MethodOptions, path, preflight(app), "")
				if resp.StatusCode != 200 || body != "" {
					t.Errorf("preflight %s: %d %q, want 200 and no body", path, resp.StatusCode, body)
				}
				checkCORS(t, resp, corsHeaders(cors))
			}
			browser := map[string]string{"Origin": app, "Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}
			resp, body := e.send(t, http.MethodGet, "/queue", browser, "")
			if resp.StatusCode != 200 || !strings.Contains(body, "queue_running") {
				t.Errorf("GET /queue cross-site: %d %s", resp.StatusCode, body)
			}
			checkCORS(t, resp, corsHeaders(cors))
			resp, body = e.send(t, http.MethodPost, "/prompt", browser, `{"prompt":{"1":{"class_type":"Nope","inputs":{}}}}`)
			if resp.StatusCode != 400 || !strings.Contains(body, "node_errors") { // reached the route: the class is unknown
				t.Errorf("POST /prompt cross-site: %d %s, want the route's 400", resp.StatusCode, body)
			}
			checkCORS(t, resp, corsHeaders(cors))

			// Another origin: ComfyUI lets it through; nodecast's CSRF guard
			// follows the configured origin.
			other := map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}
			resp, body = e.send(t, http.MethodPost, "/interrupt", other, `{}`)
			if cors == "*" && resp.StatusCode != 200 {
				t.Errorf("POST /interrupt from another origin under *: %d %s", resp.StatusCode, body)
			}
			if cors == app && (resp.StatusCode != 403 || !strings.Contains(body, "cross_site_request")) {
				t.Errorf("POST /interrupt from another origin under %s: %d %s, want 403 cross_site_request", app, resp.StatusCode, body)
			}

			// The WebSocket accepts the configured origin (any under *).
			ws := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/ws?clientId=cors"
			conn, resp, err := websocket.DefaultDialer.Dial(ws, http.Header{"Origin": {app}})
			if err != nil {
				t.Fatalf("dial with Origin %s: %v (%v)", app, err, resp)
			}
			var st map[string]any
			if err := conn.ReadJSON(&st); err != nil || st["type"] != "status" {
				t.Errorf("first message %v %v, want status", st, err)
			}
			conn.Close()
			_, resp, err = websocket.DefaultDialer.Dial(ws, http.Header{"Origin": {"https://evil.example"}})
			if cors == "*" && err != nil {
				t.Errorf("dial from another origin under *: %v", err)
			}
			if cors == app && (err == nil || resp == nil || resp.StatusCode != 403) {
				t.Errorf("dial from another origin under %s: %v, want 403", app, err)
			}
		})
	}
}

// TestCrossSiteRefused: without --enable-cors-header, ComfyUI's
// create_origin_only_middleware (middleware/origin_middleware.py) answers
// 403 to every request with Sec-Fetch-Site: cross-site, and OPTIONS with 200
// and no Access-Control headers; same-origin and header-less requests pass.
func TestCrossSiteRefused(t *testing.T) {
	e := corsEnv(t, "")
	for _, tc := range []struct{ method, path string }{
		{"GET", "/queue"}, {"GET", "/api/system_stats"}, {"POST", "/prompt"}, {"POST", "/upload/mask"},
		{"GET", "/models"}, {"GET", "/ws"}, {"OPTIONS", "/prompt"}, {"GET", "/"},
	} {
		resp, body := e.send(t, tc.method, tc.path, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, "")
		if resp.StatusCode != 403 || !strings.Contains(body, "cross_site_request") || !strings.Contains(body, "Sec-Fetch-Site") {
			t.Errorf("%s %s cross-site: %d %s, want 403", tc.method, tc.path, resp.StatusCode, body)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s %s: Access-Control-Allow-Origin without --enable-cors-header", tc.method, tc.path)
		}
	}
	for _, site := range []string{"same-origin", "none", ""} {
		resp, body := e.send(t, "GET", "/queue", map[string]string{"Sec-Fetch-Site": site}, "")
		if resp.StatusCode != 200 {
			t.Errorf("Sec-Fetch-Site %q: %d %s", site, resp.StatusCode, body)
		}
	}
	resp, body := e.send(t, "OPTIONS", "/prompt", nil, "")
	if resp.StatusCode != 200 || body != "" || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("OPTIONS without CORS: %d %q %v, want 200, empty, no CORS headers", resp.StatusCode, body, resp.Header)
	}
	// The WebSocket from a foreign origin is refused, as before.
	ws := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/ws"
	if _, resp, err := websocket.DefaultDialer.Dial(ws, http.Header{"Origin": {"https://app.example"}}); err == nil || resp == nil || resp.StatusCode != 403 {
		t.Errorf("dial from a foreign origin without CORS: %v, want 403", err)
	}
}
