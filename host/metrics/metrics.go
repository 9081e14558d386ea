package metrics

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/host/hub"
	"github.com/nodecast/nodecast/host/supervisor"
)

// Hub is the broadcaster's side of the metrics; *hub.Hub satisfies it.
type Hub interface {
	Stats() hub.Stats
	Clients() []hub.ClientInfo
}

// Executor is the prompt queue's side; *executor.Executor satisfies it.
type Executor interface {
	QueueRemaining() int
	Finished() executor.Finished
}

// Supervisor is the plugin packs' side; *supervisor.Supervisor satisfies it.
type Supervisor interface {
	Packs() []supervisor.PackInfo
}

// Sources are what a Collector reads at scrape time. A nil source exports
// none of its metrics.
type Sources struct {
	Hub        Hub
	Executor   Executor
	Supervisor Supervisor
}

// statusInterrupted is nodecast_prompts_finished_total's status label for
// interrupted prompts; success and error are the executor's history status
// strings.
const statusInterrupted = "interrupted"

var (
	wsClients = prometheus.NewDesc("nodecast_ws_clients",
		"WebSocket clients connected.", nil, nil)
	wsEvictions = prometheus.NewDesc("nodecast_ws_evictions_total",
		"WebSocket clients evicted for queueing more than the hub's queue bound.", nil, nil)
	wsRefused = prometheus.NewDesc("nodecast_ws_refused_total",
		"WebSocket connections refused before upgrading (origin, host, token, client id).", nil, nil)
	wsQueuedBytes = prometheus.NewDesc("nodecast_ws_queued_bytes",
		"Bytes waiting to be written, summed over the connected clients.", nil, nil)
	imagesCommitted = prometheus.NewDesc("nodecast_images_committed_total",
		"Images delivered to clients once all their parts existed.", nil, nil)
	imagesDropped = prometheus.NewDesc("nodecast_images_dropped_total",
		"Images dropped for bad parts, limits or a failed or interrupted node.", nil, nil)
	imagesPending = prometheus.NewDesc("nodecast_images_pending",
		"Images waiting for their remaining parts.", nil, nil)
	imagesPendingBytes = prometheus.NewDesc("nodecast_images_pending_bytes",
		"Bytes held for images waiting for their remaining parts.", nil, nil)
	queueRemaining = prometheus.NewDesc("nodecast_queue_remaining",
		"Prompts queued or running, as ComfyUI's queue_remaining.", nil, nil)
	promptsFinished = prometheus.NewDesc("nodecast_prompts_finished_total",
		"Prompts that ran to an end, by status: success, error or interrupted.", []string{"status"}, nil)
	pluginGeneration = prometheus.NewDesc("nodecast_plugin_generation",
		"Times the pack's plugin process was started; restarts = generation - 1.", []string{"pack"}, nil)
	pluginUp = prometheus.NewDesc("nodecast_plugin_up",
		"1 while the pack's plugin process runs, 0 otherwise.", []string{"pack"}, nil)
	pluginBreaker = prometheus.NewDesc("nodecast_plugin_breaker_state",
		"The pack's crash-loop breaker: 1 for its current state (closed, open, half_open), 0 for the others.", []string{"pack", "state"}, nil)
	pluginBreakerTrips = prometheus.NewDesc("nodecast_plugin_breaker_trips_total",
		"Times the pack's crash-loop breaker opened.", []string{"pack"}, nil)
)

// Client sessions (takeover, held messages, resume window).
var (
	wsTakeovers = prometheus.NewDesc("nodecast_ws_takeovers_total",
		"WebSocket connections closed with 4001 because a new one took their clientId.", nil, nil)
	wsWriteTimeouts = prometheus.NewDesc("nodecast_ws_write_timeouts_total",
		"WebSocket clients dropped because a write timed out.", nil, nil)
	wsInvalidUTF8 = prometheus.NewDesc("nodecast_ws_invalid_utf8_total",
		"WebSocket clients closed with 1007 for a text message that is not UTF-8.", nil, nil)
	wsTruncated = prometheus.NewDesc("nodecast_ws_messages_truncated_total",
		"JSON messages shortened to fit the message limit.", nil, nil)
	sessionsDetached = prometheus.NewDesc("nodecast_sessions_detached",
		"Client sessions kept for a client that may reconnect.", nil, nil)
	sessionsResumes = prometheus.NewDesc("nodecast_sessions_resumes_total",
		"Resume requests, by outcome: recovered or failed.", []string{"outcome"}, nil)
	sessionsHeldDelivered = prometheus.NewDesc("nodecast_sessions_held_delivered_total",
		"Held messages delivered to plain clients that reconnected.", nil, nil)
	windowBytes = prometheus.NewDesc("nodecast_sessions_window_bytes",
		"Memory held by the resume window (an image sent to several clients counts once).", nil, nil)
	windowTrimmed = prometheus.NewDesc("nodecast_sessions_window_trimmed_total",
		"Window entries trimmed, by cause: bytes (a client's bound), age, global.", []string{"cause"}, nil)
	windowOverflows = prometheus.NewDesc("nodecast_sessions_window_overflows_total",
		"Times a client's window lost entries to a byte bound.", nil, nil)
	heldBytes = prometheus.NewDesc("nodecast_sessions_held_bytes",
		"Memory held for plain clients that are away (a message held for several counts once).", nil, nil)
)

