package metrics_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/host/hub"
	"github.com/nodecast/nodecast/host/internal/logbuf"
	"github.com/nodecast/nodecast/host/metrics"
	"github.com/nodecast/nodecast/host/stream"
	"github.com/nodecast/nodecast/host/supervisor"
)

// fakeHost stands in for the hub, executor and supervisor; its values may
// change between scrapes.
type fakeHost struct {
	mu       sync.Mutex
	stats    hub.Stats
	clients  []hub.ClientInfo
	queue    int
	finished executor.Finished
	packs    []supervisor.PackInfo
}

func (f *fakeHost) Stats() hub.Stats { f.mu.Lock(); defer f.mu.Unlock(); return f.stats }
func (f *fakeHost) Clients() []hub.ClientInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]hub.ClientInfo(nil), f.clients...)
}
func (f *fakeHost) QueueRemaining() int { f.mu.Lock(); defer f.mu.Unlock(); return f.queue }
func (f *fakeHost) Finished() executor.Finished {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.finished
}
func (f *fakeHost) Packs() []supervisor.PackInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]supervisor.PackInfo(nil), f.packs...)
}

// The real types satisfy the interfaces.
var (
	_ metrics.Hub        = (*hub.Hub)(nil)
	_ metrics.Executor   = (*executor.Executor)(nil)
	_ metrics.Supervisor = (*supervisor.Supervisor)(nil)
)

func busyHost() *fakeHost {
	return &fakeHost{
		stats: hub.Stats{Clients: 2, Evictions: 3, Refused: 4, PendingImages: 5, PendingBytes: 6000,
			Committed: 70, Dropped: 8,
			Takeovers: 13, WriteTimeouts: 14, InvalidUTF8: 15, Truncated: 16, Detached: 17, Resumed: 18,
			ResumeFailed: 19, HeldDelivered: 20,
			Window: stream.Stats{UniqueBytes: 21, TrimmedBytes: 22, TrimmedAge: 23, TrimmedGlobal: 24, OverflowedLogs: 25},
			Held:   stream.Stats{UniqueBytes: 26}},
		clients:  []hub.ClientInfo{{ID: "a", Queued: 100}, {ID: "b", Queued: 23}},
		queue:    9,
		finished: executor.Finished{Success: 10, Error: 11, Interrupted: 12},
		packs: []supervisor.PackInfo{
			{Name: "builtin", Pid: 1234, Generation: 1, Breaker: supervisor.BreakerInfo{State: supervisor.BreakerClosed}},
			{Name: "custom", Pid: 0, Generation: 3, Breaker: supervisor.BreakerInfo{State: supervisor.BreakerOpen, Trips: 2}},
		},
	}
}

// sample flattens families into "name{k=v,...}" -> value, for nodecast's
// own metrics only.
func sample(fams []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "nodecast_") {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			key := f.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			default:
				out[key] = -1 // a type nodecast never exports
			}
		}
	}
	return out
}

func diff(t *testing.T, got, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s missing", k)
		} else if g != w {
			t.Errorf("%s = %v, want %v", k, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s = %v", k, g)
		}
	}
}

func TestCollector(t *testing.T) {
	f := busyHost()
	all := map[string]float64{
		"nodecast_ws_clients":                                 2,
		"nodecast_ws_evictions_total":                         3,
		"nodecast_ws_refused_total":                           4,
		"nodecast_ws_queued_bytes":                            123,
		"nodecast_images_pending":                             5,
		"nodecast_images_pending_bytes":                       6000,
		"nodecast_images_committed_total":                     70,
		"nodecast_images_dropped_total":                       8,
		"nodecast_queue_remaining":                            9,
		"nodecast_prompts_finished_total{status=success}":     10,
		"nodecast_prompts_finished_total{status=error}":       11,
		"nodecast_prompts_finished_total{status=interrupted}": 12,
		"nodecast_plugin_generation{pack=builtin}":            1,
		"nodecast_plugin_up{pack=builtin}":                    1,
		"nodecast_plugin_generation{pack=custom}":             3,
		"nodecast_plugin_up{pack=custom}":                     0,
		// The breaker's state is one of three series set to 1.
		"nodecast_plugin_breaker_state{pack=builtin,state=closed}":    1,
		"nodecast_plugin_breaker_state{pack=builtin,state=open}":      0,
		"nodecast_plugin_breaker_state{pack=builtin,state=half_open}": 0,
		"nodecast_plugin_breaker_state{pack=custom,state=closed}":     0,
		"nodecast_plugin_breaker_state{pack=custom,state=open}":       1,
		"nodecast_plugin_breaker_state{pack=custom,state=half_open}":  0,
		"nodecast_plugin_breaker_trips_total{pack=builtin}":           0,
		"nodecast_plugin_breaker_trips_total{pack=custom}":            2,
		// client sessions
		"nodecast_ws_takeovers_total":                          13,
		"nodecast_ws_write_timeouts_total":                     14,
		"nodecast_ws_invalid_utf8_total":                       15,
		"nodecast_ws_messages_truncated_total":                 16,
		"nodecast_sessions_detached":                           17,
		"nodecast_sessions_resumes_total{outcome=recovered}":   18,
		"nodecast_sessions_resumes_total{outcome=failed}":      19,
		"nodecast_sessions_held_delivered_total":               20,
		"nodecast_sessions_window_bytes":                       21,
		"nodecast_sessions_window_trimmed_total{cause=bytes}":  22,
		"nodecast_sessions_window_trimmed_total{cause=age}":    23,
		"nodecast_sessions_window_trimmed_total{cause=global}": 24,
		"nodecast_sessions_window_overflows_total":             25,
		"nodecast_sessions_held_bytes":                         26,
	}
	only := func(prefixes ...string) map[string]float64 {
		out := map[string]float64{}
		for k, v := range all {
			for _, p := range prefixes {
				if strings.HasPrefix(k, p) {
					out[k] = v
				}
			}
		}
		return out
	}
	tests := []struct {
		name string
		src  metrics.Sources
		want map[string]float64
	}{
		{"every source", metrics.Sources{Hub: f, Executor: f, Supervisor: f}, all},
		{"hub only", metrics.Sources{Hub: f}, only("nodecast_ws_", "nodecast_images_", "nodecast_sessions_")},
		{"executor only", metrics.Sources{Executor: f}, only("nodecast_queue_", "nodecast_prompts_")},
		{"supervisor only", metrics.Sources{Supervisor: f}, only("nodecast_plugin_")},
		{"none", metrics.Sources{}, map[string]float64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry() // also checks Describe against Collect
			if err := reg.Register(metrics.NewCollector(tt.src)); err != nil {
				t.Fatal(err)
			}
			fams, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			diff(t, sample(fams), tt.want)
		})
	}
}

