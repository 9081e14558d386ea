package host_test

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/host/internal/testclient"
)

// cachedNodes returns the execution_cached node list of a finished prompt,
// and which nodes ran (executed).
func cachedNodes(t *testing.T, e executor.HistoryEntry) []string {
	t.Helper()
	for _, m := range e.Status.Messages {
		if m.Type != "execution_cached" {
			continue
		}
		b, _ := json.Marshal(m.Data)
		var d struct {
			Nodes []string `json:"nodes"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		return d.Nodes
	}
	t.Fatal("no execution_cached message")
	return nil
}

func cachePrompt(amount string) string {
	return `{"client_id": "cache", "prompt": {
  "1": {"class_type": "LoadImage", "inputs": {"image": "src.png"}},
  "2": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": ` + amount + `}},
  "3": {"class_type": "ETN_SendImageWebSocket", "inputs": {"images": ["2", 0]}}}}`
}

// ComfyUI's cache through the real subprocess pack: unchanged nodes do not
// run again and are listed in execution_cached; the output node always runs
// and its images arrive; a changed input re-runs its node and those below;
// LoadImage keys on the file's content; POST /free empties the cache; and
// the cache's tensors are bounded in bytes.
func TestOutputCache(t *testing.T) {
	input := t.TempDir()
	h, srv := binaryPackHost(t, host.Options{CacheBytes: 64 << 20, InputDir: input}, map[string][]byte{"src.png": encodePNG(t, 64, 48)})
	src := filepath.Join(input, "src.png")
	c, err := testclient.Dial(srv.URL, "cache", testclient.Parts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	images := 0
	step := func(name, prompt string, wantCached ...string) {
		t.Helper()
		_, entry := waitPrompt(t, h, srv, prompt)
		if entry.Status.StatusStr != "success" {
			t.Fatalf("%s: status %+v", name, entry.Status)
		}
		if got := cachedNodes(t, entry); !slices.Equal(got, append([]string{}, wantCached...)) {
			t.Fatalf("%s: execution_cached %v, want %v", name, got, wantCached)
		}
		images += 2
		if err := c.WaitImages(images, time.Minute); err != nil {
			t.Fatalf("%s: the output node did not send its images: %v", name, err)
		}
	}
	step("first", cachePrompt("2"))
	step("same prompt", cachePrompt("2"), "1", "2")
	// LoadImage's 8-bit IMAGE and float32 64x64 MASK; the repeat, a view,
	// counts at its whole size: the cache may keep it alone.
	if n, b := h.Executor().CacheStats(); n != 2 || b != 64*48*3+64*64*4+2*64*48*3 {
		t.Errorf("cache holds %d entries of %d bytes, want 2 of %d", n, b, 64*48*3+64*64*4+2*64*48*3)
	}
	_, entry := waitPrompt(t, h, srv, strings.Replace(cachePrompt("2"), `"amount": 2`, `"amount": 3`, 1))
	if got := cachedNodes(t, entry); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("changed amount: execution_cached %v, want [1]", got)
	}
	images += 3
	if err := c.WaitImages(images, time.Minute); err != nil {
		t.Fatal(err)
	}
	// Same name, new content: LoadImage runs again (IS_CHANGED).
	if err := os.WriteFile(src, encodePNG(t, 64, 49), 0o644); err != nil {
		t.Fatal(err)
	}
	step("new file content", cachePrompt("2"))
	for _, im := range c.Images()[images-2:] {
		cfg, err := png.DecodeConfig(bytes.NewReader(im.Data))
		if err != nil || cfg.Height != 49 {
			t.Fatalf("image of the new file: %v %+v", err, cfg)
		}
	}
	code, body := request(t, srv, "POST", "/free", map[string]string{"Content-Type": "application/json"}, strings.NewReader(`{"free_memory": true}`))
	if code != 200 {
		t.Fatalf("POST /free: %d %s", code, body)
	}
	if n, b := h.Executor().CacheStats(); n != 0 || b != 0 {
		t.Fatalf("after /free the cache holds %d entries, %d bytes", n, b)
	}
	if st := h.Packs()[0]; st.Pid == 0 {
		t.Fatal("no pack")
	}
	step("after free", cachePrompt("2"))
}

// TestOutputCacheBound: outputs larger than the cache's bound are not kept,
// and --cache-none's zero bound keeps nothing.
func TestOutputCacheBound(t *testing.T) {
	for _, bound := range []int64{0, 1 << 10} {
		h, srv := binaryPackHost(t, host.Options{CacheBytes: bound}, map[string][]byte{"src.png": encodePNG(t, 64, 48)})
		for range 2 {
			_, entry := waitPrompt(t, h, srv, cachePrompt("2"))
			if got := cachedNodes(t, entry); len(got) != 0 {
				t.Fatalf("bound %d: execution_cached %v", bound, got)
			}
		}
		if n, _ := h.Executor().CacheStats(); n != 0 {
			t.Fatalf("no cache, yet %d entries", n)
		}
	}
}
