package hub

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nodecast/nodecast/host/stream"
	"github.com/nodecast/nodecast/protocol"
)

// firstMessageGrace is how long a socket that reconnects to a resume session
// may take to send its first message (feature_flags with resume_from) before
// it is served as a plain client and the window is dropped. Generous: a
// resume client sends it at once, but a loaded machine can stall a process
// for seconds (10 s was seen in the chaos test on two busy cores), and
// losing the window is worse than a plain client waiting.
const firstMessageGrace = time.Minute

// session is what the hub keeps for one clientId, across its sockets. Its
// fields are guarded by Hub.mu; changes of c, resume and waiting also hold
// Hub.commitMu, so that each commit sees one consistent state.
type session struct {
	id        string
	c         *client // the socket holding the id; nil while detached
	upgrading *client // the newest connection being upgraded for this id
	flags     protocol.FeatureFlags
	parts     bool // receives PART frames
	preview   bool // sent supports_preview_metadata: type 4 instead of type 1
	resume    bool // messages are numbered and kept in the window
	waiting   bool // c reconnected to a resume session and has not said how it resumes
	waitTimer *time.Timer

	heldEpoch  string // plain: the held log's position when the socket left
	heldFrom   uint64
	detachedAt time.Time
}

// attachLocked makes c the socket of s, after its status message: a plain
// client gets its held messages and the running node; a client reconnecting
// to a resume session waits for its feature_flags. commitMu and mu are held.
func (h *Hub) attachLocked(s *session, c *client, status []byte) {
	s.c = c
	c.sess = s
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status = status
	c.pushLocked(&batch{frames: []stream.Message{{Body: status}}, size: int64(len(status))})
	if s.resume {
		s.waiting = true
		s.waitTimer = time.AfterFunc(firstMessageGrace, func() { h.endWaiting(c, "no feature_flags within "+firstMessageGrace.String()) })
		return
	}
	var entries []stream.Entry
	if s.heldEpoch != "" {
		var err error
		entries, err = h.held.Read(s.id, s.heldEpoch, s.heldFrom)
		var gap *stream.GapError
		if errors.As(err, &gap) { // the oldest held messages were trimmed: deliver what is left
			entries, _ = h.held.Read(s.id, s.heldEpoch, gap.First-1)
		}
		h.held.Delete(s.id)
		s.heldEpoch, s.heldFrom = "", 0
	}
	exec := h.executing[s.id]
	if exec == nil {
		exec = h.executing[""]
	}
	for _, e := range entries {
		c.pushLocked(&batch{frames: []stream.Message{e.Message}, size: int64(e.Len())})
		if exec != nil && len(e.Body) > 0 && &e.Body[0] == &exec[0] {
			exec = nil // already among the held messages
		}
	}
	h.heldDelivered.Add(uint64(len(entries)))
	if exec != nil {
		c.pushLocked(&batch{frames: []stream.Message{{Body: exec}}, size: int64(len(exec))})
	}
}

// detach frees s from c when c was its socket: from now on the session's
// messages are held (plain) or only kept in the window (resume).
func (h *Hub) detach(c *client) {
	h.commitMu.Lock()
	defer h.commitMu.Unlock()
	h.detachLocked(c)
}

// detachLocked is detach with commitMu held.
func (h *Hub) detachLocked(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := c.sess
	if s == nil || s.c != c {
		return
	}
	s.c = nil
	s.waiting = false
	if s.waitTimer != nil {
		s.waitTimer.Stop()
		s.waitTimer = nil
	}
	s.detachedAt = time.Now()
	if s.resume {
		return // everything is in the window
	}
	// A plain client's messages that were queued but not written are held
	// first, then what comes while it is away. The one being written, if
	// any, is lost with the connection.
	var epoch string
	epoch, s.heldFrom = h.held.Open(s.id)
	s.heldEpoch = epoch
	c.mu.Lock()
	q := c.queue
	if c.writing && len(q) > 0 {
		q = q[1:]
	}
	if len(q) > 0 && len(c.status) > 0 && len(q[0].Body) > 0 && &q[0].Body[0] == &c.status[0] {
		q = q[1:] // the next connection gets its own status
	}
	c.queue, c.queued = nil, 0
	c.mu.Unlock()
	if len(q) > 0 {
		entries := make([]stream.Entry, len(q))
		for i, m := range q {
			entries[i] = stream.Entry{Seq: s.heldFrom + 1 + uint64(i), Message: m}
		}
		if err := h.held.Append(s.id, entries); err != nil {
			h.log.Error("hub: held append failed", "client", s.id, "err", err)
		}
	}
}