// TestReadsLiveState checks that each scrape reads the sources again, so
// nothing is cached or counted twice.
func TestReadsLiveState(t *testing.T) {
	f := busyHost()
	reg, err := metrics.NewRegistry(metrics.Sources{Hub: f, Executor: f, Supervisor: f})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.stats.Clients = 0
	f.stats.Committed = 71
	f.clients = nil
	f.finished.Success++
	f.packs[0].Pid, f.packs[0].Generation = 0, 2
	f.mu.Unlock()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := sample(fams)
	for k, want := range map[string]float64{
		"nodecast_ws_clients":                             0,
		"nodecast_ws_queued_bytes":                        0,
		"nodecast_images_committed_total":                 71,
		"nodecast_prompts_finished_total{status=success}": 11,
		"nodecast_plugin_up{pack=builtin}":                0,
		"nodecast_plugin_generation{pack=builtin}":        2,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
}

// scrape GETs url and parses Prometheus's text format.
func scrape(t *testing.T, url string) (map[string]*dto.MetricFamily, *http.Response) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse %s: %v\n%s", url, err, body)
	}
	return fams, resp
}

func TestHandlerServesText(t *testing.T) {
	f := busyHost()
	reg, err := metrics.NewRegistry(metrics.Sources{Hub: f, Executor: f, Supervisor: f})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(metrics.Handler(reg, nil))
	defer srv.Close()
	fams, resp := scrape(t, srv.URL)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_start_time_seconds",
		"nodecast_ws_clients", "nodecast_plugin_up"} {
		if fams[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
	if got := fams["nodecast_images_committed_total"].GetType(); got != dto.MetricType_COUNTER {
		t.Errorf("nodecast_images_committed_total is a %v, want a counter", got)
	}
	if got := fams["nodecast_ws_clients"].GetType(); got != dto.MetricType_GAUGE {
		t.Errorf("nodecast_ws_clients is a %v, want a gauge", got)
	}
}

// TestTwoHostsInOneProcess: registries are per host, so two do not collide
// and each reports its own values.
func TestTwoHostsInOneProcess(t *testing.T) {
	a, b := busyHost(), busyHost()
	b.stats.Clients = 7
	for i, f := range []*fakeHost{a, b} {
		reg, err := metrics.NewRegistry(metrics.Sources{Hub: f, Executor: f, Supervisor: f})
		if err != nil {
			t.Fatalf("registry %d: %v", i, err)
		}
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := sample(fams)["nodecast_ws_clients"], float64(f.stats.Clients); got != want {
			t.Errorf("registry %d: nodecast_ws_clients = %v, want %v", i, got, want)
		}
	}
}

// TestBadPackNameFailsOnlyItsMetrics: a label that is not UTF-8 (a plugin
// file name can be anything) is logged; the rest is still served.
func TestBadPackNameFailsOnlyItsMetrics(t *testing.T) {
	f := busyHost()
	f.packs = append(f.packs, supervisor.PackInfo{Name: "bad\xff", Pid: 1, Generation: 1})
	reg, err := metrics.NewRegistry(metrics.Sources{Hub: f, Executor: f, Supervisor: f})
	if err != nil {
		t.Fatal(err)
	}
	var logs logbuf.Buffer
	srv := httptest.NewServer(metrics.Handler(reg, slog.New(slog.NewTextHandler(&logs, nil))))
	defer srv.Close()
	fams, resp := scrape(t, srv.URL)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if fams["nodecast_ws_clients"] == nil {
		t.Error("nodecast_ws_clients missing after one bad metric")
	}
	if !strings.Contains(logs.String(), "metrics:") {
		t.Errorf("the bad metric was not logged: %q", logs.String())
	}
}
