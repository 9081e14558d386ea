package host_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/host/internal/testclient"
)

// scrapeMetrics GETs /metrics and parses Prometheus's text format.
func scrapeMetrics(t *testing.T, serverURL string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(serverURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// metricValue is the value of name's sample whose labels include labels
// (name=value pairs); ok is false when there is none.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) (v float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// TestMetrics runs a sender node through the built-in pack in a real
// subprocess and a prompt through POST /prompt, then reads both back from
// GET /metrics as a Prometheus scraper would.
func TestMetrics(t *testing.T) {
	h, srv := startHost(t, host.Options{})
	c, err := testclient.Dial(srv.URL, "metrics", testclient.Parts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := h.RunNode(ctx, host.NodeCall{
		Class: "SendImageOnWebSocket", ClientID: "metrics",
		Inputs: map[string]any{"images": noiseBatch(1, 32, 3), "event": "metrics.test"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitImages(1, time.Minute); err != nil {
		t.Fatal(err)
	}

	// One prompt through the executor, so its counters move too.
	body, _ := json.Marshal(map[string]any{"client_id": "metrics", "prompt": map[string]any{
		"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": 8, "height": 8, "batch_size": 1, "color": 0}},
		"2": map[string]any{"class_type": "SendImageOnWebSocket", "inputs": map[string]any{"images": []any{"1", 0}, "event": "metrics.prompt"}},
	}})
	resp, err := http.Post(srv.URL+"/prompt", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var acc struct {
		PromptID string `json:"prompt_id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&acc)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /prompt: %d %v", resp.StatusCode, err)
	}
	if _, err := h.Executor().Wait(ctx, acc.PromptID); err != nil {
		t.Fatal(err)
	}

	fams := scrapeMetrics(t, srv.URL)
	tests := []struct {
		name   string
		labels []string
		check  func(float64) bool
		want   string
	}{
		{"nodecast_ws_clients", nil, func(v float64) bool { return v == 1 }, "1"},
		{"nodecast_images_committed_total", nil, func(v float64) bool { return v >= 2 }, ">= 2"},
		{"nodecast_images_pending", nil, func(v float64) bool { return v == 0 }, "0"},
		{"nodecast_ws_evictions_total", nil, func(v float64) bool { return v == 0 }, "0"},
		{"nodecast_queue_remaining", nil, func(v float64) bool { return v == 0 }, "0"},
		{"nodecast_prompts_finished_total", []string{"status", "success"}, func(v float64) bool { return v == 1 }, "1"},
		{"nodecast_prompts_finished_total", []string{"status", "error"}, func(v float64) bool { return v == 0 }, "0"},
		{"nodecast_plugin_up", []string{"pack", "builtin"}, func(v float64) bool { return v == 1 }, "1"},
		{"nodecast_plugin_generation", []string{"pack", "builtin"}, func(v float64) bool { return v == 1 }, "1"},
		{"go_goroutines", nil, func(v float64) bool { return v > 0 }, "> 0"},
		{"process_resident_memory_bytes", nil, func(v float64) bool { return v > 0 }, "> 0"},
	}
	for _, tt := range tests {
		name := tt.name
		if len(tt.labels) == 2 {
			name += "{" + tt.labels[0] + "=" + tt.labels[1] + "}"
		}
		t.Run(name, func(t *testing.T) {
			v, ok := metricValue(fams, tt.name, tt.labels...)
			if !ok {
				t.Fatalf("%s%v missing", tt.name, tt.labels)
			}
			if !tt.check(v) {
				t.Errorf("%s%v = %v, want %s", tt.name, tt.labels, v, tt.want)
			}
		})
	}

	// Metrics lives under /metrics only, as ComfyUI has no /api/metrics.
	resp, err = http.Get(srv.URL + "/api/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /api/metrics: %d, want 404", resp.StatusCode)
	}
}

// TestMetricsRegistryPerHost: two hosts in one process each have their own
// registry, and an embedder's collector shows up on /metrics.
func TestMetricsRegistryPerHost(t *testing.T) {
	h1, srv1 := startHost(t, host.Options{})
	h2, _ := startHost(t, host.Options{})
	if h1.Metrics() == h2.Metrics() {
		t.Fatal("two hosts share one registry")
	}
	c, err := testclient.Dial(srv1.URL, "one", testclient.Plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mine := prometheus.NewCounter(prometheus.CounterOpts{Name: "embedder_things_total", Help: "Things an embedder counts."})
	if err := h1.Metrics().Register(mine); err != nil {
		t.Fatal(err)
	}
	mine.Add(5)
	fams := scrapeMetrics(t, srv1.URL)
	if v, ok := metricValue(fams, "embedder_things_total"); !ok || v != 5 {
		t.Errorf("embedder_things_total = %v (present %v), want 5", v, ok)
	}
	fams2, err := h2.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams2 {
		if f.GetName() == "embedder_things_total" {
			t.Error("the other host's registry has the embedder's counter")
		}
		if f.GetName() == "nodecast_ws_clients" && f.GetMetric()[0].GetGauge().GetValue() != 0 {
			t.Errorf("the other host counts %v clients", f.GetMetric()[0].GetGauge().GetValue())
		}
	}
	if v, _ := metricValue(fams, "nodecast_ws_clients"); v != 1 {
		t.Errorf("nodecast_ws_clients = %v, want 1", v)
	}
}
