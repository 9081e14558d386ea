package e2e_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/protocol"
)

// pngHeader returns a PNG whose header says w×h and which holds no pixel
// data: enough for any check that reads only the header, which is all a
// loader may read before it refuses an image over the limits.
func pngHeader(w, h int) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		b.WriteString(typ)
		b.Write(data)
		binary.Write(&b, binary.BigEndian, crc.Sum32())
	}
	ihdr := binary.BigEndian.AppendUint32(nil, uint32(w))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(h))
	ihdr = append(ihdr, 8, 2, 0, 0, 0) // 8-bit RGB, deflate, no filter method, no interlace
	chunk("IHDR", ihdr)
	chunk("IEND", nil)
	return b.Bytes()
}

// TestExecutionErrorsThenNextPromptRuns queues prompts whose nodes fail
// while running: each gives ComfyUI's execution_error and executing
// {node:null}, no image, and a history entry with status error; the good
// prompt queued after each runs to execution_success.
func TestExecutionErrorsThenNextPromptRuns(t *testing.T) {
	s := startServer(t, serveOptions(t, config.Default()))
	small := photoOf(t, 64)
	good := mustUpload(t, s, "good.png", small.PNG)

	// An image over the default pixel limit (10000² > 89,478,485) is
	// refused at upload, before it is stored...
	huge := pngHeader(10000, 10000)
	status, ans := upload(t, s, "huge.png", huge)
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("upload of a 10000² image: %d %v, want 413", status, ans)
	}
	if e, _ := ans["error"].(map[string]any); e["type"] != "image_too_large" {
		t.Fatalf("upload of a 10000² image: %v, want error type image_too_large", ans)
	}
	// ...but one copied into the input folder by hand passes validation
	// (the file exists) and must be refused by LoadImage when it runs.
	if err := os.WriteFile(filepath.Join(s.InputDir, "huge.png"), huge, 0o644); err != nil {
		t.Fatal(err)
	}
	b64 := func(size int) string { return base64.StdEncoding.EncodeToString(photoOf(t, size).PNG) }
	mismatched, _ := json.Marshal([]string{b64(64), b64(32)})

	cases := []struct {
		name     string
		prompt   map[string]any
		class    string // of the failing node "1"
		excType  string // "" = not checked
		messages []string
	}{
		{name: "invalid base64 to ETN_LoadImageBase64",
			prompt: map[string]any{
				"1": map[string]any{"class_type": "ETN_LoadImageBase64", "inputs": map[string]any{"image": "iVBORw0KGgo*not/base64!"}},
				"2": map[string]any{"class_type": "ETN_SendImageWebSocket", "inputs": map[string]any{"images": []any{"1", 0}}},
			},
			class: "ETN_LoadImageBase64", excType: "binascii.Error", messages: []string{"invalid base64"}},
		{name: "LoadImage of an image over the pixel limit",
			prompt: map[string]any{
				"1": map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": "huge.png"}},
				"2": map[string]any{"class_type": "SendImageOnWebSocket", "inputs": map[string]any{"images": []any{"1", 0}}},
			},
			// The error's Go type, not that of fmt's wrapper around it.
			class: "LoadImage", excType: "*protocol.LimitError", messages: []string{"image pixels", "100000000", "89478485"}},
		{name: "NTL_LoadImagesBase64 of images of different sizes",
			prompt: map[string]any{
				"1": map[string]any{"class_type": "NTL_LoadImagesBase64", "inputs": map[string]any{"images": string(mismatched)}},
				"2": map[string]any{"class_type": "NTL_SendImagesWebSocket", "inputs": map[string]any{"images": []any{"1", 0}, "nodelabel": "x"}},
			},
			class: "NTL_LoadImagesBase64", excType: "RuntimeError", messages: []string{"image 1 is 32x32", "64x64"}},
	}
	c := dialWS(t, s, "errors", true, stockReadLimit)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := queuePrompt(t, s, tc.prompt, c.ID)
			log := promptMessages(waitPromptEnd(t, c, id), id)
			checkErr(t, c)
			var types []string
			var failure testclient.Received
			for _, r := range log {
				switch {
				case r.Kind != testclient.JSON:
					t.Fatalf("a failed prompt sent image data: %v", r)
				case r.Type == protocol.TypeStatus: // queue size, to every client
					continue
				case r.Type == protocol.TypeExecutionError:
					failure = r
				}
				types = append(types, r.Type)
			}
			want := []string{"execution_start", "execution_cached", "executing", "execution_error", "executing"}
			if strings.Join(types, " ") != strings.Join(want, " ") {
				t.Fatalf("messages %v, want %v", types, want)
			}
			var e protocol.ExecutionErrorData
			if err := json.Unmarshal(failure.Data, &e); err != nil {
				t.Fatal(err)
			}
			var raw map[string]any
			_ = json.Unmarshal(failure.Data, &raw)
			for _, k := range []string{"prompt_id", "node_id", "node_type", "executed", "exception_message", "exception_type", "traceback", "current_inputs", "current_outputs", "timestamp"} {
				if _, ok := raw[k]; !ok {
					t.Errorf("execution_error has no %s: %v", k, raw)
				}
			}
			if e.PromptID != id || e.NodeID != "1" || e.NodeType != tc.class || len(e.Executed) != 0 {
				t.Errorf("execution_error %+v: want node 1 (%s) of prompt %s, nothing executed", e, tc.class, id)
			}
			if tc.excType != "" && e.ExceptionType != tc.excType {
				t.Errorf("exception_type %q, want %q", e.ExceptionType, tc.excType)
			}
			for _, m := range tc.messages {
				if !strings.Contains(e.ExceptionMessage, m) {
					t.Errorf("exception_message %q does not say %q", e.ExceptionMessage, m)
				}
			}
			if st := historyStatus(t, s, id); st["status_str"] != "error" || st["completed"] != false {
				t.Errorf("history status %v, want error, not completed", st)
			}

			// The queue goes on: a good prompt runs to execution_success.
			next := queuePrompt(t, s, pipeline(good, 2, "SendImageOnWebSocket", nil), c.ID)
			log = promptMessages(waitPromptEnd(t, c, next), next)
			checkErr(t, c)
			checkPromptOrder(t, log, promptShape{PromptID: next, Nodes: []string{"1", "2", "3"}, Images: 2, Executed: true})
			checkImages(t, imagesOf(t, log, shapePART, defaultEvent(), next, 2), 2, small)
		})
	}
}

// historyEntry returns a finished prompt's entry from GET /history/{id}.
func historyEntry(t *testing.T, s *server, promptID string) map[string]any {
	t.Helper()
	resp, err := httpClient.Get(s.URL + "/history/" + promptID)
	if err != nil {
		t.Fatal(err)
	}
	status, ans := readAnswer(t, resp)
	entry, _ := ans[promptID].(map[string]any)
	if status != http.StatusOK || entry == nil {
		t.Fatalf("GET /history/%s: %d %v", promptID, status, ans)
	}
	return entry
}

// historyStatus returns the status of a finished prompt from GET /history/{id}.
func historyStatus(t *testing.T, s *server, promptID string) map[string]any {
	t.Helper()
	st, _ := historyEntry(t, s, promptID)["status"].(map[string]any)
	return st
}
