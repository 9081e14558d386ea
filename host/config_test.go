package host_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/host/internal/testclient"
)

// TestConfigWebSocketAccess: the config file's websocket section reaches the
// hub through ConfigOptions, as `nodecast serve --config` runs it.
func TestConfigWebSocketAccess(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nodecast.yaml")
	yaml := "websocket:\n  token: s3cret\n  allowed_hosts: [127.0.0.1]\n"
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	opts := host.ConfigOptions(cfg)
	opts.PluginDir = ""
	_, srv := startHost(t, opts)
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws?clientId=cfg"

	_, resp, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without the token: err %v, response %v; want 401", err, resp)
	}
	c, err := testclient.Dial(srv.URL, "cfg", testclient.Parts, http.Header{"Authorization": {"Bearer s3cret"}})
	if err != nil {
		t.Fatalf("with the token: %v", err)
	}
	c.Close()
	// A Host header that is not allowed is refused before the token is looked at.
	h := http.Header{"Authorization": {"Bearer s3cret"}, "Host": {"evil.example"}}
	d := websocket.Dialer{}
	_, resp, err = d.Dial(wsURL, h)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign Host: err %v, response %v; want 403", err, resp)
	}
}

// TestConfigLimits: the config file's limits section and listen address
// reach the host through ConfigOptions: a history bound, a prompt tensor
// budget that nodes enforce, and the loopback Host rule.
func TestConfigLimits(t *testing.T) {
	yaml := "listen: 127.0.0.1:8188\nlimits:\n  prompt_tensor_bytes: 1048576\n  history_bytes: 1048576\n" +
		"  breaker_restarts: 7\n  breaker_window: 2m\n  breaker_cooldown: 5s\n"
	cfg, err := config.Parse("limits.yaml", []byte(yaml), "")
	if err != nil {
		t.Fatal(err)
	}
	opts := host.ConfigOptions(cfg)
	if opts.Listen != "127.0.0.1:8188" || opts.PromptTensorBytes != 1<<20 || opts.HistoryBytes != 1<<20 ||
		opts.BreakerRestarts != 7 || opts.BreakerWindow != 2*time.Minute || opts.BreakerCooldown != 5*time.Second {
		t.Fatalf("options %+v", opts)
	}
	opts.PluginDir = ""
	h, srv := startHost(t, opts)
	// EmptyImage of 4 × 256² float32 RGB is 3 MiB, over the 1 MiB budget.
	body := `{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": 256, "height": 256, "batch_size": 4}},
  "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0], "event": "cfg.test"}}}}`
	_, entry := waitPrompt(t, h, srv, body)
	e := executionError(t, entry)
	if msg, _ := e["exception_message"].(string); !strings.Contains(msg, "EmptyImage output needs 3145728 bytes") ||
		!strings.Contains(msg, "tensor budget of 1048576 bytes") {
		t.Errorf("execution_error %v", e)
	}
	if code, _ := request(t, srv, "GET", "/history", map[string]string{"Host": "evil.example"}, nil); code != http.StatusForbidden {
		t.Errorf("foreign Host on a host configured to listen on loopback: %d", code)
	}
}
