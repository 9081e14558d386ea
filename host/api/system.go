package api

import (
	"bufio"
	"maps"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/nodecast/nodecast/protocol"
)

// features are the server's feature flags: ComfyUI's, and nodecast's image parts.
func (s *server) features() map[string]any {
	f := map[string]any{
		protocol.FlagPreviewMetadata: true,
		protocol.FlagImageParts:      true,
		protocol.FlagMaxUploadSize:   s.opts.MaxUploadBytes,
		protocol.FlagMaxMessageSize:  s.opts.MessageLimit,
	}
	maps.Copy(f, s.opts.Features)
	return f
}

func (s *server) getFeatures(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.features())
}

// getSystemStats answers ComfyUI's /system_stats honestly: there is no
// Python, no PyTorch and no GPU device here.
func (s *server) getSystemStats(w http.ResponseWriter, r *http.Request) {
	total, free := memInfo()
	argv := os.Args
	if argv == nil {
		argv = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"system": map[string]any{
			"os":              runtime.GOOS,
			"python_version":  runtime.Version(), // the Go runtime: nodecast runs no Python
			"embedded_python": false,
			"comfyui_version": s.opts.Version,
			"pytorch_version": "",
			"argv":            argv,
			"ram_total":       total,
			"ram_free":        free,
		},
		// server.py system_stats with ComfyUI's CPU device
		// (model_management: get_torch_device_name "cpu", index None, and
		// for a CPU get_total_memory / get_free_memory are the machine's
		// RAM total and available, torch's the same).
		"devices": []any{map[string]any{
			"name": "cpu", "type": "cpu", "index": nil,
			"vram_total": total, "vram_free": free, "torch_vram_total": total, "torch_vram_free": free,
		}},
		"plugins": s.plugins(),
	})
}

// plugins is nodecast's addition to /system_stats: each plugin pack's
// process and crash-loop breaker.
func (s *server) plugins() []any {
	out := []any{}
	if s.opts.Packs == nil {
		return out
	}
	for _, p := range s.opts.Packs() {
		b := map[string]any{"state": p.Breaker.State, "trips": p.Breaker.Trips, "reason": p.Breaker.Reason}
		if !p.Breaker.OpenUntil.IsZero() {
			b["open_until"] = p.Breaker.OpenUntil.UTC().Format(time.RFC3339)
		}
		out = append(out, map[string]any{
			"name": p.Name, "pid": p.Pid, "generation": p.Generation, "restarts": p.Restarts, "breaker": b,
		})
	}
	return out
}

// memInfo reads MemTotal and MemAvailable (bytes) from /proc/meminfo; zeros
// where it cannot.
func memInfo() (total, free uint64) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "MemTotal:":
			total = kb * 1024
		case "MemAvailable:":
			free = kb * 1024
		}
	}
	return total, free
}
