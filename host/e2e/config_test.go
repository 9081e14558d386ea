package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/host/internal/logbuf"
	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/internal/testbin"
)

// portraitWorkflow is an API-format workflow with three senders: node 3 is
// configured by id (event and part size; its title's event loses to the
// id's), node 4 by title only (event and encoder), and node 5 sets its own
// event, which wins over its entry.
const portraitWorkflow = `{
  "1": {"class_type": "LoadImage", "inputs": {"image": "portrait.png"}},
  "2": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 2}},
  "3": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["2", 0]}, "_meta": {"title": "Preview"}},
  "4": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["2", 0]}, "_meta": {"title": "Final Sender"}},
  "5": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["2", 0], "event": "own.event"}}
}`

const portraitConfig = `# nodecast config written by the e2e tests
workflows:
  portrait:
    file: portrait.json
    nodes:
      "3":
        event: portrait.by_id
        part_size: 1000
      Preview:
        event: title.loses.to.id
      Final Sender:
        event: portrait.by_title
        encoder: jpeg
      "5":
        event: node.input.wins
`

// writeConfig writes a config file and the files it names into a new
// folder and returns the config's path.
func writeConfig(t *testing.T, yaml string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "nodecast.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkPortraitRun runs the portrait workflow by name for a PART client and
// a plain client and checks the event names and encoders the configuration
// gave each sender.
func checkPortraitRun(t *testing.T, s *server, p *photo) {
	t.Helper()
	wantEvents := map[string]struct{ event, mime string }{
		"3": {"portrait.by_id", "image/png"},
		"4": {"portrait.by_title", "image/jpeg"},
		"5": {"own.event", "image/png"},
	}
	t.Run("PART client", func(t *testing.T) {
		c := dialWS(t, s, "workflow-parts", true, stockReadLimit)
		id := queue(t, s, map[string]any{"workflow": "portrait", "client_id": c.ID})
		log := promptMessages(waitPromptEnd(t, c, id), id)
		checkErr(t, c)
		got := map[string]int{}
		for _, r := range log {
			if r.Kind == testclient.PART && r.Part.Node == "3" {
				if want := int((r.Part.Size + 999) / 1000); r.Part.Parts != want {
					t.Fatalf("node 3 sent a %d-byte image in %d parts, want %d (part_size 1000)", r.Part.Size, r.Part.Parts, want)
				}
			}
			if r.Kind != testclient.PART || r.Done == nil {
				continue
			}
			img := r.Done
			want, ok := wantEvents[img.Node]
			if !ok || img.Event != want.event || img.MIME != want.mime || img.PromptID != id {
				t.Fatalf("node %s sent event %q %s, want %q %s", img.Node, img.Event, img.MIME, want.event, want.mime)
			}
			if img.MIME == "image/png" {
				checkPNG(t, img.Data, p)
			}
			got[img.Node]++
		}
		if got["3"] != 2 || got["4"] != 2 || got["5"] != 2 {
			t.Fatalf("images per node %v, want 2 from each of 3, 4 and 5", got)
		}
		if _, err := c.WaitFor(waitTimeout, func(r testclient.Received) bool { return r.IsJSON("execution_success", id) }); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("plain client", func(t *testing.T) {
		c := dialWS(t, s, "workflow-plain", false, stockReadLimit)
		id := queue(t, s, map[string]any{"workflow": "portrait", "client_id": c.ID})
		log := promptMessages(waitPromptEnd(t, c, id), id)
		checkErr(t, c)
		for node, want := range wantEvents {
			imgs := joinB64Parts(t, log, want.event)
			if len(imgs) != 2 {
				t.Fatalf("%d images in %q messages, want 2 from node %s", len(imgs), want.event, node)
			}
			for _, img := range imgs {
				if img.Meta.Node != node || img.Meta.MIME != want.mime {
					t.Fatalf("%q message from node %s (%s), want node %s (%s)", want.event, img.Meta.Node, img.Meta.MIME, node, want.mime)
				}
				if want.mime == "image/png" {
					checkPNG(t, img.Data, p)
				}
			}
		}
	})
}

// TestConfiguredWorkflow serves a config file with a workflow and per-node
// settings through the serve handler stack, runs the workflow by name and
// checks precedence: a node's own input > its workflow entry by id > by
// title > the defaults.
func TestConfiguredWorkflow(t *testing.T) {
	path := writeConfig(t, portraitConfig, map[string]string{"portrait.json": portraitWorkflow})
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, serveOptions(t, cfg))
	p := photoOf(t, 64)
	if got := mustUpload(t, s, "portrait.png", p.PNG); got != "portrait.png" {
		t.Fatalf("upload stored as %q", got)
	}
	checkPortraitRun(t, s, p)

	t.Run("unknown workflow", func(t *testing.T) {
		status, ans := post(t, s, "/prompt", map[string]any{"workflow": "landscape", "client_id": "x"})
		if status != http.StatusBadRequest {
			t.Fatalf("status %d, want 400: %v", status, ans)
		}
		e, nodeErrors := checkErrorShape(t, ans)
		if e["type"] != "unknown_workflow" || !strings.Contains(e["message"].(string), `"landscape"`) ||
			!strings.Contains(e["details"].(string), "portrait") || len(nodeErrors) != 0 {
			t.Fatalf("answer %v: want unknown_workflow naming landscape and listing portrait", ans)
		}
	})
}

// TestServeCommand runs the nodecast binary itself: `nodecast serve
// --config F` on 127.0.0.1:0 serves the configured workflow, and stops
// cleanly on SIGINT.
func TestServeCommand(t *testing.T) {
	bin := testbin.MustBuild(t, testbin.Nodecast)
	path := writeConfig(t, portraitConfig, map[string]string{"portrait.json": portraitWorkflow})
	inputDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "--listen", "127.0.0.1:0", "--config", path,
		"--plugins", t.TempDir(), "--input-dir", inputDir, "--log-level", "warn",
		"--output-dir", t.TempDir(), "--temp-dir", t.TempDir())
	testbin.Contain(t, cmd) // a kill on failure takes the built-in pack's process too
	var stderr logbuf.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	done := false // the test saw the process exit
	t.Cleanup(func() {
		if !done {
			cmd.Process.Kill()
			for range lines {
			}
			<-exited
		}
	})
	serving := regexp.MustCompile(`serving on (http://127\.0\.0\.1:\d+)`)
	var url string
	for line := range lines {
		if m := serving.FindStringSubmatch(line); m != nil {
			url = m[1]
			break
		}
	}
	if url == "" {
		t.Fatalf("nodecast serve did not say where it serves; stderr:\n%s", stderr.String())
	}
	s := &server{URL: url, InputDir: inputDir}
	p := photoOf(t, 64)
	mustUpload(t, s, "portrait.png", p.PNG)
	checkPortraitRun(t, s, p)

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	err = <-exited
	done = true
	if err != nil {
		t.Fatalf("nodecast serve after SIGINT: %v; stderr:\n%s", err, stderr.String())
	}
}

// TestBadConfigRefused checks that `nodecast serve` refuses a bad config
// file at start with exit status 1 and a message that names the file, the
// key and the reason, and that config.Load says the same in its *Error.
func TestBadConfigRefused(t *testing.T) {
	bin := testbin.MustBuild(t, testbin.Nodecast)
	cases := []struct {
		name   string
		yaml   string
		key    string // "" for the file as a whole
		line   int
		reason string
	}{
		{name: "bad YAML", yaml: "workflows:\n  portrait: [file\n", reason: "bad YAML"}, // yaml.v3 decides the line
		{name: "bad event name in a workflow entry",
			yaml: "workflows:\n  portrait:\n    file: portrait.json\n    nodes:\n      \"3\":\n        event: \"two words\"\n",
			key:  "workflows.portrait.nodes.3.event", line: 6, reason: "bad event name"},
		{name: "ComfyUI message type as the default event",
			yaml: "defaults:\n  event: executing\n", key: "defaults.event", line: 2, reason: "bad event name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.yaml, map[string]string{"portrait.json": portraitWorkflow})

			_, err := config.Load(path)
			var ce *config.Error
			if !errors.As(err, &ce) || !errors.Is(err, config.ErrConfig) {
				t.Fatalf("config.Load: %v, want a *config.Error", err)
			}
			if ce.File != path || ce.Key != tc.key || !strings.Contains(ce.Reason, tc.reason) || (tc.line > 0 && ce.Line != tc.line) {
				t.Fatalf("config.Load: %+v, want file %s, key %q, line %d, reason with %q", ce, path, tc.key, tc.line, tc.reason)
			}

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "serve", "--listen", "127.0.0.1:0", "--config", path,
				"--plugins", t.TempDir(), "--input-dir", t.TempDir())
			testbin.Contain(t, cmd)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err = cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("nodecast serve with a bad config: %v, want exit status 1; stdout %q stderr %q", err, stdout.String(), stderr.String())
			}
			msg := stderr.String()
			if !strings.Contains(msg, path) || !strings.Contains(msg, tc.key) || !strings.Contains(msg, tc.reason) {
				t.Fatalf("stderr %q does not name the file %s, the key %q and the reason %q", msg, path, tc.key, tc.reason)
			}
			if strings.Contains(stdout.String(), "serving") {
				t.Fatalf("nodecast serve started with a bad config: %q", stdout.String())
			}
		})
	}
}