// Collector is a prometheus.Collector reading a host's live state.
type Collector struct {
	src Sources
}

// NewCollector returns a collector over src.
func NewCollector(src Sources) *Collector { return &Collector{src: src} }

// Describe sends the descriptions of the metrics src can give.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	if c.src.Hub != nil {
		for _, d := range []*prometheus.Desc{wsClients, wsEvictions, wsRefused, wsQueuedBytes,
			imagesCommitted, imagesDropped, imagesPending, imagesPendingBytes,
			wsTakeovers, wsWriteTimeouts, wsInvalidUTF8, wsTruncated, sessionsDetached, sessionsResumes,
			sessionsHeldDelivered, windowBytes, windowTrimmed, windowOverflows, heldBytes} {
			ch <- d
		}
	}
	if c.src.Executor != nil {
		ch <- queueRemaining
		ch <- promptsFinished
	}
	if c.src.Supervisor != nil {
		ch <- pluginGeneration
		ch <- pluginUp
		ch <- pluginBreaker
		ch <- pluginBreakerTrips
	}
}

// Collect reads every source once and sends its metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	send := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		m, err := prometheus.NewConstMetric(d, t, v, labels...)
		if err != nil { // a pack name that is not UTF-8: fail that metric, serve the rest
			m = prometheus.NewInvalidMetric(d, err)
		}
		ch <- m
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) { send(d, prometheus.GaugeValue, v, labels...) }
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		send(d, prometheus.CounterValue, float64(v), labels...)
	}
	if c.src.Hub != nil {
		s := c.src.Hub.Stats()
		gauge(wsClients, float64(s.Clients))
		counter(wsEvictions, s.Evictions)
		counter(wsRefused, s.Refused)
		var queued int64
		for _, cl := range c.src.Hub.Clients() {
			queued += cl.Queued
		}
		gauge(wsQueuedBytes, float64(queued))
		counter(imagesCommitted, s.Committed)
		counter(imagesDropped, s.Dropped)
		gauge(imagesPending, float64(s.PendingImages))
		gauge(imagesPendingBytes, float64(s.PendingBytes))
		counter(wsTakeovers, s.Takeovers)
		counter(wsWriteTimeouts, s.WriteTimeouts)
		counter(wsInvalidUTF8, s.InvalidUTF8)
		counter(wsTruncated, s.Truncated)
		gauge(sessionsDetached, float64(s.Detached))
		counter(sessionsResumes, s.Resumed, "recovered")
		counter(sessionsResumes, s.ResumeFailed, "failed")
		counter(sessionsHeldDelivered, s.HeldDelivered)
		gauge(windowBytes, float64(s.Window.UniqueBytes))
		counter(windowTrimmed, s.Window.TrimmedBytes, "bytes")
		counter(windowTrimmed, s.Window.TrimmedAge, "age")
		counter(windowTrimmed, s.Window.TrimmedGlobal, "global")
		counter(windowOverflows, s.Window.OverflowedLogs)
		gauge(heldBytes, float64(s.Held.UniqueBytes))
	}
	if c.src.Executor != nil {
		gauge(queueRemaining, float64(c.src.Executor.QueueRemaining()))
		f := c.src.Executor.Finished()
		counter(promptsFinished, f.Success, executor.StatusSuccess)
		counter(promptsFinished, f.Error, executor.StatusError)
		counter(promptsFinished, f.Interrupted, statusInterrupted)
	}
	if c.src.Supervisor != nil {
		seen := map[string]bool{}
		for _, p := range c.src.Supervisor.Packs() {
			if seen[p.Name] { // the supervisor refuses two packs of one name; a repeat would fail the scrape
				continue
			}
			seen[p.Name] = true
			up := 0.0
			if p.Pid != 0 {
				up = 1
			}
			gauge(pluginGeneration, float64(p.Generation), p.Name)
			gauge(pluginUp, up, p.Name)
			for _, st := range []string{supervisor.BreakerClosed, supervisor.BreakerOpen, supervisor.BreakerHalfOpen} {
				v := 0.0
				if p.Breaker.State == st {
					v = 1
				}
				gauge(pluginBreaker, v, p.Name, st)
			}
			counter(pluginBreakerTrips, p.Breaker.Trips, p.Name)
		}
	}
}

// NewRegistry returns a registry of its own holding the Go runtime and
// process collectors and a Collector over src.
func NewRegistry(src Sources) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		NewCollector(src),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return reg, nil
}

// Handler serves g in Prometheus's text format (or what the scraper asks
// for). A collector that fails is logged to log (nil = slog.Default()) and the
// rest is still served.
func Handler(g prometheus.Gatherer, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      printer{log},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// printer is promhttp's Logger over slog.
type printer struct{ log *slog.Logger }

func (p printer) Println(v ...any) { p.log.Warn("metrics: " + fmt.Sprint(v...)) }
