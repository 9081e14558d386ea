package host_test

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/host/internal/testclient"
)

// photoPNG is a photo-like side×side RGB PNG (smooth gradients and noise, so
// it compresses like a photo), or the file NODECAST_PHOTO_<side> names.
func photoPNG(t testing.TB, side int) []byte {
	if p := os.Getenv("NODECAST_PHOTO_" + strconv.Itoa(side)); p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	m := image.NewRGBA(image.Rect(0, 0, side, side))
	seed := uint32(1)
	for y := 0; y < side; y++ {
		for x := 0; x < side; x++ {
			seed = seed*1664525 + 1013904223
			i := m.PixOffset(x, y)
			m.Pix[i] = uint8(x*255/side) ^ uint8(seed>>29)
			m.Pix[i+1] = uint8(y*255/side) ^ uint8(seed>>27&3)
			m.Pix[i+2] = uint8((x+y)*127/(2*side)) + uint8(seed>>30)
			m.Pix[i+3] = 0xff
		}
	}
	var b bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

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
	h, srv := binaryPackHost(t, host.Options{}, map[string][]byte{"photo.png": photoPNG(t, side)})
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
