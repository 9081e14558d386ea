package api

import (
	"net"
	"net/http"
	"net/url"
	"strings"
)

// sameOriginOnLoopback is ComfyUI's origin_only_middleware: when the Host is
// a loopback address, a request whose Origin names another host is refused,
// so a page on the web cannot drive a server on the user's machine.
func sameOriginOnLoopback(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !originAllowed(r.Host, r.Header.Get("Origin")) {
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
