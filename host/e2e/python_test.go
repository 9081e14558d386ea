package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/protocol"
)

const python = "/usr/bin/python3"

// ntlb64partClient is the project's Python client, relative to this package.
var ntlb64partClient = filepath.Join("..", "..", "examples", "python", "ntlb64part_client.py")

// needPythonModules skips the test when python3 or one of the modules is
// missing, except on CI (CI=true), where .ci/run installs them and their
// absence is a failure.
func needPythonModules(t *testing.T, modules, packages string) {
	t.Helper()
	missing := func(why string) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s (.ci/run installs %s)", why, packages)
		}
		t.Skipf("%s: install Debian's %s to run this test", why, packages)
	}
	if _, err := os.Stat(python); err != nil {
		missing(python + " is missing")
	}
	if out, err := exec.Command(python, "-c", "import "+modules).CombinedOutput(); err != nil {
		missing("python3 cannot import " + modules + ": " + strings.TrimSpace(string(out)))
	}
}

// runPythonJSON runs cmd, one of the project's Python clients, which
// prints a JSON result as its last line. It decodes that line into res and
// fails the test when there is none, or when the client exited with an
// error or ok() says it failed. It returns the lines printed before it.
func runPythonJSON(t *testing.T, cmd *exec.Cmd, res any, ok func() bool) []string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	last := lines[len(lines)-1]
	if err := json.Unmarshal([]byte(last), res); err != nil {
		t.Fatalf("client printed no JSON line (%v): stdout %q, stderr %q", runErr, stdout.String(), stderr.String())
	}
	t.Logf("python client: %s", last)
	if !ok() || runErr != nil {
		t.Fatalf("client failed (%v): %+v; stderr %q", runErr, res, stderr.String())
	}
	return lines[:len(lines)-1]
}

// pythonResult is the JSON line ntlb64part_client.py prints.
type pythonResult struct {
	OK             bool   `json:"ok"`
	Images         int    `json:"images"`
	MaxDiff        *int   `json:"max_diff"`
	MaxMessage     int    `json:"max_message"`
	Parts          int    `json:"parts"`
	VerifiedSHA256 int    `json:"verified_sha256"`
	Error          string `json:"error"`
}

// TestPythonNTLClient runs examples/python/ntlb64part_client.py, an aiohttp
// client in the style of the ntlb64part README, against `nodecast serve`'s
// handler stack on 127.0.0.1. aiohttp refuses messages of 4 MiB or more, so
// the 2048² batch only arrives if every part fits.
func TestPythonNTLClient(t *testing.T) {
	needPythonModules(t, "aiohttp, PIL, numpy", "python3-aiohttp python3-pil python3-numpy")
	if _, err := os.Stat(ntlb64partClient); err != nil {
		t.Fatalf("the Python client: %v", err)
	}
	s := startBuiltServer(t, config.Default())

	for _, tc := range []struct{ size, n int }{{1024, 4}, {2048, 2}} {
		t.Run(strconv.Itoa(tc.size)+"x"+strconv.Itoa(tc.n), func(t *testing.T) {
			if tc.size > 1024 && testing.Short() {
				t.Skip("2048² images")
			}
			p := photoOf(t, tc.size)
			file := filepath.Join(t.TempDir(), "photo.png")
			if err := os.WriteFile(file, p.PNG, 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, python, ntlb64partClient, s.URL, file, strconv.Itoa(tc.n))
			var res pythonResult
			runPythonJSON(t, cmd, &res, func() bool { return res.OK })
			switch {
			case res.Images != tc.n || res.VerifiedSHA256 != tc.n:
				t.Fatalf("client got %d images, verified %d sha256, want %d", res.Images, res.VerifiedSHA256, tc.n)
			case res.MaxDiff == nil || *res.MaxDiff != 0:
				t.Fatalf("client max_diff %v, want 0", res.MaxDiff)
			case res.MaxMessage >= protocol.DefaultMessageLimit:
				t.Fatalf("client saw a message of %d bytes", res.MaxMessage)
			}
			if tc.size >= 2048 && res.Parts < 2*tc.n {
				t.Fatalf("%d images of over 4 MiB came in %d parts", tc.n, res.Parts)
			}
		})
	}
}
