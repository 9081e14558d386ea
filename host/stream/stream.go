package stream

import (
	"errors"
	"fmt"
	"time"
)

// Message is one WebSocket message of a client's stream, kept as the bytes
// the hub writes: Head then Body, as one message. Neither is modified after
// Append; Body is usually shared with other clients' logs.
type Message struct {
	Binary bool   // a binary message; text otherwise
	Head   []byte // per-client prefix (may be nil)
	Body   []byte // shared bytes
}

// Len is the size of the message on the wire.
func (m Message) Len() int { return len(m.Head) + len(m.Body) }

// Entry is a message with its position in the log.
type Entry struct {
	Seq  uint64
	Time time.Time // when it was appended
	Message
}

// Log is the per-client ordered stream. Implementations are safe for
// concurrent use; appends to one client's log must come from one writer at a
// time (the hub holds its commit lock), as with JetStream's expected
// sequence.
type Log interface {
	// Open returns clientID's epoch and the seq of its last entry (0 when
	// empty), creating the log with a new epoch when there is none.
	Open(clientID string) (epoch string, last uint64)
	// Append adds entries to clientID's log. Their Seq must continue the log
	// (last+1, +1 each) or a *SeqError is returned and nothing is added.
	// Entries older than the bounds are trimmed after the append: per log
	// by bytes and age, over all logs by the memory held (a body shared by
	// several logs counts once).
	Append(clientID string, entries []Entry) error
	// Read returns the entries after seq `after`, in order. A log with
	// another epoch gives *EpochError; a log that no longer holds after+1
	// (trimmed) gives *GapError; after beyond the last entry gives a
	// *SeqError.
	Read(clientID, epoch string, after uint64) ([]Entry, error)
	// Delete forgets clientID's log; the next Open starts a new epoch.
	Delete(clientID string)
	// Expire trims entries older than the age bound now; the hub calls it
	// periodically so that idle logs free their memory (a no-op for stores
	// that expire entries themselves).
	Expire()
	// Stats returns the counters.
	Stats() Stats
}

// Stats are a Log's counters.
type Stats struct {
	Logs            int    // client logs held
	Entries         int    // entries held
	Bytes           int64  // bytes of the entries, a body shared by several logs counted in each (what replays would send)
	UniqueBytes     int64  // memory held: heads, and each shared body once (what the global bound counts)
	PeakBytes       int64  // the largest Bytes seen
	PeakUniqueBytes int64  // the largest UniqueBytes seen
	TrimmedBytes    uint64 // entries trimmed because a log was over its byte bound
	TrimmedAge      uint64 // entries trimmed because they were older than the age bound
	TrimmedGlobal   uint64 // entries trimmed because all logs together were over the global bound
	OverflowedLogs  uint64 // times a byte bound trimmed entries (their clients may no longer resume)
}

// ErrLog is what every error of this package wraps.
var ErrLog = errors.New("stream")

// EpochError: the position names another epoch than the log's.
type EpochError struct {
	ClientID   string
	Got, Epoch string
}

func (e *EpochError) Error() string {
	return fmt.Sprintf("stream: client %q: epoch %q is not the current epoch %q", e.ClientID, e.Got, e.Epoch)
}
func (e *EpochError) Unwrap() error { return ErrLog }

// GapError: the log no longer holds the entry after the position.
type GapError struct {
	ClientID string
	After    uint64 // the position asked for
	First    uint64 // the oldest seq still held (Last+1 when empty)
	Last     uint64
}

func (e *GapError) Error() string {
	return fmt.Sprintf("stream: client %q: seq %d is older than the window, which holds %d..%d", e.ClientID, e.After, e.First, e.Last)
}
func (e *GapError) Unwrap() error { return ErrLog }

// SeqError: a seq that does not continue the log, or a position past its end.
type SeqError struct {
	ClientID string
	Got      uint64
	Last     uint64
}

func (e *SeqError) Error() string {
	return fmt.Sprintf("stream: client %q: seq %d does not follow the log's last seq %d", e.ClientID, e.Got, e.Last)
}
func (e *SeqError) Unwrap() error { return ErrLog }
