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
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/host/internal/hosttest"
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

// frameClient is a raw WebSocket client that keeps every binary frame
// until the prompt it waits for is done.
type frameClient struct {
	conn   *websocket.Conn
	frames [][]byte
}

func dialFrames(t *testing.T, s *server, id string, flags protocol.FeatureFlags) (*frameClient, protocol.FeatureFlags) {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.URL, "http")+"/ws?clientId="+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &frameClient{conn: conn}
	var answer protocol.FeatureFlags
	if flags != nil {
		if err := conn.WriteJSON(protocol.Message{Type: protocol.TypeFeatureFlags, Data: flags}); err != nil {
			t.Fatal(err)
		}
		for answer == nil {
			conn.SetReadDeadline(time.Now().Add(waitTimeout))
			var m protocol.RawMessage
			if err := conn.ReadJSON(&m); err != nil {
				t.Fatal(err)
			}
			if m.Type == protocol.TypeFeatureFlags {
				if err := json.Unmarshal(m.Data, &answer); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return c, answer
}

// until reads until "executing" with node null for promptID.
func (c *frameClient) until(t *testing.T, promptID string) {
	t.Helper()
	for {
		c.conn.SetReadDeadline(time.Now().Add(waitTimeout))
		kind, msg, err := c.conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if kind == websocket.BinaryMessage {
			c.frames = append(c.frames, msg)
			continue
		}
		var m struct {
			Type string `json:"type"`
			Data struct {
				Node     *string `json:"node"`
				PromptID string  `json:"prompt_id"`
			} `json:"data"`
		}
		if json.Unmarshal(msg, &m) == nil && m.Type == protocol.TypeExecuting && m.Data.Node == nil && m.Data.PromptID == promptID {
			return
		}
	}
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
	preview, answer := dialFrames(t, s, "preview", protocol.FeatureFlags{protocol.FlagPreviewMetadata: true})
	plain, _ := dialFrames(t, s, "plain", nil)
	parts, _ := dialFrames(t, s, "parts", protocol.FeatureFlags{protocol.FlagImageParts: true, protocol.FlagPreviewMetadata: true})

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
	for _, c := range []*frameClient{preview, plain, parts} {
		c.until(t, id)
	}

	if len(preview.frames) != 2 || len(plain.frames) != 2 {
		t.Fatalf("preview client got %d frames, plain client %d, want 2 each", len(preview.frames), len(plain.frames))
	}
	for i := range 2 {
		meta, img, err := protocol.ParsePreviewFrame(preview.frames[i])
		if err != nil {
			t.Fatalf("preview client frame %d: %v", i, err)
		}
		want := protocol.PreviewMetadata{NodeID: "3", DisplayNodeID: "3", RealNodeID: "3", PromptID: id, ImageType: "image/png"}
		if meta != want {
			t.Errorf("type 4 header %+v, want %+v", meta, want)
		}
		checkPNG(t, img, p)
		format, img, err := protocol.ParseImageFrame(plain.frames[i])
		if err != nil || format != protocol.ImageFormatPNG {
			t.Fatalf("plain client frame %d: format %d, %v", i, format, err)
		}
		checkPNG(t, img, p)
	}
	r := protocol.NewReassembler(protocol.ReassemblerOptions{})
	var done int
	for _, f := range parts.frames {
		img, err := r.AddFrame(f)
		if err != nil {
			t.Fatalf("parts client: %v", err)
		}
		if img != nil {
			checkPNG(t, img.Data, p)
			done++
		}
	}
	if done != 2 {
		t.Fatalf("parts client reassembled %d images, want 2", done)
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
