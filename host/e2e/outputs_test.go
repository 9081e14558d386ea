package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/host/internal/hosttest"
	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/protocol"
)

// saveClient is the project's ComfyUI-example-style Python client.
var saveClient = filepath.Join("..", "..", "examples", "python", "save_client.py")

// outputServer starts `nodecast serve`'s stack with output and temp folders
// of its own.
func outputServer(t *testing.T) (*server, host.Options) {
	t.Helper()
	opts := serveOptions(t, config.Default())
	opts.Packs[0] = hosttest.BuiltinPack(t)
	opts.OutputDir, opts.TempDir = t.TempDir(), t.TempDir()
	return startServer(t, opts), opts
}

// TestPythonSaveClient runs examples/python/save_client.py, written like
// ComfyUI's websockets_api_example.py, against a real server: a SaveImage
// and PreviewImage workflow, twice; every image through /view has the
// uploaded pixels, the PNG text chunks hold the prompt and the workflow,
// and the names follow ComfyUI's counter.
func TestPythonSaveClient(t *testing.T) {
	needPythonModules(t, "websocket, PIL", "python3-websocket python3-pil")
	s, opts := outputServer(t)
	p := photoOf(t, 256)
	file := filepath.Join(t.TempDir(), "photo.png")
	if err := os.WriteFile(file, p.PNG, 0o644); err != nil {
		t.Fatal(err)
	}
	// A file already there: ComfyUI's counter continues after it.
	if err := os.MkdirAll(filepath.Join(opts.OutputDir, "py"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(opts.OutputDir, "py", "run_00004_.png"), p.PNG, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, saveClient, s.URL, file, "3", "py/run")
	var res struct {
		OK         bool     `json:"ok"`
		Saved      int      `json:"saved"`
		Previews   int      `json:"previews"`
		MaxDiff    int      `json:"max_diff"`
		Names      []string `json:"names"`
		TextChunks int      `json:"text_chunks"`
		ViewChecks int      `json:"view_checks"`
		Error      string   `json:"error"`
	}
	runPythonJSON(t, cmd, &res, func() bool { return res.OK })
	var want []string
	for i := 5; i <= 10; i++ {
		want = append(want, fmt.Sprintf("py/run_%05d_.png", i))
	}
	if !reflect.DeepEqual(res.Names, want) || res.Saved != 6 || res.TextChunks != 6 || res.ViewChecks != 6 || res.Previews != 2 {
		t.Fatalf("client saw %+v, want names %v", res, want)
	}
	// What the client read is what is on disk.
	for _, n := range want {
		b, err := os.ReadFile(filepath.Join(opts.OutputDir, filepath.FromSlash(n)))
		if err != nil {
			t.Fatal(err)
		}
		checkPNG(t, b, p)
	}
}

// dialFlags connects a client that sends flags and returns it with the
// server's feature_flags answer (nil flags: none sent, no answer).
func dialFlags(t *testing.T, s *server, id string, kind testclient.Kind, flags protocol.FeatureFlags) (*testclient.Client, protocol.FeatureFlags) {
	t.Helper()
	c, err := testclient.Dialer{Kind: kind, Flags: flags, Timeout: waitTimeout}.Dial(s.URL, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var answer protocol.FeatureFlags
	for _, r := range c.Log() {
		if r.Kind == testclient.JSON && r.Type == protocol.TypeFeatureFlags {
			if err := json.Unmarshal(r.Data, &answer); err != nil {
				t.Fatal(err)
			}
		}
	}
	return c, answer
}

// TestOneSavePromptEveryKindOfClient: one prompt, broadcast to every client,
// ends in ETN_SendImageWebSocket and SaveImage. The preview-metadata client
// gets type 4 frames with ComfyUI's header, the plain client type 1, the
// parts client PART frames; history lists the saved files and /view serves
// them with the same pixels. The feature_flags answer is GET /features.
func TestOneSavePromptEveryKindOfClient(t *testing.T) {
	s, opts := outputServer(t)
	p := photoOf(t, 256)
	name := mustUpload(t, s, "photo.png", p.PNG)
	preview, answer := dialFlags(t, s, "preview", testclient.Plain, protocol.FeatureFlags{protocol.FlagPreviewMetadata: true})
	plain, _ := dialFlags(t, s, "plain", testclient.Plain, nil)
	parts, _ := dialFlags(t, s, "parts", testclient.Parts, protocol.FeatureFlags{protocol.FlagImageParts: true, protocol.FlagPreviewMetadata: true})

	resp, err := httpClient.Get(s.URL + "/features")
	if err != nil {
		t.Fatal(err)
	}
	var features protocol.FeatureFlags
	err = json.NewDecoder(resp.Body).Decode(&features)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(answer, features) || answer[protocol.FlagMaxUploadSize] == nil {
		t.Errorf("feature_flags answer %v differs from GET /features %v", answer, features)
	}

	// SaveImage's hidden inputs show as ComfyUI shows them.
	resp, err = httpClient.Get(s.URL + "/object_info/SaveImage")
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]struct {
		Input map[string]any `json:"input"`
	}
	err = json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if h := info["SaveImage"].Input["hidden"]; !reflect.DeepEqual(h, map[string]any{"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}) {
		t.Errorf("SaveImage hidden inputs %v", h)
	}

	prompt := pipeline(name, 2, "ETN_SendImageWebSocket", nil)
	prompt["4"] = map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"2", 0}, "filename_prefix": "all/kinds"}}
	id := queue(t, s, map[string]any{"prompt": prompt, "extra_data": map[string]any{"extra_pnginfo": map[string]any{"workflow": map[string]any{"id": "w1"}}}})
	var logs [3][]testclient.Received
	for i, c := range []*testclient.Client{preview, plain, parts} {
		logs[i] = waitPromptEnd(t, c, id)
		if err := c.Err(); err != nil {
			t.Fatal(err)
		}
	}
	kinds := func(log []testclient.Received, k testclient.MessageKind) (out []testclient.Received) {
		for _, r := range log {
			if r.Kind == k {
				out = append(out, r)
			}
		}
		return out
	}
	previews, wholes := kinds(logs[0], testclient.Preview), kinds(logs[1], testclient.Whole)
	if len(previews) != 2 || len(wholes) != 2 || len(kinds(logs[0], testclient.Whole)) != 0 {
		t.Fatalf("preview client got %d type 4 frames (and %d type 1), plain client %d type 1, want 2 each",
			len(previews), len(kinds(logs[0], testclient.Whole)), len(wholes))
	}
	for i := range 2 {
		want := protocol.PreviewMetadata{NodeID: "3", DisplayNodeID: "3", RealNodeID: "3", PromptID: id, ImageType: "image/png"}
		if previews[i].Meta != want {
			t.Errorf("type 4 header %+v, want %+v", previews[i].Meta, want)
		}
		checkPNG(t, previews[i].Image, p)
		if wholes[i].Format != protocol.ImageFormatPNG {
			t.Fatalf("plain client frame %d: format %d", i, wholes[i].Format)
		}
		checkPNG(t, wholes[i].Image, p)
	}
	if n := len(kinds(logs[2], testclient.Whole)) + len(kinds(logs[2], testclient.Preview)); n != 0 {
		t.Errorf("parts client got %d whole-image frames, want PART frames only", n)
	}
	done := parts.Images()
	for _, img := range done {
		checkPNG(t, img.Data, p)
	}
	if len(done) != 2 {
		t.Fatalf("parts client reassembled %d images, want 2", len(done))
	}

	// History records SaveImage's files; /view serves them.
	outputs := historyEntry(t, s, id)["outputs"].(map[string]any)
	saved := outputs["4"].(map[string]any)["images"].([]any)
	if len(saved) != 2 {
		t.Fatalf("history outputs %v", outputs)
	}
	for i, v := range saved {
		im := v.(map[string]any)
		if im["filename"] != fmt.Sprintf("kinds_%05d_.png", i+1) || im["subfolder"] != "all" || im["type"] != "output" {
			t.Errorf("saved image %d: %v", i, im)
		}
		q := url.Values{"filename": {im["filename"].(string)}, "subfolder": {"all"}, "type": {"output"}}
		resp, err := httpClient.Get(s.URL + "/view?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" {
			t.Fatalf("/view: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		checkPNG(t, b, p)
		if !bytes.Contains(b, []byte("tEXtworkflow\x00{\"id\":\"w1\"}")) || !bytes.Contains(b, []byte("tEXtprompt\x00{")) {
			t.Errorf("saved PNG lacks the prompt or workflow text chunk")
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(opts.OutputDir, "all")); len(entries) != 2 {
		t.Errorf("output folder holds %d files, want 2", len(entries))
	}
}
