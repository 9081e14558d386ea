package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/host/api"
	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/host/hub"
	"github.com/nodecast/nodecast/host/internal/executortest"
	"github.com/nodecast/nodecast/protocol"
)

// The hub is what the executor broadcasts through (one interface,
// executor.Broadcaster; the hub has no copy of it).
var _ executor.Broadcaster = (*hub.Hub)(nil)

type env struct {
	srv    *httptest.Server
	exec   *executor.Executor
	runner *executortest.Runner
	input  string
	output string
}

// newEnv serves the API over the fake runner on 127.0.0.1.
func newEnv(t *testing.T, opts api.Options, eopts executor.Options) *env {
	t.Helper()
	e := &env{runner: executortest.NewRunner(), input: t.TempDir(), output: t.TempDir()}
	eopts.Runner = e.runner
	eopts.InputDir = e.input
	ex, err := executor.New(eopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ex.Close() })
	e.exec = ex
	opts.Executor = ex
	opts.Classes = e.runner.Classes
	opts.InputDir = e.input
	opts.OutputDir = e.output
	opts.TempDir = t.TempDir()
	opts.StagingDir = t.TempDir()
	if opts.WS == nil {
		opts.WS = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusTeapot)
			_, _ = io.WriteString(w, "hub")
		})
	}
	e.srv = httptest.NewServer(api.New(opts))
	t.Cleanup(e.srv.Close)
	return e
}

// do sends a request and decodes a JSON answer into out (when non-nil).
func (e *env) do(t *testing.T, method, path, contentType string, body io.Reader, out any) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %q is not JSON: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode, raw
}

func (e *env) postJSON(t *testing.T, path, body string, out any) (int, []byte) {
	t.Helper()
	return e.do(t, http.MethodPost, path, "application/json", strings.NewReader(body), out)
}

type obj = map[string]any

const sendPrompt = `{
  "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1}},
  "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0], "event": "my.event"}}
}`

// checkErrorShape checks ComfyUI's {"error":{type,message,details,extra_info},"node_errors":{}}.
func checkErrorShape(t *testing.T, body obj, wantType string) {
	t.Helper()
	e, ok := body["error"].(obj)
	if !ok {
		t.Fatalf("no error object in %v", body)
	}
	if e["type"] != wantType {
		t.Errorf("error type %v (%v), want %s", e["type"], e["message"], wantType)
	}
	for _, k := range []string{"message", "details"} {
		if _, ok := e[k].(string); !ok {
			t.Errorf("error.%s missing in %v", k, e)
		}
	}
	if _, ok := e["extra_info"].(obj); !ok {
		t.Errorf("error.extra_info missing in %v", e)
	}
	if _, ok := body["node_errors"].(obj); !ok {
		t.Errorf("node_errors missing in %v", body)
	}
}

