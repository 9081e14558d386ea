package api

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/nodecast/nodecast/host/executor"
)

// sameOriginOnLoopback is ComfyUI's origin_only_middleware: when the Host is
// a loopback address, a request whose Origin names another host is refused,
// so a page on the web cannot drive a server on the user's machine.
func (s *server) sameOriginOnLoopback(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !originAllowed(r.Host, r.Header.Get("Origin")) && !s.corsAllows(r.Header.Get("Origin")) {
			writeError(w, http.StatusForbidden, "cross_origin",
				"Request refused: its Origin does not match the loopback Host", r.Header.Get("Origin")+" != "+r.Host)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func originAllowed(host, origin string) bool {
	if host == "" || origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	hostDomain := strings.ToLower(host)
	hostName, hostPort := splitHostPort(hostDomain)
	if !isLoopback(hostName) {
		return true
	}
	originDomain := strings.ToLower(u.Host)
	if originDomain == "" { // "null" and other opaque origins, as ComfyUI lets them through
		return true
	}
	// A side without a port is compared by host name only (ComfyUI's rule
	// for browsers that drop default ports).
	if u.Port() == "" {
		hostDomain = hostName
	}
	if hostPort == "" {
		originDomain = strings.ToLower(u.Hostname())
	}
	return hostDomain == originDomain
}

func splitHostPort(hostport string) (host, port string) {
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return strings.Trim(h, "[]"), p
	}
	return strings.Trim(hostport, "[]"), ""
}

func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Error types of requests refused for where they come from.
const (
	typeHostNotAllowed = "host_not_allowed"
	typeCrossSite      = "cross_site_request"
)

// hostGuard refuses, on every route, a Host header the server does not
// answer to: under LoopbackOnly, anything but a loopback name unless
// allowed lists it. A web page that rebinds its own name to 127.0.0.1 sends
// its own name as Host, so it is refused even though the browser thinks the
// page and the server share an origin.
func (s *server) hostGuard(h http.Handler) http.Handler {
	allowed := s.opts.AllowedHosts
	if len(allowed) == 0 && !s.opts.LoopbackOnly {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hostAccepted(allowed, r.Host) {
			h.ServeHTTP(w, r)
			return
		}
		rule := "this server accepts only the Host values in websocket.allowed_hosts"
		if len(allowed) == 0 {
			rule = "this server listens on loopback and accepts only loopback Host values (127.0.0.1, localhost, [::1]); " +
				"list other names in websocket.allowed_hosts to serve them"
		}
		s.log.Warn("request refused: Host not allowed", "host", r.Host, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		verr := executor.NewValidationError(typeHostNotAllowed, fmt.Sprintf("Host %q is not allowed: %s", r.Host, rule), r.Host)
		verr.Detail.ExtraInfo["host"] = r.Host
		writeJSON(w, http.StatusForbidden, verr)
	})
}

// hostAccepted reports whether host is listed (an entry without a port
// matches any port, "*" matches all) or, with an empty list, is a loopback
// name. A request without Host (HTTP/1.0) comes from no browser and passes.
func hostAccepted(allowed []string, host string) bool {
	if host == "" {
		return true
	}
	name, _ := splitHostPort(strings.ToLower(host))
	if len(allowed) == 0 {
		return isLoopback(name)
	}
	for _, a := range allowed {
		a = strings.ToLower(a)
		if a == "*" || a == strings.ToLower(host) {
			return true
		}
		if _, _, err := net.SplitHostPort(a); err != nil && strings.Trim(a, "[]") == name {
			return true
		}
	}
	return false
}

// newCrossSiteGuard returns the check of state-changing requests: a browser
// request from another origin (Sec-Fetch-Site, or an Origin that is not the
// Host, "null" included: sandboxed frames and some redirects send it) is
// refused unless its Origin is listed in trusted ("*" = any).
func newCrossSiteGuard(trusted []string) (*http.CrossOriginProtection, error) {
	c := http.NewCrossOriginProtection()
	for _, o := range trusted {
		if o == "*" {
			return nil, nil
		}
		if err := c.AddTrustedOrigin(strings.TrimSuffix(o, "/")); err != nil {
			return nil, fmt.Errorf("api: allowed origin %q: %w", o, err)
		}
	}
	return c, nil
}

// crossSiteGuard refuses cross-site browser requests to a route that
// changes state (POST): CSRF from any web page the user visits.
func (s *server) crossSiteGuard(h http.Handler) http.Handler {
	if s.cop == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := s.cop.Check(r)
		if err == nil && r.Header.Get("Origin") == "null" {
			err = errors.New("opaque origin")
		}
		if err != nil {
			origin := r.Header.Get("Origin")
			s.log.Warn("request refused: cross-site", "origin", origin, "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"),
				"host", r.Host, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			verr := executor.NewValidationError(typeCrossSite,
				fmt.Sprintf("Request refused: %s from Origin %q to Host %q changes state; list the origin in websocket.allowed_origins to allow it", r.Method, origin, r.Host),
				err.Error())
			verr.Detail.ExtraInfo["origin"] = origin
			writeJSON(w, http.StatusForbidden, verr)
			return
		}
		h.ServeHTTP(w, r)
	})
}
