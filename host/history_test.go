package host_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image/png"
	"io"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/host/internal/hosttest"
	"github.com/nodecast/nodecast/host/internal/testclient"
)

// paddedPNG is a w×h PNG followed, before IEND, by a private ancillary
// chunk of pad bytes, which decoders skip: a file of any size that decodes
// fast, as a large photo sent as base64 would be.
func paddedPNG(t *testing.T, w, h, pad int) []byte {
	t.Helper()
	p := encodePNG(t, w, h)
	iend := len(p) - 12
	data := bytes.Repeat([]byte{0x5a}, pad)
	var chunk bytes.Buffer
	_ = binary.Write(&chunk, binary.BigEndian, uint32(pad))
	chunk.WriteString("prVt")
	chunk.Write(data)
	_ = binary.Write(&chunk, binary.BigEndian, crc32.ChecksumIEEE(append([]byte("prVt"), data...)))
	return append(append(append([]byte(nil), p[:iend]...), chunk.Bytes()...), p[iend:]...)
}

func base64Prompt(b64 string) string {
	return `{"prompt": {"1": {"class_type": "ETN_LoadImageBase64", "inputs": {"image": "` + b64 + `"}},
  "2": {"class_type": "SendImageOnWebSocket", "inputs": {"images": ["1", 0], "event": "history.test"}}}}`
}

// liveHeap is the test process's heap after a collection: where the host
// keeps its history.
func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func getHistory(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// Item 3: ten prompts that each carried a large base64 image (5 MB here,
// 50 MB in the issue). History keeps the inputs as placeholders, so the
// host's heap does not grow by them and GET /history answers a few KB;
// max_items is honoured.
func TestHistoryElidesLargeInputs(t *testing.T) {
	h, srv := loopbackHost(t, host.Options{})
	b64 := base64.StdEncoding.EncodeToString(paddedPNG(t, 8, 8, 3_750_000))
	before := liveHeap()
	var ids []string
	for range 10 {
		id, entry := waitPrompt(t, h, srv, base64Prompt(b64))
		if entry.Status.StatusStr != "success" {
			t.Fatalf("prompt failed: %+v", entry.Status)
		}
		ids = append(ids, id)
	}
	grown := int64(liveHeap()) - int64(before)
	resp, raw := getHistory(t, srv.URL+"/history")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /history: %d", resp.StatusCode)
	}
	var hist map[string]struct {
		Prompt []json.RawMessage `json:"prompt"`
	}
	if err := json.Unmarshal(raw, &hist); err != nil || len(hist) != 10 {
		t.Fatalf("history of %d entries (%v)", len(hist), err)
	}
	var prompt map[string]struct {
		Inputs map[string]any `json:"inputs"`
	}
	if err := json.Unmarshal(hist[ids[0]].Prompt[2], &prompt); err != nil {
		t.Fatal(err)
	}
	img, _ := prompt["1"].Inputs["image"].(string)
	if !strings.Contains(img, fmt.Sprintf("%d-byte value elided", len(b64))) || !strings.Contains(img, b64[:32]) {
		t.Errorf("input kept as %.200q, want a placeholder naming its length", img)
	}
	if len(raw) > 64<<10 {
		t.Errorf("GET /history answered %d bytes for ten prompts", len(raw))
	}
	// What the last prompt's run still holds may remain; ten prompts' inputs,
	// kept once each as before, would be twice this bound.
	if grown > int64(5*len(b64)) {
		t.Errorf("host heap grew by %d MiB over ten prompts of %d MB inputs", grown>>20, len(b64)/1e6)
	}
	_, raw = getHistory(t, srv.URL+"/history?max_items=3")
	var last map[string]any
	if err := json.Unmarshal(raw, &last); err != nil || len(last) != 3 {
		t.Fatalf("max_items=3: %d entries (%v)", len(last), err)
	}
	for _, id := range ids[7:] {
		if _, ok := last[id]; !ok {
			t.Errorf("max_items=3 lacks %s, one of the last three", id)
		}
	}
	t.Logf("10 prompts of %d-byte base64: /history %d bytes, host heap +%d KiB", len(b64), len(raw), grown>>10)
}