func TestPromptAndHistory(t *testing.T) {
	for _, prefix := range []string{"", "/api"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			e := newEnv(t, api.Options{}, executor.Options{})
			var acc obj
			code, raw := e.postJSON(t, prefix+"/prompt", `{"prompt": `+sendPrompt+`, "client_id": "c1", "extra_data": {"seed": 123456789012345678}}`, &acc)
			if code != http.StatusOK {
				t.Fatalf("POST /prompt: %d %s", code, raw)
			}
			id, _ := acc["prompt_id"].(string)
			if id == "" || acc["number"] != float64(0) || !reflect.DeepEqual(acc["node_errors"], obj{}) || len(acc) != 3 {
				t.Fatalf("answer %s", raw)
			}
			if _, err := e.exec.Wait(context.Background(), id); err != nil {
				t.Fatal(err)
			}
			var one obj
			if code, raw := e.do(t, "GET", prefix+"/history/"+id, "", nil, &one); code != 200 || len(one) != 1 {
				t.Fatalf("GET /history/{id}: %d %s", code, raw)
			}
			entry := one[id].(obj)
			if st := entry["status"].(obj); st["status_str"] != "success" || st["completed"] != true {
				t.Errorf("status %v", st)
			}
			tuple := entry["prompt"].([]any)
			if tuple[1] != id || tuple[3].(obj)["client_id"] != "c1" {
				t.Errorf("prompt tuple %v", tuple)
			}
			// Large integers survive the trip (json.Number, not float64).
			if _, raw := e.do(t, "GET", prefix+"/history/"+id, "", nil, nil); !bytes.Contains(raw, []byte(`"seed":123456789012345678`)) {
				t.Errorf("seed lost precision: %s", raw)
			}
			if entry["outputs"].(obj)["2"] == nil {
				t.Errorf("outputs %v", entry["outputs"])
			}

			// A second prompt, then the listing with max_items.
			var acc2 obj
			e.postJSON(t, prefix+"/prompt", `{"prompt": `+sendPrompt+`}`, &acc2)
			id2 := acc2["prompt_id"].(string)
			if _, err := e.exec.Wait(context.Background(), id2); err != nil {
				t.Fatal(err)
			}
			var all obj
			e.do(t, "GET", prefix+"/history", "", nil, &all)
			if len(all) != 2 {
				t.Errorf("history has %d entries", len(all))
			}
			var last obj
			e.do(t, "GET", prefix+"/history?max_items=1", "", nil, &last)
			if _, ok := last[id2]; !ok || len(last) != 1 {
				t.Errorf("max_items=1 gave %v", keys(last))
			}
			if code, _ := e.do(t, "GET", prefix+"/history?max_items=x", "", nil, nil); code != 400 {
				t.Errorf("bad max_items: %d", code)
			}
			if code, _ := e.postJSON(t, prefix+"/history", `{"delete": ["`+id+`"]}`, nil); code != 200 {
				t.Errorf("POST /history delete: %d", code)
			}
			var gone obj
			e.do(t, "GET", prefix+"/history/"+id, "", nil, &gone)
			if len(gone) != 0 {
				t.Errorf("deleted entry still there: %v", keys(gone))
			}
			if code, _ := e.postJSON(t, prefix+"/history", `{"clear": true}`, nil); code != 200 {
				t.Errorf("POST /history clear: %d", code)
			}
			var cleared obj
			e.do(t, "GET", prefix+"/history", "", nil, &cleared)
			if len(cleared) != 0 {
				t.Errorf("history after clear: %v", keys(cleared))
			}
		})
	}
}

func keys(m obj) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestPromptRefusals(t *testing.T) {
	wf := map[string]executor.Workflow{"portrait": {Prompt: map[string]any{
		"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{}},
		"2": map[string]any{"class_type": "SendImageOnWebSocket", "inputs": map[string]any{"images": []any{"1", 0}}},
	}}}
	e := newEnv(t, api.Options{}, executor.Options{Workflows: wf})
	tests := []struct {
		name, body, wantType, wantInMessage string
	}{
		{"malformed JSON", `{"prompt": {`, "invalid_prompt", "not valid JSON"},
		{"not an object", `[1, 2]`, "invalid_prompt", "JSON"},
		{"empty body", ``, "invalid_prompt", "empty"},
		{"prompt is a number", `{"prompt": 5}`, "invalid_prompt", "prompt"},
		{"no prompt", `{"client_id": "c1"}`, "no_prompt", "No prompt"},
		{"client_id is a number", `{"prompt": ` + sendPrompt + `, "client_id": 5}`, "invalid_prompt", "client_id"},
		{"extra_data is a list", `{"prompt": ` + sendPrompt + `, "extra_data": []}`, "invalid_prompt", "extra_data"},
		{"unknown workflow", `{"workflow": "landscape", "client_id": "c1"}`, "unknown_workflow", `"landscape"`},
		{"unknown class", `{"prompt": {"1": {"class_type": "Nope", "inputs": {}}}}`, "missing_node_type", "Nope"},
		{"failed validation", `{"prompt": {"2": {"class_type": "SendImageOnWebSocket", "inputs": {}}}}`, "prompt_outputs_failed_validation", "failed validation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body obj
			code, raw := e.postJSON(t, "/prompt", tc.body, &body)
			if code != http.StatusBadRequest {
				t.Fatalf("status %d (%s), want 400", code, raw)
			}
			checkErrorShape(t, body, tc.wantType)
			if msg, _ := body["error"].(obj)["message"].(string); !strings.Contains(msg, tc.wantInMessage) {
				t.Errorf("message %q lacks %q", msg, tc.wantInMessage)
			}
		})
	}
	var body obj
	e.postJSON(t, "/prompt", `{"prompt": {"2": {"class_type": "SendImageOnWebSocket", "inputs": {}}}}`, &body)
	ne := body["node_errors"].(obj)["2"].(obj)
	if ne["class_type"] != "SendImageOnWebSocket" || !reflect.DeepEqual(ne["dependent_outputs"], []any{"2"}) {
		t.Errorf("node_errors %v", ne)
	}
	if errs := ne["errors"].([]any); errs[0].(obj)["type"] != "required_input_missing" || errs[0].(obj)["extra_info"].(obj)["input_name"] != "images" {
		t.Errorf("errors %v", errs)
	}

	// A configured workflow by name is accepted.
	var acc obj
	if code, raw := e.postJSON(t, "/prompt", `{"workflow": "portrait", "client_id": "c1"}`, &acc); code != 200 {
		t.Fatalf("workflow by name: %d %s", code, raw)
	}
	if _, err := e.exec.Wait(context.Background(), acc["prompt_id"].(string)); err != nil {
		t.Fatal(err)
	}
}

