package e2e_test

import (
	"fmt"
	"testing"

	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/protocol"
)

// TestLargeImagesStayUnderMessageLimit sends 2048² photos whose PNGs are
// over 4 MiB to an ntlb64part client and to PART clients that, like stock
// aiohttp, fail on any message of 4,194,304 bytes or more. Each image must
// arrive split, whole and with the upload's pixels.
func TestLargeImagesStayUnderMessageLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("2048² images")
	}
	const size, n = 2048, 2
	p := photoOf(t, size)
	s := startBuiltServer(t, config.Default())
	name := mustUpload(t, s, "large.png", p.PNG)

	cases := []struct {
		name   string
		sender string
		inputs map[string]any
		parts  bool
		shape  wireShape
		event  string
	}{
		{name: "NTL_SendImagesWebSocket to an ntlb64part client", sender: "NTL_SendImagesWebSocket",
			inputs: map[string]any{"nodelabel": "big"}, shape: shapeB64, event: "ntlb64part"},
		{name: "NTL_SendImagesWebSocket to a PART client", sender: "NTL_SendImagesWebSocket",
			inputs: map[string]any{"nodelabel": "big"}, parts: true, shape: shapePART, event: "ntlb64part"},
		// ETN's images are whole type 1 frames to plain clients; a PART
		// client must get them split.
		{name: "ETN_SendImageWebSocket to a PART client", sender: "ETN_SendImageWebSocket",
			parts: true, shape: shapePART, event: "etn_image"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialWS(t, s, fmt.Sprintf("large-%d", i), tc.parts, stockReadLimit)
			id := queuePrompt(t, s, pipeline(name, n, tc.sender, tc.inputs), c.ID)
			log := waitPromptEnd(t, c, id)
			checkErr(t, c) // a message over the read limit fails the client
			b64 := ""
			if tc.shape == shapeB64 {
				b64 = tc.event
			}
			checkPromptOrder(t, log, promptShape{PromptID: id, Nodes: []string{"1", "2", "3"}, Images: n, B64Event: b64, Executed: true})
			imgs := imagesOf(t, log, tc.shape, tc.event, id, n)
			for _, img := range imgs {
				if len(img.Data) <= protocol.DefaultMessageLimit {
					t.Fatalf("image %d is %d bytes; the test needs images over 4 MiB", img.Index, len(img.Data))
				}
			}
			checkImages(t, imgs, n, p)
			messages := 0
			for _, r := range log {
				if r.Kind == testclient.PART || r.Type == b64 {
					messages++
				}
				if r.Size >= protocol.DefaultMessageLimit {
					t.Fatalf("a message of %d bytes reached the client", r.Size)
				}
			}
			if messages < 2*n {
				t.Fatalf("%d images of over 4 MiB came in %d messages", n, messages)
			}
			t.Logf("%d images of %d bytes in %d messages, the largest %d bytes", n, len(imgs[0].Data), messages, c.MaxMessage())
		})
	}
}
