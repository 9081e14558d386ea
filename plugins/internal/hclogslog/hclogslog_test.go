package hclogslog

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

type record struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

type recorder struct {
	mu      sync.Mutex
	min     slog.Level
	records []record
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= r.min }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler           { return r }
func (r *recorder) WithGroup(string) slog.Handler                { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	attrs := map[string]string{}
	rec.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	r.mu.Lock()
	r.records = append(r.records, record{rec.Level, rec.Message, attrs})
	r.mu.Unlock()
	return nil
}

func TestLevels(t *testing.T) {
	rec := &recorder{min: LevelTrace}
	root := New(slog.New(rec), Options{Promote: "myplugin"})
	stderr := root.Named("myplugin").With("pid", 7)
	for _, tc := range []struct {
		name string
		log  func()
		want slog.Level
	}{
		{"trace", func() { root.Trace("m") }, LevelTrace},
		{"debug", func() { root.Debug("m") }, slog.LevelDebug},
		{"info", func() { root.Info("m") }, slog.LevelInfo},
		{"warn", func() { root.Warn("m") }, slog.LevelWarn},
		{"error", func() { root.Error("m") }, slog.LevelError},
		{"plugin stderr debug is info", func() { stderr.Debug("m") }, slog.LevelInfo},
		{"plugin stderr trace is debug", func() { stderr.Trace("m") }, slog.LevelDebug},
		{"plugin stderr error", func() { stderr.Log(hclog.Error, "m") }, slog.LevelError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.records = nil
			tc.log()
			if len(rec.records) != 1 || rec.records[0].level != tc.want {
				t.Errorf("records = %+v, want one at %v", rec.records, tc.want)
			}
		})
	}
	stderr.Info("hello", "k", "v")
	last := rec.records[len(rec.records)-1]
	if last.attrs["logger"] != "myplugin" || last.attrs["pid"] != "7" || last.attrs["k"] != "v" {
		t.Errorf("attrs = %v", last.attrs)
	}
}

func TestGetLevel(t *testing.T) {
	for _, tc := range []struct {
		min  slog.Level
		want hclog.Level
	}{
		{LevelTrace, hclog.Trace},
		{slog.LevelDebug, hclog.Debug},
		{slog.LevelInfo, hclog.Info},
		{slog.LevelError, hclog.Error},
		{slog.LevelError + 1, hclog.Off},
	} {
		if got := New(slog.New(&recorder{min: tc.min}), Options{}).GetLevel(); got != tc.want {
			t.Errorf("min %v: GetLevel = %v, want %v", tc.min, got, tc.want)
		}
	}
	// The stderr sub-logger reports Debug when Info is on, so go-plugin does
	// not drop plugin lines before they are promoted.
	l := New(slog.New(&recorder{min: slog.LevelInfo}), Options{Promote: "p"}).Named("p")
	if got := l.GetLevel(); got != hclog.Debug {
		t.Errorf("promoted GetLevel = %v, want Debug", got)
	}
}

func TestLineWriter(t *testing.T) {
	rec := &recorder{}
	w := NewLineWriter(slog.New(rec), slog.LevelInfo, "stream", "stderr")
	for _, s := range []string{"one\ntw", "o\r\n", "", "three\nfour"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	w.Flush()
	w.Write(bytes.Repeat([]byte{'x'}, maxLine+10))
	var msgs []string
	for _, r := range rec.records {
		msgs = append(msgs, r.msg)
		if r.attrs["stream"] != "stderr" || r.level != slog.LevelInfo {
			t.Errorf("record %+v", r)
		}
	}
	if got := strings.Join(msgs[:4], "|"); got != "one|two|three|four" {
		t.Errorf("lines = %q", got)
	}
	if len(msgs) != 5 || len(msgs[4]) != maxLine+10 {
		t.Errorf("an overlong line was not logged whole once it passed the bound: %d records", len(msgs))
	}
}