func TestQueueAndInterrupt(t *testing.T) {
	e := newEnv(t, api.Options{}, executor.Options{})
	var p obj
	e.do(t, "GET", "/prompt", "", nil, &p)
	if !reflect.DeepEqual(p, obj{"exec_info": obj{"queue_remaining": float64(0)}}) {
		t.Errorf("GET /prompt %v", p)
	}
	slow := `{"prompt": {"1": {"class_type": "SlowNode", "inputs": {}}}, "prompt_id": "00000000-0000-4000-8000-00000000000a"}` // ComfyUI's prompt_id rule: a canonical UUID
	if code, raw := e.postJSON(t, "/prompt", slow, nil); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	<-e.runner.Started
	for _, id := range []string{"00000000-0000-4000-8000-000000000002", "00000000-0000-4000-8000-000000000003"} {
		if code, raw := e.postJSON(t, "/prompt", `{"prompt": `+sendPrompt+`, "prompt_id": "`+id+`"}`, nil); code != 200 {
			t.Fatalf("%d %s", code, raw)
		}
	}
	var q struct {
		Running []executor.QueueItem `json:"queue_running"`
		Pending []executor.QueueItem `json:"queue_pending"`
	}
	e.do(t, "GET", "/api/queue", "", nil, &q)
	if len(q.Running) != 1 || q.Running[0].PromptID != "00000000-0000-4000-8000-00000000000a" || len(q.Pending) != 2 || q.Pending[0].PromptID != "00000000-0000-4000-8000-000000000002" || q.Pending[1].Number != 2 {
		t.Fatalf("queue %+v", q)
	}
	e.do(t, "GET", "/prompt", "", nil, &p)
	if p["exec_info"].(obj)["queue_remaining"] != float64(3) {
		t.Errorf("queue_remaining %v", p)
	}
	if code, _ := e.postJSON(t, "/queue", `{"delete": ["00000000-0000-4000-8000-000000000002"]}`, nil); code != 200 {
		t.Errorf("POST /queue delete: %d", code)
	}
	e.do(t, "GET", "/queue", "", nil, &q)
	if len(q.Pending) != 1 || q.Pending[0].PromptID != "00000000-0000-4000-8000-000000000003" {
		t.Errorf("after delete: %+v", q.Pending)
	}
	if code, _ := e.postJSON(t, "/queue", `{"clear": true}`, nil); code != 200 {
		t.Errorf("POST /queue clear: %d", code)
	}
	e.do(t, "GET", "/queue", "", nil, &q)
	if len(q.Pending) != 0 || len(q.Running) != 1 {
		t.Errorf("after clear: %+v", q)
	}
	if code, raw := e.postJSON(t, "/queue", `{"delete": "00000000-0000-4000-8000-000000000003"}`, nil); code != 400 {
		t.Errorf("bad delete: %d %s", code, raw)
	}
	// An interrupt for another prompt leaves the running one alone.
	if code, _ := e.postJSON(t, "/interrupt", `{"prompt_id": "other"}`, nil); code != 200 {
		t.Errorf("POST /interrupt: %d", code)
	}
	e.do(t, "GET", "/queue", "", nil, &q)
	if len(q.Running) != 1 {
		t.Fatalf("interrupting another prompt stopped this one")
	}
	// An empty body interrupts whatever runs.
	if code, _ := e.do(t, "POST", "/api/interrupt", "", nil, nil); code != 200 {
		t.Errorf("POST /interrupt: %d", code)
	}
	entry, err := e.exec.Wait(context.Background(), "00000000-0000-4000-8000-00000000000a")
	if err != nil {
		t.Fatal(err)
	}
	if entry.Status.StatusStr != "error" {
		t.Errorf("interrupted prompt: %+v", entry.Status)
	}
	if code, _ := e.do(t, "GET", "/interrupt", "", nil, nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /interrupt: %d", code)
	}
}

