package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/host/supervisor"
	"github.com/nodecast/nodecast/protocol"
)

// DefaultMaxBodyBytes is the largest request body when Options.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 512 << 20

// Options configures the API. The zero value serves an API without an
// executor (prompt routes answer 503) and without a WebSocket.
type Options struct {
	Executor *executor.Executor
	// Classes lists the node classes for /object_info. nil = none.
	Classes func() []supervisor.Class
	// WS serves /ws and /api/ws (the hub). nil = 404.
	WS http.Handler
	// InputDir holds uploads (type "input"). "" = "input".
	InputDir string
	// OutputDir is type "output" of /view and uploads. "" = "output".
	OutputDir string
	// TempDir is type "temp". "" = a folder of this server's own in
	// os.TempDir(), made on first use.
	TempDir string
	// MaxBodyBytes bounds every request body. 0 = DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxUploadBytes bounds /upload/image bodies. 0 = MaxBodyBytes.
	MaxUploadBytes int64
	// Limits bound uploaded images' sides and pixels (zero = protocol's defaults).
	Limits protocol.ImageLimits
	// MessageLimit is reported as max_message_size in /features.
	// 0 = protocol.DefaultMessageLimit.
	MessageLimit int
	// Features are server feature flags added to (or replacing) the defaults
	// in /features: supports_preview_metadata, supports_image_parts,
	// max_upload_size, max_message_size.
	Features map[string]any
	// AllowCrossOrigin serves requests whose Origin names another host even
	// when the Host is a loopback address. false = refuse them with 403, as
	// ComfyUI does without --enable-cors-header, so a web page cannot queue
	// prompts on a local server.
	AllowCrossOrigin bool
	// Metrics serves GET /metrics (Prometheus; not under /api, which
	// ComfyUI does not have either). nil = 404.
	Metrics http.Handler
	// Version is reported as comfyui_version in /system_stats. "" = "nodecast".
	Version string
	Logger  *slog.Logger // nil = discard
	// LoopbackOnly says the server listens on a loopback address: every
	// route, /ws included, then accepts only loopback Host values
	// (127.0.0.1, localhost, [::1], any port) unless AllowedHosts lists
	// others, so a web page that rebinds its name to 127.0.0.1 is refused.
	LoopbackOnly bool
	// AllowedHosts lists the Host values every route accepts ("name" = any
	// port, "name:port", "*" = any). Empty = any, or loopback ones only
	// under LoopbackOnly.
	AllowedHosts []string
	// AllowedOrigins lists the browser Origins ("https://app.example") that
	// may send state-changing requests (POST) from another site; "*" = any.
	// Others, and "Origin: null", are refused with 403 (CSRF).
	AllowedOrigins []string
	// StagingDir holds uploads while they stream in, before they are
	// checked and moved to their folder. "" = a private folder made by New
	// in os.TempDir().
	StagingDir string
	// Packs lists the plugin packs, with their crash-loop breakers, for
	// /system_stats. nil = none shown.
	Packs func() []supervisor.PackInfo
	// CORSOrigin is ComfyUI's --enable-cors-header: "*" or one origin
	// ("https://app.example"). Set, every answer carries ComfyUI's
	// Access-Control-* headers, OPTIONS preflights are answered, and the
	// origin is accepted by the cross-origin checks ("*": every origin).
	// "" = off: requests with Sec-Fetch-Site: cross-site get 403 (cors.go).
	CORSOrigin string
}

// server holds the options with their defaults applied.
type server struct {
	opts Options
	log  *slog.Logger
	dirs map[string]string           // upload and view folders by type; "temp" may be "" until used
	own  func() string               // this server's own folder in os.TempDir(), made on first use
	cop  *http.CrossOriginProtection // nil = cross-site POSTs allowed
}

