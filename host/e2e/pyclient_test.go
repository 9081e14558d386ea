package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/host/config"
)

// pyClientDir is the Python package's project folder, relative to this package.
var pyClientDir = filepath.Join("..", "..", "clients", "python")

// pyImageLine is one line the package's command prints per image.
type pyImageLine struct {
	Image  *int   `json:"image"`
	Node   string `json:"node"`
	Event  string `json:"event"`
	Size   int    `json:"size"`
	SHA256 string `json:"sha256"`
	Shape  string `json:"shape"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// pyResult is its last line.
type pyResult struct {
	OK       bool           `json:"ok"`
	PromptID string         `json:"prompt_id"`
	Images   int            `json:"images"`
	Stats    map[string]int `json:"stats"`
	Error    string         `json:"error"`
}

// runPyClient runs `python3 -m nodecast_client URL args...` from the
// package's folder (PYTHONPATH, no install) and parses what it printed.
func runPyClient(t *testing.T, url string, args ...string) ([]pyImageLine, pyResult) {
	t.Helper()
	abs, err := filepath.Abs(pyClientDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{"-m", "nodecast_client", url}, args...)...)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+abs, "PYTHONDONTWRITEBYTECODE=1")
	var res pyResult
	lines := runPythonJSON(t, cmd, &res, func() bool { return res.OK })
	var imgs []pyImageLine
	for _, l := range lines {
		var im pyImageLine
		if json.Unmarshal([]byte(l), &im) == nil && im.Image != nil {
			imgs = append(imgs, im)
		}
	}
	return imgs, res
}

// TestPythonPackage runs clients/python's nodecast_client against the serve
// stack: PART frames through a proxy that cuts its WebSocket twice mid-batch
// (it must resume and end with each image once), and the base64 fallback of
// a client that does not negotiate PART. Every image is checked against the
// sha256 of the PNG the sender makes and decoded with Pillow when present.
func TestPythonPackage(t *testing.T) {
	needPythonModules(t, "aiohttp", "python3-aiohttp") // Pillow is optional for the package; the test uses it when there
	const n, size = 4, 2048
	pil := exec.Command(python, "-c", "import PIL").Run() == nil
	noise := makeNoisePNG(t, size, 13)
	s := startBuiltServer(t, config.Default())
	if status, ans := upload(t, s, "noise.png", noise.PNG); status != 200 {
		t.Fatalf("upload: %d %v", status, ans)
	}
	promptFile := filepath.Join(t.TempDir(), "prompt.json")
	prompt, _ := json.Marshal(pipeline("noise.png", n, "SendImageOnWebSocket", map[string]any{"event": "py.noise", "wire": "parts"}))
	if err := os.WriteFile(promptFile, prompt, 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, imgs []pyImageLine, shape string) {
		t.Helper()
		seen := map[int]int{}
		for _, im := range imgs {
			seen[*im.Image]++
			switch {
			case im.SHA256 != noise.SHA256 || im.Size != len(noise.PNG):
				t.Errorf("image %d: %d bytes sha256 %s, want the sender's PNG (%d bytes, %s)", *im.Image, im.Size, im.SHA256, len(noise.PNG), noise.SHA256)
			case im.Shape != shape || im.Event != "py.noise" || im.Node != "3":
				t.Errorf("image %d: shape %q event %q node %q, want %q py.noise 3", *im.Image, im.Shape, im.Event, im.Node, shape)
			case pil && (im.Width != size || im.Height != size):
				t.Errorf("image %d decoded by Pillow to %d×%d", *im.Image, im.Width, im.Height)
			}
		}
		for i := range n {
			if seen[i] != 1 {
				t.Errorf("image %d arrived %d times, want once (all: %v)", i, seen[i], seen)
			}
		}
	}

	t.Run("parts-resume-after-cuts", func(t *testing.T) {
		proxy := startWSCutProxy(t, strings.TrimPrefix(s.URL, "http://"), 20<<20, 6<<20)
		imgs, res := runPyClient(t, proxy.URL(), "--prompt", promptFile)
		check(t, imgs, "part")
		if proxy.cut.Load() != 2 || res.Stats["resumed"] != 2 || res.Stats["resume_lost"] != 0 {
			t.Errorf("want 2 cuts and 2 resumes without loss: cuts %d of %d WebSocket connections, stats %v", proxy.cut.Load(), proxy.ws.Load(), res.Stats)
		}
	})
	t.Run("base64-fallback", func(t *testing.T) {
		imgs, res := runPyClient(t, s.URL, "--prompt", promptFile, "--no-parts")
		check(t, imgs, "b64")
		if res.Stats["refused"] != 0 {
			t.Errorf("stats %v", res.Stats)
		}
	})
}

// TestPythonPackageUnit runs the package's own unittest suite (reassembly,
// sha256, duplicate and inconsistent parts, the pending bound, seq holes,
// base64 parts) with /usr/bin/python3.
func TestPythonPackageUnit(t *testing.T) {
	needPythonModules(t, "aiohttp", "python3-aiohttp") // Pillow is optional for the package; the test uses it when there
	abs, err := filepath.Abs(pyClientDir)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "-m", "unittest", "discover", "-s", "tests", "-v")
	cmd.Dir = abs
	cmd.Env = append(os.Environ(), "PYTHONPATH="+abs, "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python unittest: %v\n%s", err, out)
	}
	t.Logf("%s", bytes.TrimSpace(out[bytes.LastIndex(out, []byte("Ran ")):]))
}