func TestObjectInfo(t *testing.T) {
	e := newEnv(t, api.Options{}, executor.Options{})
	for _, name := range []string{"b.png", "a.jpg", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(e.input, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var all obj
	if code, _ := e.do(t, "GET", "/object_info", "", nil, &all); code != 200 || len(all) != len(executortest.Specs()) {
		t.Fatalf("GET /object_info: %d, %d classes", code, len(all))
	}
	sender := all["SendImageOnWebSocket"].(obj)
	want := obj{
		"input": obj{
			"required": obj{
				"images":  []any{"IMAGE"},
				"event":   []any{"STRING", obj{"default": "spec.default"}},
				"encoder": []any{[]any{"png", "jpeg", "webp"}, obj{"default": "png"}},
				"wire":    []any{[]any{"comfy", "b64parts", "parts"}, obj{"default": "comfy"}},
			},
			"optional": obj{"part_size": []any{"INT", obj{"default": float64(0), "min": float64(0), "max": float64(1 << 30)}}},
		},
		"input_order":    obj{"required": []any{"images", "event", "encoder", "wire"}, "optional": []any{"part_size"}},
		"output":         []any{},
		"output_is_list": []any{},
		"output_name":    []any{},
		"name":           "SendImageOnWebSocket",
		"display_name":   "Send Image (WebSocket)",
		"description":    "Sends images to clients.",
		"python_module":  "nodecast",
		"category":       "nodecast",
		"output_node":    true,
	}
	if !reflect.DeepEqual(sender, want) {
		g, _ := json.Marshal(sender)
		w, _ := json.Marshal(want)
		t.Errorf("object_info entry\n got  %s\n want %s", g, w)
	}
	var one obj
	e.do(t, "GET", "/api/object_info/LoadImage", "", nil, &one)
	load := one["LoadImage"].(obj)
	if got := load["input"].(obj)["required"].(obj)["image"]; !reflect.DeepEqual(got, []any{[]any{"a.jpg", "b.png"}, obj{"image_upload": true}}) {
		t.Errorf("LoadImage choices %v", got)
	}
	if !reflect.DeepEqual(load["output"], []any{"IMAGE", "MASK"}) || !reflect.DeepEqual(load["output_is_list"], []any{false, false}) || load["output_node"] != false {
		t.Errorf("LoadImage %v", load)
	}
	var none obj
	if code, _ := e.do(t, "GET", "/object_info/KSampler", "", nil, &none); code != 200 || len(none) != 0 {
		t.Errorf("unknown class: %d %v", code, none)
	}
}

// pngBytes encodes a w×h PNG with a fill colour.
func pngBytes(t *testing.T, w, h int, c uint8) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = c
	}
	img.Set(0, 0, color.NRGBA{c, 0, 0, 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// upload posts a multipart upload; fields are added after the image, as
// ComfyUI's front end does.
func (e *env) upload(t *testing.T, path, filename string, data []byte, fields map[string]string) (int, obj, []byte) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if filename != "" {
		fw, err := mw.CreateFormFile("image", filename)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write(data)
	}
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	_ = mw.Close()
	var out obj
	code, raw := e.do(t, "POST", path, mw.FormDataContentType(), &body, &out)
	return code, out, raw
}

func TestUploadAndView(t *testing.T) {
	e := newEnv(t, api.Options{Limits: protocol.ImageLimits{MaxPixels: 1000}}, executor.Options{})
	red, blue := pngBytes(t, 8, 8, 200), pngBytes(t, 8, 8, 50)

	tests := []struct {
		name     string
		filename string
		data     []byte
		fields   map[string]string
		wantCode int
		wantName string
		wantSub  string
		wantType string
	}{
		{"first upload", "cat.png", red, nil, 200, "cat.png", "", "input"},
		{"same content keeps its name", "cat.png", red, nil, 200, "cat.png", "", "input"},
		{"collision gets (1)", "cat.png", blue, nil, 200, "cat (1).png", "", "input"},
		{"next collision gets (2)", "cat.png", pngBytes(t, 4, 4, 9), nil, 200, "cat (2).png", "", "input"},
		{"overwrite replaces", "cat.png", blue, map[string]string{"overwrite": "true"}, 200, "cat.png", "", "input"},
		{"subfolder", "dog.png", red, map[string]string{"subfolder": "pets/dogs"}, 200, "dog.png", "pets/dogs", "input"},
		{"output type", "out.png", red, map[string]string{"type": "output"}, 200, "out.png", "", "output"},
		{"temp type", "tmp.png", red, map[string]string{"type": "temp"}, 200, "tmp.png", "", "temp"},
		{"subfolder escape", "x.png", red, map[string]string{"subfolder": "../../etc"}, 400, "", "", ""},
		{"absolute subfolder", "x.png", red, map[string]string{"subfolder": "/etc"}, 400, "", "", ""},
		{"unknown type", "x.png", red, map[string]string{"type": "models"}, 400, "", "", ""},
		{"not an image", "x.png", []byte("plain text, not an image"), nil, 400, "", "", ""},
		{"over the pixel limit", "big.png", pngBytes(t, 40, 40, 1), nil, 413, "", "", ""},
		{"no image field", "", nil, map[string]string{"type": "input"}, 400, "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, raw := e.upload(t, "/upload/image", tc.filename, tc.data, tc.fields)
			if code != tc.wantCode {
				t.Fatalf("status %d (%s), want %d", code, raw, tc.wantCode)
			}
			if code != 200 {
				checkErrorShape(t, body, body["error"].(obj)["type"].(string))
				return
			}
			if !reflect.DeepEqual(body, obj{"name": tc.wantName, "subfolder": tc.wantSub, "type": tc.wantType}) {
				t.Errorf("answer %v", body)
			}
		})
	}
	// The files hold what was uploaded last under each name.
	read := func(parts ...string) []byte {
		b, err := os.ReadFile(filepath.Join(parts...))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(read(e.input, "cat.png"), blue) || !bytes.Equal(read(e.input, "cat (1).png"), blue) || !bytes.Equal(read(e.input, "pets", "dogs", "dog.png"), red) {
		t.Error("stored files differ from the uploads")
	}
	if _, err := os.Stat(filepath.Join(e.input, "x.png")); err == nil {
		t.Error("a refused upload was stored")
	}
	var body obj
	_, body, _ = e.upload(t, "/upload/image", "big.png", pngBytes(t, 40, 40, 1), nil)
	if msg := body["error"].(obj)["message"].(string); !strings.Contains(msg, "1000") || !strings.Contains(msg, "1600") {
		t.Errorf("pixel limit message %q does not name the limit and the value", msg)
	}

	views := []struct {
		name, query string
		wantCode    int
		want        []byte
		wantType    string
	}{
		{"input file", "filename=cat.png&type=input", 200, blue, "image/png"},
		{"subfolder", "filename=dog.png&subfolder=pets/dogs&type=input", 200, red, "image/png"},
		{"output by default", "filename=out.png", 200, red, "image/png"},
		{"annotated name", "filename=tmp.png%20[temp]", 200, red, "image/png"},
		{"dot-dot", "filename=../cat.png&type=input", 400, nil, ""},
		{"leading slash", "filename=/etc/passwd", 400, nil, ""},
		{"subfolder escape", "filename=passwd&subfolder=../../../../etc", 400, nil, ""},
		{"unknown type", "filename=cat.png&type=models", 400, nil, ""},
		{"missing file", "filename=nope.png&type=input", 404, nil, ""},
		{"a folder", "filename=pets&type=input", 404, nil, ""},
		{"no filename", "type=input", 404, nil, ""},
	}
	for _, tc := range views {
		t.Run("view "+tc.name, func(t *testing.T) {
			for _, prefix := range []string{"", "/api"} {
				resp, err := e.srv.Client().Get(e.srv.URL + prefix + "/view?" + tc.query)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.wantCode {
					t.Fatalf("%s: status %d (%s), want %d", prefix, resp.StatusCode, b, tc.wantCode)
				}
				if tc.want != nil && (!bytes.Equal(b, tc.want) || resp.Header.Get("Content-Type") != tc.wantType) {
					t.Errorf("%s: got %d bytes of %s", prefix, len(b), resp.Header.Get("Content-Type"))
				}
			}
		})
	}

	// Uploaded inputs show up as LoadImage's choices and pass validation.
	var one obj
	e.do(t, "GET", "/object_info/LoadImage", "", nil, &one)
	choices := one["LoadImage"].(obj)["input"].(obj)["required"].(obj)["image"].([]any)[0]
	if !reflect.DeepEqual(choices, []any{"cat (1).png", "cat (2).png", "cat.png"}) {
		t.Errorf("choices %v", choices)
	}
	prompt := `{"prompt": {"1": {"class_type": "LoadImage", "inputs": {"image": "cat (1).png"}}, "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0]}}}}`
	if code, raw := e.postJSON(t, "/prompt", prompt, nil); code != 200 {
		t.Errorf("prompt naming an upload: %d %s", code, raw)
	}
}

func TestBodyLimits(t *testing.T) {
	e := newEnv(t, api.Options{MaxBodyBytes: 1000, MaxUploadBytes: 3000}, executor.Options{})
	big := `{"prompt": ` + sendPrompt + `, "extra_data": {"pad": "` + strings.Repeat("x", 2000) + `"}}`
	// An unsized reader makes the client send the body chunked, without Content-Length.
	chunked := struct{ io.Reader }{strings.NewReader(big)}
	for name, body := range map[string]io.Reader{"with Content-Length": strings.NewReader(big), "chunked": chunked} {
		t.Run(name, func(t *testing.T) {
			var out obj
			code, raw := e.do(t, "POST", "/prompt", "application/json", body, &out)
			if code != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d (%s), want 413", code, raw)
			}
			checkErrorShape(t, out, "request_too_large")
			if msg := out["error"].(obj)["message"].(string); !strings.Contains(msg, "1000") {
				t.Errorf("message %q does not name the limit", msg)
			}
		})
	}
	// Uploads have their own limit.
	code, body, raw := e.upload(t, "/upload/image", "big.png", bytes.Repeat([]byte{1}, 5000), nil)
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversize upload: %d %s", code, raw)
	}
	if msg := body["error"].(obj)["message"].(string); !strings.Contains(msg, "3000") {
		t.Errorf("message %q does not name the upload limit", msg)
	}
	if code, _, raw := e.upload(t, "/upload/image", "small.png", pngBytes(t, 4, 4, 1), nil); code != 200 {
		t.Errorf("upload under the limit: %d %s", code, raw)
	}
}