// New returns the API's handler.
func New(opts Options) http.Handler {
	if opts.InputDir == "" {
		opts.InputDir = "input"
	}
	if opts.OutputDir == "" {
		opts.OutputDir = "output"
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxUploadBytes <= 0 {
		opts.MaxUploadBytes = opts.MaxBodyBytes
	}
	if opts.MessageLimit <= 0 {
		opts.MessageLimit = protocol.DefaultMessageLimit
	}
	if opts.Version == "" {
		opts.Version = "nodecast"
	}
	s := &server{
		opts: opts,
		log:  opts.Logger,
		dirs: map[string]string{"input": opts.InputDir, "output": opts.OutputDir, "temp": opts.TempDir},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	// A folder of this server's own, not a shared /tmp/nodecast that other
	// users and hosts could read and plant files in; made only when a temp
	// or staging folder is needed and none was given.
	s.own = sync.OnceValue(func() string {
		dir, err := os.MkdirTemp("", "nodecast-")
		if err != nil {
			s.log.Error("cannot make a temp folder", "err", err)
			return filepath.Join(os.TempDir(), fmt.Sprintf("nodecast-%d", os.Getpid()))
		}
		return dir
	})
	if err := CheckCORSOrigin(opts.CORSOrigin); opts.CORSOrigin != "" && err != nil {
		s.log.Error("CORS origin ignored", "err", err)
		s.opts.CORSOrigin = ""
	}
	if !opts.AllowCrossOrigin {
		cop, err := newCrossSiteGuard(append(opts.AllowedOrigins[:len(opts.AllowedOrigins):len(opts.AllowedOrigins)], s.corsTrusted()...))
		if err != nil {
			s.log.Error("allowed origins ignored", "err", err)
			cop, _ = newCrossSiteGuard(nil)
		}
		s.cop = cop
	}
	mux := http.NewServeMux()
	route := func(method, path string, limit int64, h http.HandlerFunc) {
		var handler http.Handler = h
		if limit > 0 {
			handler = s.limitBody(limit, h)
		}
		if !opts.AllowCrossOrigin && path != "/ws" { // the hub checks its own origins
			handler = s.sameOriginOnLoopback(handler)
		}
		if method == http.MethodPost {
			handler = s.crossSiteGuard(handler)
		}
		mux.Handle(method+" "+path, handler)
		mux.Handle(method+" /api"+path, handler)
	}
	body, upload := opts.MaxBodyBytes, opts.MaxUploadBytes
	route("GET", "/prompt", body, s.getPrompt)
	route("POST", "/prompt", body, s.postPrompt)
	route("GET", "/queue", body, s.getQueue)
	route("POST", "/queue", body, s.postQueue)
	route("POST", "/interrupt", body, s.postInterrupt)
	route("POST", "/free", body, s.postFree) // free.go
	route("GET", "/history", body, s.getHistory)
	route("GET", "/history/{prompt_id}", body, s.getHistoryEntry)
	route("POST", "/history", body, s.postHistory)
	route("GET", "/object_info", body, s.getObjectInfo)
	route("GET", "/object_info/{node_class}", body, s.getObjectInfoClass)
	route("POST", "/upload/image", upload, s.postUploadImage)
	route("GET", "/view", body, s.getView)
	route("GET", "/features", body, s.getFeatures)
	route("GET", "/system_stats", body, s.getSystemStats)
	route("GET", "/ws", 0, s.ws)
	route("GET", "/jobs", body, s.getJobs) // jobs.go
	route("GET", "/jobs/{job_id}", body, s.getJob)
	route("POST", "/jobs/cancel", body, s.postCancelJobs)
	route("POST", "/jobs/{job_id}/cancel", body, s.postCancelJob)
	// models.go, mask.go
	route("GET", "/models", body, s.getModels)
	route("GET", "/models/{folder}", body, s.getModelFolder)
	route("GET", "/embeddings", body, s.getEmbeddings)
	route("POST", "/upload/mask", upload, s.postUploadMask)
	s.webRoutes(mux) // the live page and the browser client (web.go)
	if opts.Metrics != nil {
		var metrics http.Handler = opts.Metrics
		if !opts.AllowCrossOrigin {
			metrics = s.sameOriginOnLoopback(metrics)
		}
		mux.Handle("GET /metrics", metrics)
	}
	return s.hostGuard(s.crossOrigin(mux))
}

func (s *server) ws(w http.ResponseWriter, r *http.Request) {
	if s.opts.WS == nil {
		http.NotFound(w, r)
		return
	}
	s.opts.WS.ServeHTTP(w, r)
}

// Error types of requests refused before they reach the executor.
const (
	typeInvalidRequest  = "invalid_request"
	typeRequestTooLarge = "request_too_large"
	typeNoExecutor      = "no_executor"
)

// limitBody refuses a body over limit: at once when Content-Length says so,
// and while reading otherwise (handlers answer 413 on *http.MaxBytesError).
// Either way the rest of the body is read and dropped, up to drainLimit
// more bytes, after the 413 is sent: a client that writes its whole body
// before it reads (Python's requests, a chunked upload) would otherwise get
// a reset connection instead of the answer.
func (s *server) limitBody(limit int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := r.Body
		if r.ContentLength > limit {
			s.tooLarge(w, r.ContentLength, limit)
			s.drain(w, body, limit)
			return
		}
		lw := &limitWatch{ResponseWriter: w}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		h.ServeHTTP(lw, r)
		if lw.status == http.StatusRequestEntityTooLarge {
			s.drain(w, body, limit)
		}
	})
}

