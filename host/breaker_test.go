package host_test

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/internal/wait"
)

// killPack kills the built-in pack's process and waits until the host has
// noticed, so the next call is a restart.
func killPack(t *testing.T, h *host.Host) {
	t.Helper()
	pid := h.Packs()[0].Pid
	if pid == 0 {
		t.Fatal("pack not running")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 30*time.Second, "the pack to be reported down after SIGKILL", func() bool { return h.Packs()[0].Pid == 0 })
}

// breakerSeen returns the breaker state /system_stats shows and whether
// /metrics shows the same state.
func breakerSeen(t *testing.T, url string) (string, bool) {
	t.Helper()
	_, raw := getHistory(t, url+"/system_stats")
	var st struct {
		Plugins []struct {
			Name    string `json:"name"`
			Breaker struct {
				State     string `json:"state"`
				OpenUntil string `json:"open_until"`
				Trips     int    `json:"trips"`
			} `json:"breaker"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &st); err != nil || len(st.Plugins) != 1 || st.Plugins[0].Name != "builtin" {
		t.Fatalf("system_stats plugins: %s (%v)", raw, err)
	}
	state := st.Plugins[0].Breaker.State
	_, m := getHistory(t, url+"/metrics")
	return state, strings.Contains(string(m), `nodecast_plugin_breaker_state{pack="builtin",state="`+state+`"} 1`)
}

// Item 7: two kills within the window (one restart allowed) open the
// breaker: prompts fail with a typed, configurable error, /system_stats and
// /metrics show it open; after the cooldown one probe prompt restarts the
// pack and closes it.
func TestBreakerConfigurableHalfOpen(t *testing.T) {
	h, srv := loopbackHost(t, host.Options{BreakerRestarts: 1, BreakerWindow: time.Hour, BreakerCooldown: time.Second})
	if _, e := waitPrompt(t, h, srv, tinyPrompt); e.Status.StatusStr != "success" {
		t.Fatalf("first prompt: %+v", e.Status)
	}
	killPack(t, h)
	if _, e := waitPrompt(t, h, srv, tinyPrompt); e.Status.StatusStr != "success" {
		t.Fatalf("prompt after one restart: %+v", e.Status)
	}
	killPack(t, h)
	_, entry := waitPrompt(t, h, srv, tinyPrompt)
	e := executionError(t, entry)
	msg, _ := e["exception_message"].(string)
	if e["exception_type"] != "nodecast.BreakerOpen" || !strings.Contains(msg, "crash-loop breaker open (restarted 1 times within 1h0m0s)") ||
		!strings.Contains(msg, "limits.breaker_restarts") {
		t.Errorf("execution_error %v", e)
	}
	if state, inMetrics := breakerSeen(t, srv.URL); state != "open" || !inMetrics {
		t.Errorf("breaker shown as %q (in /metrics: %v), want open", state, inMetrics)
	}
	if !strings.Contains(string(mustGet(t, srv.URL+"/metrics")), `nodecast_plugin_breaker_trips_total{pack="builtin"} 1`) {
		t.Errorf("/metrics lacks one breaker trip")
	}
	wait.Until(time.Minute, func() bool { return h.Packs()[0].Breaker.State == "half_open" })
	if _, e := waitPrompt(t, h, srv, tinyPrompt); e.Status.StatusStr != "success" {
		t.Fatalf("probe prompt after the cooldown: %+v", e.Status)
	}
	if state, inMetrics := breakerSeen(t, srv.URL); state != "closed" || !inMetrics {
		t.Errorf("after the probe the breaker is %q (in /metrics: %v), want closed", state, inMetrics)
	}
}

func mustGet(t *testing.T, url string) []byte {
	t.Helper()
	_, b := getHistory(t, url)
	return b
}