func TestFeaturesStatsAndWS(t *testing.T) {
	e := newEnv(t, api.Options{MaxUploadBytes: 1 << 20, MessageLimit: 65536, Features: map[string]any{"extension": obj{"nodecast": true}}, Version: "nodecast 1.2.3"}, executor.Options{})
	var f obj
	e.do(t, "GET", "/features", "", nil, &f)
	want := obj{"supports_preview_metadata": true, "supports_image_parts": true, "max_upload_size": float64(1 << 20), "max_message_size": float64(65536), "extension": obj{"nodecast": true}}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("features %v", f)
	}
	var st obj
	e.do(t, "GET", "/api/system_stats", "", nil, &st)
	sys := st["system"].(obj)
	for _, k := range []string{"os", "python_version", "embedded_python", "comfyui_version", "pytorch_version", "argv", "ram_total", "ram_free"} {
		if _, ok := sys[k]; !ok {
			t.Errorf("system_stats.system lacks %s", k)
		}
	}
	if sys["comfyui_version"] != "nodecast 1.2.3" || sys["embedded_python"] != false || !cpuDevice(st["devices"], sys["ram_total"]) {
		t.Errorf("system_stats %v", st)
	}
	if _, err := os.Stat("/proc/meminfo"); err == nil && sys["ram_total"].(float64) <= 0 {
		t.Errorf("ram_total %v", sys["ram_total"])
	}
	for _, p := range []string{"/ws", "/api/ws"} {
		if code, raw := e.do(t, "GET", p+"?clientId=c1", "", nil, nil); code != http.StatusTeapot || string(raw) != "hub" {
			t.Errorf("%s did not reach the hub: %d %s", p, code, raw)
		}
	}
}

