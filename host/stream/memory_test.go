package stream

import (
	"errors"
	"testing"
	"time"
)

func msgs(first uint64, n, size int, body []byte) []Entry {
	out := make([]Entry, n)
	for i := range out {
		out[i] = Entry{Seq: first + uint64(i), Message: Message{Head: []byte{byte(i)}, Body: body[:size-1]}}
	}
	return out
}

func TestMemoryLog(t *testing.T) {
	now := time.Unix(1000, 0)
	m := NewMemory(MemoryOptions{MaxBytes: 100, MaxAge: time.Minute, GlobalBytes: 110, Now: func() time.Time { return now }})
	body := make([]byte, 64)
	epoch, last := m.Open("a")
	if epoch == "" || last != 0 {
		t.Fatalf("Open: %q %d", epoch, last)
	}
	if err := m.Append("a", msgs(1, 3, 10, body)); err != nil {
		t.Fatal(err)
	}
	var se *SeqError
	if err := m.Append("a", msgs(5, 1, 10, body)); !errors.As(err, &se) || se.Last != 3 {
		t.Fatalf("append with a hole: %v", err)
	}
	got, err := m.Read("a", epoch, 1)
	if err != nil || len(got) != 2 || got[0].Seq != 2 || got[1].Seq != 3 {
		t.Fatalf("Read after 1: %v %v", got, err)
	}
	if got, err := m.Read("a", epoch, 3); err != nil || len(got) != 0 {
		t.Fatalf("Read at the end: %v %v", got, err)
	}
	if _, err := m.Read("a", epoch, 4); !errors.As(err, &se) {
		t.Fatalf("Read ahead: %v", err)
	}
	var ee *EpochError
	if _, err := m.Read("a", "other", 1); !errors.As(err, &ee) || !errors.Is(err, ErrLog) {
		t.Fatalf("Read of another epoch: %v", err)
	}

	// Per-log bytes: 12 entries of 10 bytes keep the last 10.
	m.Append("a", msgs(4, 9, 10, body))
	var ge *GapError
	if _, err := m.Read("a", epoch, 1); !errors.As(err, &ge) || ge.First != 3 || ge.Last != 12 {
		t.Fatalf("Read trimmed: %v", err)
	}
	if s := m.Stats(); s.Bytes != 100 || s.TrimmedBytes != 2 || s.OverflowedLogs != 1 {
		t.Fatalf("stats %+v", s)
	}

	// Global: it counts memory, so "a"'s ten entries sharing one body hold
	// 10 heads + 9 bytes. A second log of five 20-byte entries with bodies
	// of their own pushes the memory to 119, over 110: the oldest entries
	// go, each freeing its head, until 110 are held.
	if s := m.Stats(); s.UniqueBytes != 19 {
		t.Fatalf("memory of shared bodies: %+v, want 19", s)
	}
	now = now.Add(time.Second)
	own := make([]Entry, 5)
	for i := range own {
		own[i] = Entry{Seq: uint64(i + 1), Message: Message{Head: []byte{1}, Body: make([]byte, 19)}}
	}
	m.Append("b", own)
	if s := m.Stats(); s.UniqueBytes != 110 || s.TrimmedGlobal != 9 || s.Bytes != 110 {
		t.Fatalf("global bound: %+v, want 110 bytes held after trimming 9 of a's entries", s)
	}
	if got, err := m.Read("b", mustEpoch(m, "b"), 0); err != nil || len(got) != 5 {
		t.Fatalf("the newer log kept everything: %v %v", len(got), err)
	}

	// Age.
	now = now.Add(2 * time.Minute)
	m.Expire()
	if s := m.Stats(); s.Bytes != 0 || s.Entries != 0 || s.TrimmedAge == 0 {
		t.Fatalf("after expiry: %+v", s)
	}
	if _, last := m.Open("a"); last != 12 {
		t.Fatalf("expiry keeps the position: %d", last)
	}
	m.Delete("a")
	if e, last := m.Open("a"); e == epoch || last != 0 {
		t.Fatalf("a deleted log starts a new epoch: %q %d", e, last)
	}
	// Shared bodies are referenced once.
	if heads, bodies := m.Footprint(); heads != 0 || bodies != 0 {
		t.Fatalf("footprint of empty logs: %d %d", heads, bodies)
	}
	m.Append("c", msgs(1, 2, 10, body))
	m.Append("d", msgs(1, 2, 10, body))
	if heads, bodies := m.Footprint(); heads != 4 || bodies != 9 {
		t.Fatalf("footprint: heads %d bodies %d, want 4 and one shared body of 9", heads, bodies)
	}
	if s := m.Stats(); s.UniqueBytes != 13 || s.Bytes != 40 {
		t.Fatalf("stats %+v, want 13 bytes held for 40 accounted", s)
	}
	m.Delete("c")
	m.Delete("d")
	if s := m.Stats(); s.UniqueBytes != 0 || s.Bytes != 0 {
		t.Fatalf("after Delete: %+v", s)
	}
}

func mustEpoch(m *Memory, id string) string { e, _ := m.Open(id); return e }
