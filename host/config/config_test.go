package config_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/host/internal/executortest"
)

const portraitJSON = `{
  "1":  {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1}},
  "9":  {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0]}, "_meta": {"title": "Send final"}},
  "10": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0], "event": "own.event"}, "_meta": {"title": "Send preview"}},
  "11": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0]}}
}`

const goodConfig = `
listen: 127.0.0.1:9999
plugins: ./plugins.d
input_dir: ./input
message_limit: 1048576
max_body_bytes: 1000000
defaults: {encoder: webp, wire: comfy, event: host.default, part_size: 7}
workflows:
  portrait:
    file: workflows/portrait.json
    nodes:
      "9":            {event: portrait.final, encoder: png, wire: parts, part_size: 1048576}
      "Send preview": {event: portrait.preview, encoder: jpeg}
`

// writeConfig writes a config file and the portrait workflow into a new folder.
func writeConfig(t *testing.T, yamlText, workflowJSON string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "workflows"), 0o755); err != nil {
		t.Fatal(err)
	}
	if workflowJSON != "" {
		if err := os.WriteFile(filepath.Join(dir, "workflows", "portrait.json"), []byte(workflowJSON), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "nodecast.yaml")
	if err := os.WriteFile(path, []byte(yamlText), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoad(t *testing.T) {
	path := writeConfig(t, goodConfig, portraitJSON)
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(path)
	if c.Listen != "127.0.0.1:9999" || c.MessageLimit != 1048576 || c.MaxBodyBytes != 1000000 || c.File != path {
		t.Errorf("config %+v", c)
	}
	if c.Plugins != filepath.Join(dir, "plugins.d") || c.InputDir != filepath.Join(dir, "input") {
		t.Errorf("paths not resolved against the config's folder: %q %q", c.Plugins, c.InputDir)
	}
	w := c.Workflows["portrait"]
	if w == nil || w.File != filepath.Join(dir, "workflows", "portrait.json") || len(w.Prompt) != 4 {
		t.Fatalf("workflow %+v", w)
	}
	final := w.Nodes["9"]
	if final.Event != "portrait.final" || final.Wire != "parts" || final.PartSize == nil || *final.PartSize != 1048576 {
		t.Errorf("node 9 settings %+v", final)
	}
	if got := c.Defaults.Inputs(); len(got) != 4 || got["part_size"] != int64(7) || got["event"] != "host.default" {
		t.Errorf("default inputs %v", got)
	}
}

func TestDefault(t *testing.T) {
	c := config.Default()
	if c.Listen != "127.0.0.1:8188" || c.Plugins != "" || c.InputDir != "input" || c.MessageLimit != 4194304 || c.MaxBodyBytes != 536870912 {
		t.Errorf("default config %+v", c)
	}
	// No host defaults: every node's own declared defaults apply.
	if got := c.Defaults.Inputs(); len(got) != 0 {
		t.Errorf("default settings %v", got)
	}
	if len(c.Workflows) != 0 {
		t.Errorf("default workflows %v", c.Workflows)
	}
	// The embedded text parses on its own, strictly (Default and init panic otherwise).
	if _, err := config.Parse("default.yaml", config.DefaultYAML(), ""); err != nil {
		t.Fatal(err)
	}
}

func TestWebSocketSection(t *testing.T) {
	path := writeConfig(t, "websocket:\n  token: s3cret\n  allowed_origins: [\"https://app.example\", \"*\"]\n  allowed_hosts: [localhost, 127.0.0.1]\n  queue_bytes: 67108864\n", "")
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ws := c.WebSocket
	if ws.Token != "s3cret" || strings.Join(ws.AllowedOrigins, ",") != "https://app.example,*" ||
		strings.Join(ws.AllowedHosts, ",") != "localhost,127.0.0.1" || ws.QueueBytes != 64<<20 {
		t.Fatalf("websocket section %+v", ws)
	}
}

func TestSessionsSection(t *testing.T) {
	path := writeConfig(t, "websocket: {on_duplicate_client_id: refuse}\nsessions:\n  held_age: 90s\n  held_bytes: 1048576\n  window_age: 10m\n  window_bytes: 16777216\n  window_global_bytes: 33554432\n", "")
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Sessions{HeldAge: 90 * time.Second, HeldBytes: 1 << 20, WindowAge: 10 * time.Minute, WindowBytes: 16 << 20, WindowGlobalBytes: 32 << 20}
	if c.Sessions != want || c.WebSocket.OnDuplicateClientID != "refuse" {
		t.Fatalf("got %+v %q, want %+v refuse", c.Sessions, c.WebSocket.OnDuplicateClientID, want)
	}
}

func TestEmptyFile(t *testing.T) {
	for _, text := range []string{"", "# only a comment\n", "---\n"} {
		c, err := config.Parse("empty.yaml", []byte(text), "")
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if c.Listen != "" || len(c.Workflows) != 0 {
			t.Errorf("%q: %+v", text, c)
		}
	}
}

// TestPrecedence runs the configured workflow: a node's own input wins over
// its workflow entry (by id or title), which wins over the host defaults.
func TestPrecedence(t *testing.T) {
	c, err := config.Load(writeConfig(t, goodConfig, portraitJSON))
	if err != nil {
		t.Fatal(err)
	}
	e, err := executor.New(executor.Options{
		Runner:    executortest.NewRunner(),
		Workflows: map[string]executor.Workflow{"portrait": {Prompt: c.Workflows["portrait"].Prompt, Nodes: c.Workflows["portrait"].NodeInputs()}},
		Defaults:  c.Defaults.Inputs(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	acc, verr := e.Submit(ctx, executor.Request{Workflow: "portrait"})
	if verr != nil {
		t.Fatal(verr)
	}
	entry, err := e.Wait(ctx, acc.PromptID)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		node, event, encoder, wire string
		partSize                   int64
	}{
		{"9", "portrait.final", "png", "parts", 1048576}, // entry by id over defaults
		{"10", "own.event", "jpeg", "comfy", 7},          // own input > entry by title > defaults
		{"11", "host.default", "webp", "comfy", 7},       // defaults only
	}
	for _, tc := range tests {
		img := entry.Outputs[tc.node]["images"].([]any)[0].(map[string]any)
		if img["event"] != tc.event || img["encoder"] != tc.encoder || img["wire"] != tc.wire || img["part_size"] != tc.partSize {
			t.Errorf("node %s ran with %v, want %s %s %s %d", tc.node, img, tc.event, tc.encoder, tc.wire, tc.partSize)
		}
	}
	_, err = e.Submit(ctx, executor.Request{Workflow: "landscape"})
	if verr := (*executor.ValidationError)(nil); !errors.As(err, &verr) || verr.Detail.Type != executor.TypeUnknownWorkflow ||
		!strings.Contains(verr.Detail.Message, "landscape") || !strings.Contains(verr.Detail.Details, "portrait") {
		t.Errorf("unknown workflow: %v", err)
	}
}

func TestErrors(t *testing.T) {
	withNodes := func(nodes string) string {
		return "workflows:\n  portrait:\n    file: workflows/portrait.json\n    nodes:\n" + nodes
	}
	tests := []struct {
		name     string
		yaml     string
		workflow string // portrait.json's text; "" = no file
		key      string
		reason   string
		line     int // 0 = not checked
	}{
		{name: "bad YAML", yaml: "listen: [127.0.0.1\nplugins: x\n", reason: "bad YAML", line: 1},
		{name: "bad YAML indentation", yaml: "defaults:\n  event: a\n event: b\n", reason: "bad YAML"},
		{name: "unknown top key", yaml: "listen: x\nlisten_addr: y\n", key: "listen_addr", reason: `unknown key "listen_addr"`, line: 2},
		{name: "unknown settings key", yaml: withNodes(`      "9": {evnt: a.b}` + "\n"), workflow: portraitJSON, key: "workflows.portrait.nodes.9.evnt", reason: "unknown key"},
		{name: "unknown workflow key", yaml: "workflows:\n  portrait:\n    file: workflows/portrait.json\n    prompt: x\n", workflow: portraitJSON, key: "workflows.portrait.prompt", reason: "unknown key"},
		{name: "duplicate key", yaml: "listen: a\nlisten: b\n", key: "listen", reason: "duplicate key", line: 2},
		{name: "bad default event", yaml: "defaults: {event: status}\n", key: "defaults.event", reason: "ComfyUI message type", line: 1},
		{name: "bad event in a workflow", yaml: withNodes(`      "9": {event: "bad name"}` + "\n"), workflow: portraitJSON, key: "workflows.portrait.nodes.9.event", reason: "bad event name", line: 5},
		{name: "unknown wire", yaml: "defaults:\n  wire: smoke\n", key: "defaults.wire", reason: `unknown wire "smoke"`, line: 2},
		{name: "negative part size", yaml: withNodes(`      "Send final": {part_size: -1}` + "\n"), workflow: portraitJSON, key: "workflows.portrait.nodes.Send final.part_size", reason: "negative"},
		{name: "part size not a number", yaml: "defaults: {part_size: big}\n", key: "defaults.part_size", reason: "whole number"},
		{name: "message limit too small", yaml: "message_limit: 10\n", key: "message_limit", reason: "too small"},
		{name: "listen is a list", yaml: "listen: [a, b]\n", key: "listen", reason: "want a string"},
		{name: "workflow without file", yaml: "workflows:\n  portrait:\n    nodes: {}\n", key: "workflows.portrait.file", reason: "missing"},
		{name: "missing workflow file", yaml: withNodes(""), key: "workflows.portrait.file", reason: "cannot read workflow file"},
		{name: "invalid workflow JSON", yaml: withNodes(""), workflow: `{"1": `, key: "workflows.portrait.file", reason: "not valid JSON"},
		{name: "UI-format workflow", yaml: withNodes(""), workflow: `{"nodes": [], "links": []}`, key: "workflows.portrait.file", reason: "UI-format"},
		{name: "workflow node without class_type", yaml: withNodes(""), workflow: `{"1": {"inputs": {}}}`, key: "workflows.portrait.file", reason: "no class_type"},
		{name: "workflow is a list", yaml: withNodes(""), workflow: `[1, 2]`, key: "workflows.portrait.file", reason: "not a JSON object"},
		{name: "websocket origins not a list", yaml: "websocket:\n  allowed_origins: https://a.example\n", key: "websocket.allowed_origins", reason: "want a list of strings", line: 2},
		{name: "websocket empty host", yaml: "websocket:\n  allowed_hosts: [localhost, \"\"]\n", key: "websocket.allowed_hosts[1]", reason: "empty string"},
		{name: "websocket queue too small", yaml: "websocket: {queue_bytes: 4096}\n", key: "websocket.queue_bytes", reason: "too small"},
		{name: "websocket unknown key", yaml: "websocket: {tokn: x}\n", key: "websocket.tokn", reason: `unknown key "tokn"`},
		{name: "duplicate client id policy", yaml: "websocket: {on_duplicate_client_id: kick}\n", key: "websocket.on_duplicate_client_id", reason: "not replace or refuse"},
		{name: "sessions bad age", yaml: "sessions: {held_age: soon}\n", key: "sessions.held_age", reason: "duration"},
		{name: "sessions negative bytes", yaml: "sessions: {window_bytes: -1}\n", key: "sessions.window_bytes", reason: "negative"},
		{name: "sessions window too small", yaml: "sessions: {window_bytes: 1048576}\n", key: "sessions.window_bytes", reason: "too small"},
		{name: "sessions unknown key", yaml: "sessions: {window: 1}\n", key: "sessions.window", reason: "unknown key"},
		{name: "node key matches nothing", yaml: withNodes(`      "42": {event: a.b}` + "\n"), workflow: portraitJSON, key: "workflows.portrait.nodes.42", reason: "matches neither a node id nor a _meta.title", line: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.yaml, tc.workflow)
			_, err := config.Load(path)
			if err == nil {
				t.Fatal("accepted")
			}
			var ce *config.Error
			if !errors.As(err, &ce) || !errors.Is(err, config.ErrConfig) {
				t.Fatalf("%T %v is not a *config.Error", err, err)
			}
			if ce.File != path || ce.Key != tc.key || !strings.Contains(ce.Reason, tc.reason) {
				t.Errorf("got file %q key %q reason %q, want key %q reason containing %q", ce.File, ce.Key, ce.Reason, tc.key, tc.reason)
			}
			if tc.line != 0 && ce.Line != tc.line {
				t.Errorf("line %d, want %d", ce.Line, tc.line)
			}
			msg := err.Error()
			if !strings.Contains(msg, path) || !strings.Contains(msg, tc.key) || !strings.Contains(msg, ce.Reason) {
				t.Errorf("message %q does not name the file, key and reason", msg)
			}
		})
	}
	if _, err := config.Load(filepath.Join(t.TempDir(), "absent.yaml")); err == nil || !strings.Contains(err.Error(), "absent.yaml") {
		t.Errorf("missing config file: %v", err)
	}
}

func TestLimitsSection(t *testing.T) {
	text := "limits:\n  history_bytes: 67108864\n  history_value_bytes: 4096\n  prompt_tensor_bytes: 8589934592\n" +
		"  breaker_restarts: 5\n  breaker_window: 2m\n  breaker_cooldown: 30s\n"
	c, err := config.Parse("limits.yaml", []byte(text), "")
	if err != nil {
		t.Fatal(err)
	}
	want := config.Limits{HistoryBytes: 64 << 20, HistoryValueBytes: 4096, PromptTensorBytes: 8 << 30,
		BreakerRestarts: 5, BreakerWindow: 2 * time.Minute, BreakerCooldown: 30 * time.Second}
	if c.Limits != want {
		t.Fatalf("limits %+v, want %+v", c.Limits, want)
	}
	for _, tc := range []struct{ yaml, key, reason string }{
		{"limits: {history_bytes: 1000}\n", "limits.history_bytes", "too small"},
		{"limits: {prompt_tensor_bytes: -1}\n", "limits.prompt_tensor_bytes", "negative"},
		{"limits: {breaker_window: soon}\n", "limits.breaker_window", "want a duration"},
		{"limits: {breaker_cooldown: 3}\n", "limits.breaker_cooldown", "want a duration"},
		{"limits: {history_items: 3}\n", "limits.history_items", "unknown key"},
	} {
		_, err := config.Parse("bad.yaml", []byte(tc.yaml), "")
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(ce.Reason, tc.reason) {
			t.Errorf("%q: %v, want key %s: %s", tc.yaml, err, tc.key, tc.reason)
		}
	}
}

func TestCacheSection(t *testing.T) {
	c, err := config.Load(writeConfig(t, "cache:\n  bytes: 134217728\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cache.CacheBytes() != 128<<20 {
		t.Fatalf("cache %+v gives %d", c.Cache, c.Cache.CacheBytes())
	}
	if d := config.Default().Cache; d.ServeBytes() != config.DefaultCacheBytes || d.CacheBytes() != 0 {
		t.Fatalf("default cache: serve %d, embedded %d", d.ServeBytes(), d.CacheBytes())
	}
	c, err = config.Load(writeConfig(t, "cache: {bytes: 134217728, none: true}\n", ""))
	if err != nil || c.Cache.CacheBytes() != 0 || c.Cache.ServeBytes() != 0 {
		t.Fatalf("none: %v %+v", err, c.Cache)
	}
	_, err = config.Load(writeConfig(t, "cache:\n  bytes: 1000\n", ""))
	if err == nil || !strings.Contains(err.Error(), "cache.bytes") || !strings.Contains(err.Error(), "1000 is too small") {
		t.Fatalf("small bound: err = %v", err)
	}
}
