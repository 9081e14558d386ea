package hclogslog

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// LevelTrace is where hclog's Trace lands: below slog's Debug.
const LevelTrace = slog.LevelDebug - 4

// Options configure New. The zero value logs go-plugin's messages at their own
// levels and nothing is promoted.
type Options struct {
	// Promote names the sub-logger go-plugin logs a plugin's stderr lines on
	// (the base name of the plugin binary). go-plugin logs unmarked lines at
	// Debug there; they are raised to Info so that a plugin's log output is
	// visible at the usual level. Trace lines become Debug.
	Promote string
}

// New returns an hclog.Logger that writes to l.
func New(l *slog.Logger, opts Options) hclog.Logger {
	return &logger{l: l, promote: opts.Promote}
}

type logger struct {
	l        *slog.Logger
	name     string
	implied  []any
	promote  string
	promoted bool
}

func (g *logger) level(lv hclog.Level) slog.Level {
	switch lv {
	case hclog.Trace:
		if g.promoted {
			return slog.LevelDebug
		}
		return LevelTrace
	case hclog.Debug:
		if g.promoted {
			return slog.LevelInfo
		}
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (g *logger) Log(lv hclog.Level, msg string, args ...any) {
	if lv == hclog.Off {
		return
	}
	sl := g.level(lv)
	ctx := context.Background()
	if !g.l.Enabled(ctx, sl) {
		return
	}
	all := make([]any, 0, len(g.implied)+len(args)+2)
	if g.name != "" {
		all = append(all, "logger", g.name)
	}
	all = append(all, g.implied...)
	all = append(all, args...)
	g.l.Log(ctx, sl, msg, all...)
}

func (g *logger) Trace(msg string, args ...any) { g.Log(hclog.Trace, msg, args...) }
func (g *logger) Debug(msg string, args ...any) { g.Log(hclog.Debug, msg, args...) }
func (g *logger) Info(msg string, args ...any)  { g.Log(hclog.Info, msg, args...) }
func (g *logger) Warn(msg string, args ...any)  { g.Log(hclog.Warn, msg, args...) }
func (g *logger) Error(msg string, args ...any) { g.Log(hclog.Error, msg, args...) }

func (g *logger) enabled(lv hclog.Level) bool {
	return g.l.Enabled(context.Background(), g.level(lv))
}

func (g *logger) IsTrace() bool { return g.enabled(hclog.Trace) }
func (g *logger) IsDebug() bool { return g.enabled(hclog.Debug) }
func (g *logger) IsInfo() bool  { return g.enabled(hclog.Info) }
func (g *logger) IsWarn() bool  { return g.enabled(hclog.Warn) }
func (g *logger) IsError() bool { return g.enabled(hclog.Error) }

func (g *logger) ImpliedArgs() []any { return g.implied }

func (g *logger) With(args ...any) hclog.Logger {
	c := *g
	c.implied = append(append([]any(nil), g.implied...), args...)
	return &c
}

func (g *logger) Name() string { return g.name }

func (g *logger) Named(name string) hclog.Logger {
	c := *g
	if g.name != "" {
		c.name = g.name + "." + name
	} else {
		c.name = name
	}
	c.promoted = g.promoted || (g.promote != "" && name == g.promote)
	return &c
}

func (g *logger) ResetNamed(name string) hclog.Logger {
	c := *g
	c.name = name
	c.promoted = g.promote != "" && name == g.promote
	return &c
}

// SetLevel does nothing: the slog handler owns the level.
func (g *logger) SetLevel(hclog.Level) {}

// GetLevel reports the lowest hclog level this logger emits. go-plugin uses it
// to skip parsing plugin log lines that would be dropped anyway.
func (g *logger) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if g.enabled(lv) {
			return lv
		}
	}
	return hclog.Off
}

func (g *logger) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(g.StandardWriter(nil), "", 0)
}

func (g *logger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return NewLineWriter(g.l, slog.LevelInfo, "logger", g.name)
}

// maxLine bounds the bytes a LineWriter buffers before logging them as a line,
// so a plugin writing without newlines cannot grow the host's memory.
const maxLine = 64 << 10

// LineWriter logs each line written to it as one record at a fixed level. It
// is safe for concurrent use; Flush logs a final unterminated line.
type LineWriter struct {
	l     *slog.Logger
	level slog.Level
	attrs []any
	mu    sync.Mutex
	buf   []byte
}

// NewLineWriter returns a LineWriter logging to l at level with attrs added.
func NewLineWriter(l *slog.Logger, level slog.Level, attrs ...any) *LineWriter {
	return &LineWriter{l: l, level: level, attrs: attrs}
}

func (w *LineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) >= maxLine {
				w.emit()
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		w.emit()
		p = p[i+1:]
	}
	return n, nil
}

// Flush logs what is buffered as a line.
func (w *LineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit()
	}
}

func (w *LineWriter) emit() {
	line := string(bytes.TrimRight(w.buf, "\r"))
	w.buf = w.buf[:0]
	w.l.Log(context.Background(), w.level, line, w.attrs...)
}
