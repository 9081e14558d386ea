package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/nodecast/nodecast/host/executor"
)

// The headers ComfyUI's create_cors_middleware (server.py) puts on every
// answer under --enable-cors-header.
const (
	corsAllowMethods = "POST, GET, DELETE, PUT, OPTIONS, PATCH"
	corsAllowHeaders = "Content-Type, Authorization"
)

// CheckCORSOrigin checks a --enable-cors-header value: "*", or a browser
// origin "scheme://host[:port]" without path, query or fragment.
func CheckCORSOrigin(origin string) error {
	if origin == "*" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("CORS origin %q: want * or an origin such as https://app.example:8080 (scheme, host, optional port)", origin)
	}
	return nil
}

// corsOrigin returns the configured origin without a trailing slash.
func (s *server) corsOrigin() string { return strings.TrimSuffix(s.opts.CORSOrigin, "/") }

// corsAllows reports whether origin is the one --enable-cors-header names.
func (s *server) corsAllows(origin string) bool {
	c := s.corsOrigin()
	return c != "" && (c == "*" || strings.EqualFold(c, origin))
}

// crossOrigin is ComfyUI's choice of middleware (server.py PromptServer):
// with CORSOrigin set, create_cors_middleware: every answer carries the
// Access-Control-* headers and an OPTIONS request (a preflight) is answered
// 200 without reaching a route. Without it, create_origin_only_middleware
// (middleware/origin_middleware.py): a request with Sec-Fetch-Site:
// cross-site is refused with 403 on every route, and OPTIONS is answered
// 200 (the per-route Host/Origin checks stay where they are, route by
// route).
func (s *server) crossOrigin(h http.Handler) http.Handler {
	if s.corsOrigin() != "" {
		origin := s.corsOrigin()
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hd := w.Header()
			hd.Set("Access-Control-Allow-Origin", origin)
			hd.Set("Access-Control-Allow-Methods", corsAllowMethods)
			hd.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			hd.Set("Access-Control-Allow-Credentials", "true")
			if r.Method == http.MethodOptions {
				w.WriteHeader(http.StatusOK)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); r.Header.Get("Sec-Fetch-Site") == "cross-site" && !s.originListed(origin) {
			s.log.Warn("request refused: Sec-Fetch-Site: cross-site", "origin", origin,
				"host", r.Host, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			verr := executor.NewValidationError(typeCrossSite,
				fmt.Sprintf("Request refused: %s %s from Origin %q to Host %q comes from another site (Sec-Fetch-Site: cross-site); list the origin in websocket.allowed_origins, or start the host with --enable-cors-header, to allow it", r.Method, r.URL.Path, origin, r.Host),
				"Sec-Fetch-Site: cross-site")
			verr.Detail.ExtraInfo["origin"] = origin
			writeJSON(w, http.StatusForbidden, verr)
			return
		}
		if r.Method == http.MethodOptions {
			if !s.opts.AllowCrossOrigin && !originAllowed(r.Host, r.Header.Get("Origin")) {
				writeError(w, http.StatusForbidden, "cross_origin",
					"Request refused: its Origin does not match the loopback Host", r.Header.Get("Origin")+" != "+r.Host)
				return
			}
			w.WriteHeader(http.StatusOK)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// corsTrusted is what the CSRF guard of state-changing routes trusts
// because of CORSOrigin: nothing when it is off, else the origin ("*"
// turns the guard off, as ComfyUI has none under --enable-cors-header).
func (s *server) corsTrusted() []string {
	if c := s.corsOrigin(); c != "" {
		return []string{c}
	}
	return nil
}

// originListed reports whether websocket.allowed_origins lists origin ("*"
// = any): a page the operator allowed is not refused for being cross-site.
func (s *server) originListed(origin string) bool {
	for _, a := range s.opts.AllowedOrigins {
		if a == "*" || (origin != "" && strings.EqualFold(strings.TrimSuffix(a, "/"), origin)) {
			return true
		}
	}
	return false
}
