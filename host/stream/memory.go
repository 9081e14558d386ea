package stream

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// MemoryOptions bounds a Memory log. A bound <= 0 is off.
type MemoryOptions struct {
	MaxBytes    int64         // per client log
	MaxAge      time.Duration // per entry
	GlobalBytes int64         // over every log together
	// Now is the clock; nil = time.Now.
	Now func() time.Time
}

// Memory is the in-memory Log.
type Memory struct {
	opts MemoryOptions

	mu     sync.Mutex
	logs   map[string]*memLog
	bytes  int64             // every entry's Len, a shared body once per log
	unique int64             // heads, and each shared body once: the memory held
	refs   map[bodyKey]int32 // how many entries hold each body
	stats  Stats
}

// bodyKey identifies a body by its bytes' address and length, so that a
// body shared by many logs is counted once against the global bound.
type bodyKey struct {
	p *byte
	n int
}

type memLog struct {
	epoch   string
	last    uint64
	entries []Entry // oldest first; entries[i].Seq == last-len+1+i
	bytes   int64
}

var _ Log = (*Memory)(nil)

// NewMemory returns an empty in-memory log.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Memory{opts: opts, logs: make(map[string]*memLog), refs: make(map[bodyKey]int32)}
}

func newEpoch() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Open implements Log.
func (m *Memory) Open(clientID string) (string, uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.log(clientID)
	return l.epoch, l.last
}

func (m *Memory) log(clientID string) *memLog {
	l := m.logs[clientID]
	if l == nil {
		l = &memLog{epoch: newEpoch()}
		m.logs[clientID] = l
	}
	return l
}

// Append implements Log.
func (m *Memory) Append(clientID string, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.log(clientID)
	for i := range entries {
		if entries[i].Seq != l.last+1+uint64(i) {
			return &SeqError{ClientID: clientID, Got: entries[i].Seq, Last: l.last + uint64(i)}
		}
	}
	for _, e := range entries {
		if e.Time.IsZero() {
			e.Time = now
		}
		n := int64(e.Len())
		l.entries = append(l.entries, e)
		l.bytes += n
		m.bytes += n
		m.ref(e.Message, 1)
	}
	l.last += uint64(len(entries))
	m.stats.PeakBytes = max(m.stats.PeakBytes, m.bytes)
	m.stats.PeakUniqueBytes = max(m.stats.PeakUniqueBytes, m.unique)
	m.trimLocked(l, now)
	return nil
}

// trimLocked applies the bounds after l grew.
func (m *Memory) trimLocked(l *memLog, now time.Time) {
	if m.opts.MaxBytes > 0 && l.bytes > m.opts.MaxBytes {
		m.stats.OverflowedLogs++
		for l.bytes > m.opts.MaxBytes {
			m.popLocked(l)
			m.stats.TrimmedBytes++
		}
	}
	m.expireLocked(l, now)
	if m.opts.GlobalBytes > 0 && m.unique > m.opts.GlobalBytes {
		m.stats.OverflowedLogs++
		for m.unique > m.opts.GlobalBytes {
			// The log whose oldest entry is oldest loses it: with many
			// clients this scan is short next to the bytes it frees.
			var oldest *memLog
			for _, o := range m.logs {
				if len(o.entries) > 0 && (oldest == nil || o.entries[0].Time.Before(oldest.entries[0].Time)) {
					oldest = o
				}
			}
			if oldest == nil {
				break
			}
			m.popLocked(oldest)
			m.stats.TrimmedGlobal++
		}
	}
}

func (m *Memory) expireLocked(l *memLog, now time.Time) {
	if m.opts.MaxAge <= 0 {
		return
	}
	cut := now.Add(-m.opts.MaxAge)
	for len(l.entries) > 0 && l.entries[0].Time.Before(cut) {
		m.popLocked(l)
		m.stats.TrimmedAge++
	}
}

// ref counts msg's memory in (d = 1) or out (d = -1).
func (m *Memory) ref(msg Message, d int32) {
	m.unique += int64(d) * int64(len(msg.Head))
	if len(msg.Body) == 0 {
		return
	}
	k := bodyKey{&msg.Body[0], len(msg.Body)}
	r := m.refs[k] + d
	switch {
	case r == 0:
		delete(m.refs, k)
		m.unique -= int64(len(msg.Body))
	case r == 1 && d > 0:
		m.refs[k] = r
		m.unique += int64(len(msg.Body))
	default:
		m.refs[k] = r
	}
}

func (m *Memory) popLocked(l *memLog) {
	n := int64(l.entries[0].Len())
	m.ref(l.entries[0].Message, -1)
	l.entries[0] = Entry{}
	l.entries = l.entries[1:]
	if len(l.entries) == 0 {
		l.entries = nil
	}
	l.bytes -= n
	m.bytes -= n
}

// Read implements Log.
func (m *Memory) Read(clientID, epoch string, after uint64) ([]Entry, error) {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.logs[clientID]
	if l == nil || l.epoch != epoch {
		cur := ""
		if l != nil {
			cur = l.epoch
		}
		return nil, &EpochError{ClientID: clientID, Got: epoch, Epoch: cur}
	}
	m.expireLocked(l, now)
	if after > l.last {
		return nil, &SeqError{ClientID: clientID, Got: after, Last: l.last}
	}
	first := l.last + 1 - uint64(len(l.entries))
	if after+1 < first {
		return nil, &GapError{ClientID: clientID, After: after, First: first, Last: l.last}
	}
	return append([]Entry(nil), l.entries[after+1-first:]...), nil
}

// Expire trims every log's entries older than MaxAge; the hub calls it
// periodically so that idle logs free their memory.
func (m *Memory) Expire() {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.logs {
		m.expireLocked(l, now)
	}
}

// Delete implements Log.
func (m *Memory) Delete(clientID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.logs[clientID]; l != nil {
		for _, e := range l.entries {
			m.ref(e.Message, -1)
		}
		m.bytes -= l.bytes
		delete(m.logs, clientID)
	}
}

// Stats implements Log.
func (m *Memory) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats
	s.Logs = len(m.logs)
	s.Bytes = m.bytes
	s.UniqueBytes = m.unique
	for _, l := range m.logs {
		s.Entries += len(l.entries)
	}
	return s
}

// Footprint is the memory the log's entries reference, recounted by
// walking every entry: every Head, and every Body once however many logs
// share it. Stats.UniqueBytes is the same figure kept up to date; this is
// the check of it, for tests.
func (m *Memory) Footprint() (heads, bodies int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := make(map[bodyKey]bool)
	for _, l := range m.logs {
		for _, e := range l.entries {
			heads += int64(len(e.Head))
			if len(e.Body) > 0 && !seen[bodyKey{&e.Body[0], len(e.Body)}] {
				seen[bodyKey{&e.Body[0], len(e.Body)}] = true
				bodies += int64(len(e.Body))
			}
		}
	}
	return heads, bodies
}