// endWaiting serves a socket that reconnected to a resume session, but did
// not ask to resume, as a plain client from now on.
func (h *Hub) endWaiting(c *client, why string) {
	h.commitMu.Lock()
	defer h.commitMu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	s := c.sess
	if s == nil || s.c != c || !s.waiting {
		return
	}
	s.waiting, s.resume = false, false
	h.window.Delete(s.id)
	h.log.Info("hub: reconnected client did not resume; served live without seq", "client", s.id, "why", why)
}

// handleFlags acts on a feature_flags message: it records the flags, and for
// a client that sent supports_resume numbers its stream from now on and,
// when it sent resume_from, replays what it missed or says why it cannot.
func (h *Hub) handleFlags(c *client, flags protocol.FeatureFlags, first bool) {
	h.commitMu.Lock()
	defer h.commitMu.Unlock()
	h.mu.Lock()
	s := c.sess
	if s == nil || s.c != c {
		h.mu.Unlock()
		return
	}
	wasWaiting := s.waiting
	s.waiting = false
	if s.waitTimer != nil {
		s.waitTimer.Stop()
		s.waitTimer = nil
	}
	s.flags = flags
	wantResume := flags.Bool(protocol.FlagResume)
	s.parts = flags.Bool(protocol.FlagImageParts) || wantResume
	s.preview = flags.Bool(protocol.FlagPreviewMetadata)
	if !wantResume {
		if s.resume {
			s.resume = false
			h.window.Delete(s.id)
		}
		h.mu.Unlock()
		c.mu.Lock()
		c.bound = 0
		c.mu.Unlock()
		c.enqueue(&batch{frames: []stream.Message{{Body: h.flagsMsg}}, size: int64(len(h.flagsMsg))})
		return
	}
	s.resume = true
	if c, ok := h.window.(interface{ Claim(string) }); ok {
		c.Claim(s.id) // a shared window (host/cluster): this host holds the socket now
	}
	epoch, last := h.window.Open(s.id)
	st := protocol.ResumeState{Epoch: epoch, Seq: last}
	var replay []stream.Entry
	if raw, asked := flags[protocol.FlagResumeFrom]; asked {
		recovered, reason := false, ""
		from, err := parsePosition(raw)
		switch {
		case err != nil:
			reason = "resume_from: " + err.Error()
		case !first && !wasWaiting:
			reason = "resume_from is honoured only in a connection's first feature_flags"
		default:
			replay, err = h.window.Read(s.id, from.Epoch, from.Seq)
			var ee *stream.EpochError
			var ge *stream.GapError
			var se *stream.SeqError
			var size int64
			for _, e := range replay {
				size += int64(e.Len())
			}
			switch {
			case err == nil && size > max(h.opts.QueueBytes, h.opts.Sessions.WindowBytes):
				// More than the client may have queued, in a window
				// without a byte bound (or a store that holds more).
				replay = nil
				reason = protocol.ResumeTooLarge + ": " + strconv.FormatInt(size, 10) +
					" bytes to replay, over the queue bound of " + strconv.FormatInt(max(h.opts.QueueBytes, h.opts.Sessions.WindowBytes), 10)
			case err == nil:
				recovered, st.Seq = true, from.Seq
			case errors.As(err, &ee):
				reason = protocol.ResumeEpochChanged + ": " + err.Error()
			case errors.As(err, &ge):
				reason = protocol.ResumeTooOld + ": " + err.Error()
			case errors.As(err, &se):
				reason = protocol.ResumeAhead + ": " + err.Error()
			default:
				reason = err.Error()
			}
		}
		st.Recovered, st.Reason = &recovered, reason
		if recovered {
			h.resumed.Add(1)
		} else {
			h.resumeFailed.Add(1)
			h.log.Info("hub: resume not possible; delivering live", "client", s.id, "reason", reason)
		}
	}
	h.mu.Unlock()

	answer := copyFlags(h.flags)
	answer[protocol.FlagResumeState] = st
	msg, _ := protocol.Marshal(protocol.TypeFeatureFlags, answer)
	c.mu.Lock()
	c.bound = h.resumeBound()
	c.mu.Unlock()
	c.enqueue(&batch{frames: []stream.Message{{Body: msg}}, size: int64(len(msg))})
	if len(replay) > 0 {
		// The replay is at most the window, which holds it anyway: it is
		// queued whole, outside the bound.
		c.mu.Lock()
		if !c.gone && !c.evicted {
			var size int64
			for _, e := range replay {
				c.queue = append(c.queue, e.Message)
				size += int64(e.Len())
			}
			c.queued += size
			c.replayEnd = c.written + c.queued
			c.signal()
		}
		c.mu.Unlock()
	}
}