// drainTimeout bounds the time spent dropping the rest of a refused body,
// and drainMin the bytes dropped when the limit is smaller: dropped bytes
// cost bandwidth, never memory.
const (
	drainTimeout = 30 * time.Second
	drainMin     = 64 << 20
)

// drain sends what w holds, then reads and drops up to max(limit, drainMin)
// more bytes of body within drainTimeout, so the client reads the answer
// before the server closes the connection.
func (s *server) drain(w http.ResponseWriter, body io.ReadCloser, limit int64) {
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex() // keep reading the body after the answer went out
	_ = rc.Flush()
	_ = rc.SetReadDeadline(time.Now().Add(drainTimeout))
	n, _ := io.CopyN(io.Discard, body, max(limit, drainMin))
	s.log.Debug("refused body drained", "bytes", n)
}

// limitWatch remembers the status a handler answered with.
type limitWatch struct {
	http.ResponseWriter
	status int
}

func (l *limitWatch) WriteHeader(code int) {
	if l.status == 0 {
		l.status = code
	}
	l.ResponseWriter.WriteHeader(code)
}

func (l *limitWatch) Unwrap() http.ResponseWriter { return l.ResponseWriter }

func (s *server) tooLarge(w http.ResponseWriter, size, limit int64) {
	details := fmt.Sprintf("limit %d bytes", limit)
	if size > 0 {
		details = fmt.Sprintf("body of %d bytes exceeds limit %d", size, limit)
	}
	verr := executor.NewValidationError(typeRequestTooLarge, fmt.Sprintf("Request body exceeds the limit of %d bytes", limit), details)
	verr.Detail.ExtraInfo["limit"] = limit
	writeJSON(w, http.StatusRequestEntityTooLarge, verr)
}

// bodyError answers a failed body read: 413 over the limit, 400 otherwise.
func (s *server) bodyError(w http.ResponseWriter, err error, what string) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		s.tooLarge(w, 0, mbe.Limit)
		return
	}
	writeError(w, http.StatusBadRequest, typeInvalidRequest, what, err.Error())
}

// writeError answers with ComfyUI's error shape: {"error":{...},"node_errors":{}}.
func writeError(w http.ResponseWriter, status int, typ, message, details string) {
	writeJSON(w, status, executor.NewValidationError(typ, message, details))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(executor.NewValidationError("internal_error", "Cannot encode the answer", err.Error()))
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
