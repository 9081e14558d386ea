package host_test

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/host/internal/hosttest"
	"github.com/nodecast/nodecast/internal/wait"
)

// binaryPackHost starts a loopback host (see loopbackHost) whose built-in
// pack is the built nodecast binary, without -race as a user builds it, so
// the pack's memory is the product's. files (name -> content) are written
// into opts.InputDir, a new folder when it is empty.
func binaryPackHost(t *testing.T, opts host.Options, files map[string][]byte) (*host.Host, *httptest.Server) {
	t.Helper()
	opts.Packs = []host.PackSource{hosttest.BuiltinPack(t)}
	if opts.InputDir == "" {
		opts.InputDir = t.TempDir()
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(opts.InputDir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return loopbackHost(t, opts)
}

// packMemory reads the memory of a host's first pack from /proc.
type packMemory struct {
	pid   int
	Start int64 // resident bytes (VmRSS) when measurePack was called
}

// measurePack reads the resident memory of h's first pack now, before the
// work to measure.
func measurePack(t *testing.T, h *host.Host) packMemory {
	t.Helper()
	pid := h.Packs()[0].Pid
	return packMemory{pid: pid, Start: procStatusBytes(t, pid, "VmRSS")}
}

// Peak returns the most resident bytes the pack has had (VmHWM).
func (m packMemory) Peak(t *testing.T) int64 {
	t.Helper()
	return procStatusBytes(t, m.pid, "VmHWM")
}

// SettledBelow waits until the pack's resident bytes are under bound, and
// returns them; after a generous while it returns what they are, for the
// caller to assert on.
func (m packMemory) SettledBelow(t *testing.T, bound int64) int64 {
	t.Helper()
	var rss int64
	wait.Until(time.Minute, func() bool { rss = procStatusBytes(t, m.pid, "VmRSS"); return rss < bound })
	return rss
}
