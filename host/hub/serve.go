package hub

import (
	"crypto/subtle"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nodecast/nodecast/protocol"
)

// maxClientIDLen bounds the clientId a client may choose.
const maxClientIDLen = 256

// ServeHTTP is ComfyUI's WebSocket endpoint (/ws and /api/ws). It checks Host,
// Origin and the token, then takes the clientId: a clientId already
// connected is taken over (the old socket is closed with 4001), or refused
// with 409 under DuplicateRefuse. It upgrades, sends the status message and
// what was held for the clientId, and serves the connection until it ends.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if re := h.admit(r); re != nil {
		h.refuse(w, r, re)
		return
	}
	id := r.URL.Query().Get("clientId")
	if id == "" {
		id = strings.ReplaceAll(protocol.NewUUID(), "-", "") // uuid.uuid4().hex, as ComfyUI
	}
	c := newClient(h, id, r.RemoteAddr)
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.refuse(w, r, &refusal{Status: http.StatusServiceUnavailable, Reason: "server shutting down"})
		return
	}
	s := h.sessions[id]
	if s != nil && (s.c != nil || s.upgrading != nil) && h.opts.OnDuplicateClientID == DuplicateRefuse {
		h.mu.Unlock()
		h.refuse(w, r, &refusal{Status: http.StatusConflict,
			Reason: "clientId " + id + " is already connected; close that connection first or use another clientId"})
		return
	}
	if s == nil {
		s = &session{id: id, detachedAt: time.Now()}
		h.sessions[id] = s
	}
	s.upgrading = c // the newest connection for an id wins
	h.mu.Unlock()

	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil { // the upgrader has answered the request already
		h.mu.Lock()
		if s.upgrading == c {
			s.upgrading = nil
		}
		h.mu.Unlock()
		return
	}
	c.conn = conn
	status, _ := protocol.Marshal(protocol.TypeStatus, protocol.StatusData{
		Status: protocol.Status{ExecInfo: protocol.ExecInfo{QueueRemaining: h.opts.QueueRemaining()}},
		SID:    id,
	})

	h.commitMu.Lock()
	h.mu.Lock()
	code, text := 0, ""
	switch {
	case h.closed:
		code, text = CloseShuttingDown, "server shutting down"
	case s.upgrading != c || h.sessions[id] != s:
		code, text = CloseReplaced, protocol.CloseReplacedText // a newer connection came during the upgrade
	}
	if code != 0 {
		if s.upgrading == c {
			s.upgrading = nil
		}
		h.mu.Unlock()
		h.commitMu.Unlock()
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(h.opts.WriteTimeout))
		conn.Close()
		return
	}
	s.upgrading = nil
	old := s.c
	if old != nil {
		// Detach the old socket first, so that the new one takes over the
		// session as a reconnect would (held messages, resume).
		h.mu.Unlock()
		h.detachLocked(old)
		h.mu.Lock()
	}
	h.attachLocked(s, c, status)
	h.writers.Add(1)
	h.mu.Unlock()
	h.commitMu.Unlock()

	if old != nil {
		old.closeNow(CloseReplaced, protocol.CloseReplacedText)
		h.takeovers.Add(1)
		h.log.Info("hub: connection replaced by a new one with the same clientId", "client", id,
			"old", old.remote, "new", r.RemoteAddr)
	}
	h.log.Debug("hub: client connected", "client", id, "remote", r.RemoteAddr)
	go c.writeLoop()
	c.readLoop()
}

// refusal is why ServeHTTP refused a connection before upgrading it; the
// HTTP status and the reason are what the client receives.
type refusal struct {
	Status int
	Reason string
}

// admit checks Host, Origin, token and clientId, in that order.
func (h *Hub) admit(r *http.Request) *refusal {
	if len(h.opts.AllowedHosts) > 0 && !hostAllowed(h.opts.AllowedHosts, r.Host) {
		return &refusal{Status: http.StatusForbidden, Reason: "host " + r.Host + " is not allowed"}
	}
	if origin := r.Header.Get("Origin"); origin != "" && !h.originAllowed(origin, r.Host) {
		return &refusal{Status: http.StatusForbidden, Reason: "origin " + origin + " is not allowed"}
	}
	if h.opts.Token != "" && !tokenMatches(h.opts.Token, r) {
		return &refusal{Status: http.StatusUnauthorized, Reason: "missing or wrong token (send ?token= or Authorization: Bearer)"}
	}
	if id := r.URL.Query().Get("clientId"); len(id) > maxClientIDLen || strings.IndexFunc(id, isControl) >= 0 {
		return &refusal{Status: http.StatusBadRequest, Reason: "clientId must be at most 256 bytes without control characters"}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func (h *Hub) refuse(w http.ResponseWriter, r *http.Request, re *refusal) {
	h.refused.Add(1)
	h.log.Warn("hub: connection refused", "status", re.Status, "reason", re.Reason, "remote", r.RemoteAddr,
		"host", r.Host, "origin", r.Header.Get("Origin"))
	if re.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="nodecast"`)
	}
	http.Error(w, re.Reason, re.Status)
}

// upgradeError answers a request that is not a valid WebSocket handshake.
func (h *Hub) upgradeError(w http.ResponseWriter, r *http.Request, status int, reason error) {
	h.refused.Add(1)
	h.log.Warn("hub: websocket handshake failed", "status", status, "reason", reason, "remote", r.RemoteAddr)
	http.Error(w, reason.Error(), status)
}

func (h *Hub) originAllowed(origin, host string) bool {
	if c := strings.TrimSuffix(h.opts.CORSOrigin, "/"); c == "*" || (c != "" && strings.EqualFold(c, origin)) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return originListed(h.opts.AllowedOrigins, origin)
	}
	if len(h.opts.AllowedOrigins) == 0 {
		return strings.EqualFold(u.Host, host)
	}
	return originListed(h.opts.AllowedOrigins, strings.ToLower(u.Scheme)+"://"+u.Host)
}

func originListed(allowed []string, origin string) bool {
	for _, a := range allowed {
		if a == "*" || strings.EqualFold(strings.TrimSuffix(a, "/"), origin) {
			return true
		}
	}
	return false
}

func hostAllowed(allowed []string, host string) bool {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	for _, a := range allowed {
		if strings.EqualFold(a, host) {
			return true
		}
		if _, _, err := net.SplitHostPort(a); err != nil && strings.EqualFold(strings.Trim(a, "[]"), name) {
			return true
		}
	}
	return false
}

func tokenMatches(token string, r *http.Request) bool {
	got := r.URL.Query().Get("token")
	if auth := r.Header.Get("Authorization"); got == "" && len(auth) > 7 && strings.EqualFold(auth[:7], "Bearer ") {
		got = strings.TrimSpace(auth[7:])
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}
