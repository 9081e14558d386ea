package host_test

import (
	"image/png"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/internal/testimage"
)

// Issue 11, item 5: the pack's peak RSS for LoadImage(side²) ->
// RepeatImageBatch(4) -> ETN_SendImageWebSocket stays within 1.5 times the
// batch's uint8 bytes plus the encoded images, and goes back to the OS after
// the prompt. The 2048² (a generated photo-like image, or the file
// NODECAST_PHOTO_2048 names): smaller prompts stay under the size at which
// the plugin returns memory at all (32 MiB), and its fixed costs would
// dominate the bound. Measured from /proc of the plugin process.
func TestPromptPeakRSS(t *testing.T) {
	side := 2048
	if v := os.Getenv("NODECAST_SPEED_SIDE"); v != "" {
		side, _ = strconv.Atoi(v)
	}
	h, srv := binaryPackHost(t, host.Options{}, map[string][]byte{"photo.png": testimage.PhotoPNG(t, side, png.BestSpeed)})
	c, err := testclient.Dial(srv.URL, "rss", testclient.Parts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mem := measurePack(t, h)
	base := mem.Start
	start := time.Now()
	_, entry := waitPrompt(t, h, srv, `{"client_id": "rss", "prompt": {
  "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
  "2": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 4}},
  "3": {"class_type": "ETN_SendImageWebSocket", "inputs": {"images": ["2", 0]}}}}`)
	elapsed := time.Since(start)
	if entry.Status.StatusStr != "success" {
		t.Fatalf("status %+v", entry.Status)
	}
	if err := c.WaitImages(4, time.Minute); err != nil {
		t.Fatal(err)
	}
	var encoded int64
	for _, im := range c.Images() {
		encoded += im.Size
	}
	batch := int64(4 * side * side * 3)
	bound := (batch + encoded) * 3 / 2
	peak := mem.Peak(t)
	if peak-base > bound {
		t.Errorf("pack peak RSS %d MiB over its start %d MiB: %d MiB, bound 1.5 x (batch %d MiB + encoded %d MiB) = %d MiB",
			peak>>20, base>>20, (peak-base)>>20, batch>>20, encoded>>20, bound>>20)
	}
	returned := time.Now()
	after := mem.SettledBelow(t, base+bound/8)
	if after > base+bound/8 {
		t.Errorf("pack RSS %d MiB after the prompt, want under %d MiB: memory not given back", after>>20, (base+bound/8)>>20)
	}
	t.Logf("side %d: prompt %s; pack RSS start %d MiB, peak %d MiB (+%d MiB; batch uint8 %d MiB, encoded %d MiB, bound +%d MiB), after %d MiB within %s",
		side, elapsed.Round(time.Millisecond), base>>20, peak>>20, (peak-base)>>20, batch>>20, encoded>>20, bound>>20, after>>20, time.Since(returned).Round(10*time.Millisecond))
}
