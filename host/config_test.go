package host_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
