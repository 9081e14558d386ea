package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/host/api"
	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/host/internal/executortest"
)

// FuzzPostPrompt feeds any body to POST /prompt: the server never panics,
// answers 200 with a prompt id or a ComfyUI error (400, 413) with a type and
// a message, always as JSON, and keeps serving.
func FuzzPostPrompt(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "prompts", "*.json"))
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{"", "null", "[]", "{", `{"prompt": {}}`, `{"workflow": 3}`, `{"prompt": null, "workflow": "x"}`,
		`{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": 1e400}}}}`, "\xff\xfe{}"} {
		f.Add([]byte(s))
	}
	runner := executortest.NewRunner()
	exec, err := executor.New(executor.Options{Runner: runner, InputDir: f.TempDir(), MaxHistory: 16})
	if err != nil {
		f.Fatal(err)
	}
	defer exec.Close()
	h := api.New(api.Options{Executor: exec, Classes: runner.Classes, InputDir: f.TempDir(), TempDir: f.TempDir(),
		StagingDir: f.TempDir(), MaxBodyBytes: 1 << 16})
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/prompt", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var out map[string]any
		dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
		dec.UseNumber() // an echoed 1e700 is valid JSON, out of float64's range
		if err := dec.Decode(&out); err != nil {
			t.Fatalf("%d answer %q is not JSON: %v", w.Code, w.Body.Bytes(), err)
		}
		switch w.Code {
		case http.StatusOK:
			if id, _ := out["prompt_id"].(string); id == "" {
				t.Fatalf("200 without a prompt_id: %v", out)
			}
			exec.ClearQueue()
			exec.Interrupt("") // a prompt of the Slow test node would hold the worker
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			e, _ := out["error"].(map[string]any)
			if typ, _ := e["type"].(string); typ == "" || e["message"] == nil {
				t.Fatalf("%d without ComfyUI's error shape: %v", w.Code, out)
			}
			if _, ok := out["node_errors"].(map[string]any); !ok {
				t.Fatalf("%d without node_errors: %v", w.Code, out)
			}
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body.Bytes())
		}
	})
}