// Item 3: history is bounded in bytes: with inputs kept whole up to 300 KB
// and a 1 MiB bound, the oldest entries go, the answer stays under the
// bound, and it is streamed (chunked, not built whole first).
func TestHistoryBoundedInBytes(t *testing.T) {
	h, srv := loopbackHost(t, host.Options{HistoryBytes: 1 << 20, HistoryValueBytes: 300_000})
	b64 := base64.StdEncoding.EncodeToString(paddedPNG(t, 8, 8, 150_000))
	var ids []string
	for range 10 {
		id, _ := waitPrompt(t, h, srv, base64Prompt(b64))
		ids = append(ids, id)
	}
	resp, raw := getHistory(t, srv.URL+"/api/history")
	var hist map[string]any
	if err := json.Unmarshal(raw, &hist); err != nil {
		t.Fatal(err)
	}
	if len(raw) > 1<<20 || len(hist) >= 10 || len(hist) < 3 {
		t.Errorf("history of %d entries in %d bytes, want the newest that fit in 1 MiB", len(hist), len(raw))
	}
	if _, ok := hist[ids[9]]; !ok {
		t.Errorf("the newest prompt is not in the history")
	}
	if _, ok := hist[ids[0]]; ok {
		t.Errorf("the oldest prompt is still in the history")
	}
	if resp.ContentLength != -1 || len(resp.TransferEncoding) == 0 {
		t.Errorf("answer of %d bytes sent with Content-Length %d: built whole, not streamed", len(raw), resp.ContentLength)
	}
}

// Item 5: a base64 input over the plugin bridge's old 64 MiB gRPC limit,
// well inside the 512 MiB body limit, reaches its node and runs; the same
// input made invalid fails with an execution_error that reaches the client
// and quotes the input shortened, saying so.
func TestBase64InputOver64MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("sends a 65 MiB prompt")
	}
	h, srv := loopbackHost(t, host.Options{Packs: []host.PackSource{hosttest.BuiltinPack(t)}})
	c, err := testclient.Dial(srv.URL, "big", testclient.Parts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b64 := base64.StdEncoding.EncodeToString(paddedPNG(t, 8, 8, (65<<20)*3/4))
	if len(b64) <= 64<<20 {
		t.Fatalf("input of %d bytes is not over 64 MiB", len(b64))
	}
	body := `{"client_id": "big", ` + strings.TrimPrefix(base64Prompt(b64), "{")
	_, entry := waitPrompt(t, h, srv, body)
	if entry.Status.StatusStr != "success" {
		t.Fatalf("a %d-byte base64 input failed: %+v", len(b64), entry.Status.Messages)
	}
	if err := c.WaitImages(1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if m, err := png.Decode(bytes.NewReader(c.Images()[0].Data)); err != nil || m.Bounds().Dx() != 8 {
		t.Fatalf("image sent: %v", err)
	}

	bad := b64[:len(b64)-8] + "!!!!!!!!"
	body = `{"client_id": "big", ` + strings.TrimPrefix(base64Prompt(bad), "{")
	waitPrompt(t, h, srv, body)
	msg, err := c.WaitMessage("execution_error", time.Minute)
	if err != nil {
		t.Fatalf("execution_error never reached the client: %v", err)
	}
	if len(msg.Data) > 16<<10 {
		t.Errorf("execution_error of %d bytes", len(msg.Data))
	}
	var e struct {
		ExceptionType    string           `json:"exception_type"`
		ExceptionMessage string           `json:"exception_message"`
		CurrentInputs    map[string][]any `json:"current_inputs"`
	}
	if err := json.Unmarshal(msg.Data, &e); err != nil {
		t.Fatal(err)
	}
	quoted, _ := e.CurrentInputs["image"][0].(string)
	if e.ExceptionType != "binascii.Error" || !strings.Contains(e.ExceptionMessage, fmt.Sprintf("of %d", len(bad))) ||
		!strings.Contains(quoted, fmt.Sprintf("shortened by nodecast: %d bytes in all", len(bad))) || !strings.HasPrefix(quoted, bad[:512]) {
		t.Errorf("execution_error %s %q, input quoted as %.100q...", e.ExceptionType, e.ExceptionMessage, quoted)
	}
}