func TestWithoutExecutor(t *testing.T) {
	srv := httptest.NewServer(api.New(api.Options{InputDir: t.TempDir()}))
	defer srv.Close()
	resp, err := srv.Client().Post(srv.URL+"/prompt", "application/json", strings.NewReader(`{"prompt": {}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("POST /prompt without an executor: %d", resp.StatusCode)
	}
	for path, want := range map[string]string{
		"/queue":       `{"queue_pending":[],"queue_running":[]}`,
		"/prompt":      `{"exec_info":{"queue_remaining":0}}`,
		"/object_info": `{}`,
		"/history":     `{}`,
	} {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != want {
			t.Errorf("GET %s: %d %s, want %s", path, resp.StatusCode, b, want)
		}
	}
	resp, err = srv.Client().Get(srv.URL + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET /ws without a hub: %d", resp.StatusCode)
	}
}

func ExampleNew() {
	runner := executortest.NewRunner()
	exec, _ := executor.New(executor.Options{Runner: runner})
	defer exec.Close()
	srv := httptest.NewServer(api.New(api.Options{Executor: exec, Classes: runner.Classes}))
	defer srv.Close()
	resp, _ := http.Post(srv.URL+"/prompt", "application/json", strings.NewReader(`{"prompt": {}}`))
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(b))
	// Output: 400 {"error":{"type":"prompt_no_outputs","message":"Prompt has no outputs","details":"","extra_info":{}},"node_errors":{}}
}

func TestOriginCheck(t *testing.T) {
	tests := []struct {
		name, host, origin string
		allowCrossOrigin   bool
		want               int
	}{
		{"no origin", "127.0.0.1:8188", "", false, 200},
		{"same origin", "127.0.0.1:8188", "http://127.0.0.1:8188", false, 200},
		{"localhost same origin", "localhost:8188", "http://localhost:8188", false, 200},
		{"web page to a local server", "127.0.0.1:8188", "https://evil.example", false, 403},
		{"other port on loopback", "localhost:8188", "http://localhost:3000", false, 403},
		{"non-loopback host is not checked", "comfy.example:8188", "https://app.example", false, 200},
		{"allowed by option", "127.0.0.1:8188", "https://evil.example", true, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, api.Options{AllowCrossOrigin: tc.allowCrossOrigin}, executor.Options{})
			req, _ := http.NewRequest("GET", e.srv.URL+"/prompt", nil)
			req.Host = tc.host
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// cpuDevice reports whether devices is ComfyUI's one CPU entry (server.py
// system_stats: name, type, index, vram_total, vram_free, torch_vram_total,
// torch_vram_free), sized by the machine's RAM.
func cpuDevice(devices, ramTotal any) bool {
	list, ok := devices.([]any)
	if !ok || len(list) != 1 {
		return false
	}
	d, ok := list[0].(map[string]any)
	if !ok || len(d) != 7 || d["name"] != "cpu" || d["type"] != "cpu" || d["index"] != nil {
		return false
	}
	_, hasFree := d["vram_free"].(float64)
	_, hasTorchFree := d["torch_vram_free"].(float64)
	return d["vram_total"] == ramTotal && d["torch_vram_total"] == ramTotal && hasFree && hasTorchFree
}