// resumeBound is the queue bound of a resume client: half its window (or
// QueueBytes when smaller), so that when it is evicted for falling behind,
// the window still holds every message after the last one it was sent, and
// it can resume.
func (h *Hub) resumeBound() int64 {
	b := h.opts.QueueBytes
	if w := h.opts.Sessions.WindowBytes; w > 0 {
		b = min(b, max(w/2, 1))
	}
	return b
}

// parsePosition reads a resume_from value.
func parsePosition(raw any) (protocol.Position, error) {
	var p protocol.Position
	j, err := json.Marshal(raw)
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(j, &p); err != nil {
		return p, errors.New(`want {"epoch":string,"seq":number}`)
	}
	return p, nil
}

// withSeq returns m with seq set: a PART frame's header gets a "seq" field,
// a JSON message a top-level "seq". Only the small head is new; the body
// stays shared.
func withSeq(m stream.Message, seq uint64) stream.Message {
	if m.Binary { // a PART frame: Head is [u32 PART][u32 len(json)][json]
		j := m.Head[8:]
		head := make([]byte, 8, len(m.Head)+28)
		head = strconv.AppendUint(append(head, `{"seq":`...), seq, 10)
		if len(j) > 2 {
			head = append(head, ',')
		}
		head = append(head, j[1:]...)
		binary.BigEndian.PutUint32(head[0:], protocol.BinaryPart)
		binary.BigEndian.PutUint32(head[4:], uint32(len(head)-8))
		return stream.Message{Binary: true, Head: head, Body: m.Body}
	}
	// A JSON text message {"type":...}: Head is nil, Body starts with '{'.
	head := append(strconv.AppendUint([]byte(`{"seq":`), seq, 10), ',')
	return stream.Message{Head: head, Body: m.Body[1:]}
}

// janitor forgets detached sessions after their age bound and trims the
// logs by age, so that idle clients free their memory.
func (h *Hub) janitor() {
	defer close(h.janitorDone)
	so := h.opts.Sessions
	every := time.Second
	for _, a := range []time.Duration{so.HeldAge, so.WindowAge} {
		if a > 0 {
			every = min(every, max(a/4, 10*time.Millisecond))
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-h.stopJanitor:
			return
		case <-t.C:
		}
		h.expireSessions(time.Now())
		h.window.Expire()
		h.held.Expire()
	}
}

// sessionTTL is how long a detached session is kept.
func (h *Hub) sessionTTL(s *session) time.Duration {
	age := h.opts.Sessions.HeldAge
	if s.resume {
		age = h.opts.Sessions.WindowAge
	}
	if age <= 0 {
		age = time.Hour // unbounded messages, but the session itself is forgotten
	}
	return age
}

func (h *Hub) expireSessions(now time.Time) {
	h.commitMu.Lock()
	defer h.commitMu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, s := range h.sessions {
		if s.c == nil && s.upgrading == nil && now.Sub(s.detachedAt) > h.sessionTTL(s) {
			delete(h.sessions, id)
			h.window.Delete(id)
			h.held.Delete(id)
			h.expiredSessions.Add(1)
		}
	}
}
