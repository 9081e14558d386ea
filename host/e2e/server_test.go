package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/host/internal/hosttest"
	"github.com/nodecast/nodecast/host/internal/logbuf"
)

// serveOptions are the host.Options that `nodecast serve --plugins P
// --input-dir I` builds from cfg (host.ConfigOptions, as the command does),
// both folders in t.TempDir().
func serveOptions(t *testing.T, cfg *config.Config) host.Options {
	t.Helper()
	opts := host.ConfigOptions(cfg)
	opts.PluginDir = t.TempDir() // an empty plugin folder
	opts.InputDir = t.TempDir()
	opts.OutputDir, opts.TempDir = t.TempDir(), t.TempDir()
	return opts
}

// server is a running host behind an httptest server on 127.0.0.1.
type server struct {
	Host     *host.Host
	URL      string
	InputDir string
}

// startBuiltServer starts a host as `nodecast serve` would with cfg
// (serveOptions), its built-in pack served by the built nodecast binary
// without -race, as a user runs it.
func startBuiltServer(t *testing.T, cfg *config.Config) *server {
	t.Helper()
	opts := serveOptions(t, cfg)
	opts.Packs[0] = hosttest.BuiltinPack(t)
	return startServer(t, opts)
}

// startServer starts a host with opts and serves its handler. The host's
// log is printed only when the test fails.
func startServer(t *testing.T, opts host.Options) *server {
	t.Helper()
	logs := &logbuf.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("host log:\n%s", logs.String())
		}
	})
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := host.New(ctx, opts)
	if err != nil {
		t.Fatalf("host.New: %v", err)
	}
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(func() {
		srv.CloseClientConnections()
		h.Close()
		srv.Close()
	})
	return &server{Host: h, URL: srv.URL, InputDir: opts.InputDir}
}

var httpClient = &http.Client{Timeout: 2 * time.Minute}

// upload posts data to /upload/image as ComfyUI clients do and returns the
// HTTP status and the decoded answer.
func upload(t *testing.T, s *server, name string, data []byte) (int, map[string]any) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("image", name)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	mw.WriteField("type", "input")
	mw.WriteField("overwrite", "true")
	mw.Close()
	resp, err := httpClient.Post(s.URL+"/upload/image", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatalf("POST /upload/image: %v", err)
	}
	return readAnswer(t, resp)
}

// mustUpload uploads data and returns the name the server stored it under.
func mustUpload(t *testing.T, s *server, name string, data []byte) string {
	t.Helper()
	status, ans := upload(t, s, name, data)
	if status != http.StatusOK {
		t.Fatalf("POST /upload/image: %d %v", status, ans)
	}
	stored, _ := ans["name"].(string)
	if stored == "" || ans["type"] != "input" {
		t.Fatalf("POST /upload/image answered %v", ans)
	}
	return stored
}

// post sends body (a string is sent as is, anything else as JSON) to path
// and returns the status and the decoded JSON answer (nil when empty).
func post(t *testing.T, s *server, path string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if str, ok := body.(string); ok {
		r = strings.NewReader(str)
	} else {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	resp, err := httpClient.Post(s.URL+path, "application/json", r)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return readAnswer(t, resp)
}

func readAnswer(t *testing.T, resp *http.Response) (int, map[string]any) {
	t.Helper()
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return resp.StatusCode, nil
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // the answer may echo numbers float64 cannot hold
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v: %q", resp.StatusCode, err, raw)
	}
	return resp.StatusCode, m
}

// queuePrompt posts a prompt for clientID and returns its prompt_id.
func queuePrompt(t *testing.T, s *server, prompt map[string]any, clientID string) string {
	t.Helper()
	return queue(t, s, map[string]any{"prompt": prompt, "client_id": clientID})
}

// queue posts a /prompt body that must be accepted and returns its prompt_id.
func queue(t *testing.T, s *server, body map[string]any) string {
	t.Helper()
	status, ans := post(t, s, "/prompt", body)
	if status != http.StatusOK {
		t.Fatalf("POST /prompt: %d %v", status, ans)
	}
	id, _ := ans["prompt_id"].(string)
	if id == "" {
		t.Fatalf("POST /prompt answered %v", ans)
	}
	if ne, ok := ans["node_errors"].(map[string]any); !ok || len(ne) != 0 {
		t.Fatalf("POST /prompt: node_errors %v", ans["node_errors"])
	}
	return id
}

// pipeline is LoadImage(image) → RepeatImageBatch(amount) → sender(inputs).
func pipeline(image string, amount int, sender string, inputs map[string]any) map[string]any {
	in := map[string]any{"images": []any{"2", 0}}
	for k, v := range inputs {
		in[k] = v
	}
	return map[string]any{
		"1": map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": image}},
		"2": map[string]any{"class_type": "RepeatImageBatch", "inputs": map[string]any{"image": []any{"1", 0}, "amount": amount}},
		"3": map[string]any{"class_type": sender, "inputs": in},
	}
}
