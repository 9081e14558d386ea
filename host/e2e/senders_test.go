package e2e_test

import (
	"fmt"
	"reflect"
	"sort"
	"testing"

	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/plugins/builtin"
	"github.com/nodecast/nodecast/protocol"
)

// wireShape is the shape in which a client must receive a prompt's images.
type wireShape int

const (
	shapeWhole wireShape = iota // type 1 frames
	shapePART                   // PART frames
	shapeB64                    // base64 JSON parts
)

// receivedImage is one image as a client received it, whatever the shape.
type receivedImage struct {
	Index int // position in the batch; -1 when the shape does not say (type 1)
	Data  []byte
}

// imagesOf returns the images a client received in shape, and fails the
// test when it received images in another shape too.
func imagesOf(t *testing.T, log []testclient.Received, shape wireShape, event string, promptID string, batch int) []receivedImage {
	t.Helper()
	var out []receivedImage
	var whole, parts, b64 int
	for _, r := range log {
		switch {
		case r.Kind == testclient.Whole:
			whole++
			if r.Format != protocol.ImageFormatPNG {
				t.Fatalf("type 1 frame with format %d, want %d (PNG)", r.Format, protocol.ImageFormatPNG)
			}
			out = append(out, receivedImage{Index: -1, Data: r.Image})
		case r.Kind == testclient.PART:
			parts++
			h := r.Part
			if h.Event != event || h.PromptID != promptID || h.Node != "3" || h.Batch != batch || h.MIME != "image/png" {
				t.Fatalf("PART header %+v: want event %q, prompt %s, node 3, batch %d, image/png", h, event, promptID, batch)
			}
			if r.Done != nil {
				out = append(out, receivedImage{Index: r.Done.Index, Data: r.Done.Data})
			}
		case r.Kind == testclient.JSON && r.Type == event && event != "":
			b64++
		}
	}
	switch shape {
	case shapeWhole:
		if parts+b64 != 0 {
			t.Fatalf("a type 1 client also got %d PART frames and %d base64 parts", parts, b64)
		}
	case shapePART:
		if whole+b64 != 0 {
			t.Fatalf("a PART client also got %d type 1 frames and %d base64 parts", whole, b64)
		}
	case shapeB64:
		if whole+parts != 0 {
			t.Fatalf("a base64 client also got %d type 1 frames and %d PART frames", whole, parts)
		}
		for _, img := range joinB64Parts(t, log, event) {
			m := img.Meta
			if m.PromptID != promptID || m.Node != "3" || m.Batch != batch || m.MIME != "image/png" {
				t.Fatalf("base64 part fields %+v: want prompt %s, node 3, batch %d, image/png", m, promptID, batch)
			}
			out = append(out, receivedImage{Index: img.Index, Data: img.Data})
		}
	}
	return out
}

// checkImages checks that a client received n images, one per batch index
// when the shape carries indexes, each with exactly the photo's pixels.
func checkImages(t *testing.T, imgs []receivedImage, n int, p *photo) {
	t.Helper()
	if len(imgs) != n {
		t.Fatalf("received %d images, want %d", len(imgs), n)
	}
	var idx []int
	for _, img := range imgs {
		if img.Index >= 0 {
			idx = append(idx, img.Index)
		}
		checkPNG(t, img.Data, p)
	}
	sort.Ints(idx)
	if len(idx) > 0 && fmt.Sprint(idx) != wantIndexes(n) {
		t.Fatalf("image indexes %v, want %s", idx, wantIndexes(n))
	}
}

// TestSendersEndToEnd runs LoadImage → RepeatImageBatch → sender through
// `nodecast serve`'s handler stack for every sender and every kind of
// client, and checks each received image pixel by pixel against the upload
// and each prompt's messages against ComfyUI's order.
func TestSendersEndToEnd(t *testing.T) {
	const size, n = 1024, 3
	p := photoOf(t, size)
	s := startBuiltServer(t, config.Default())
	name := mustUpload(t, s, "photo.png", p.PNG)

	cases := []struct {
		name     string
		sender   string
		inputs   map[string]any
		parts    bool // the client negotiates supports_image_parts
		shape    wireShape
		event    string // PART event, or type of the base64 part messages
		executed bool
	}{
		{name: "ETN_SendImageWebSocket to a plain client", sender: "ETN_SendImageWebSocket",
			shape: shapeWhole, executed: true},
		{name: "SaveImageWebsocket to a plain client", sender: "SaveImageWebsocket",
			shape: shapeWhole},
		{name: "NTL_SendImagesWebSocket to a plain client", sender: "NTL_SendImagesWebSocket",
			inputs: map[string]any{"nodelabel": "out"}, shape: shapeB64, event: "ntlb64part", executed: true},
		{name: "NTL_SendImageWebSocket to a plain client", sender: "NTL_SendImageWebSocket",
			inputs: map[string]any{"nodelabel": "one", "partlen": 100000}, shape: shapeB64, event: "ntlb64part", executed: true},
		{name: "SendImageOnWebSocket to a PART client", sender: "SendImageOnWebSocket",
			inputs: map[string]any{"event": "e2e.photos"}, parts: true, shape: shapePART, event: "e2e.photos", executed: true},
		// No event input: the event is the default of the serve config.
		{name: "SendImageOnWebSocket to a plain client", sender: "SendImageOnWebSocket",
			shape: shapeB64, event: defaultEvent(), executed: true},
		{name: "ETN_SendImageWebSocket to a PART client", sender: "ETN_SendImageWebSocket",
			parts: true, shape: shapePART, event: "etn_image", executed: true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialWS(t, s, fmt.Sprintf("senders-%d", i), tc.parts, stockReadLimit)
			id := queuePrompt(t, s, pipeline(name, n, tc.sender, tc.inputs), c.ID)
			log := waitPromptEnd(t, c, id)
			checkErr(t, c)
			b64 := ""
			if tc.shape == shapeB64 {
				b64 = tc.event
			}
			checkPromptOrder(t, log, promptShape{PromptID: id, Nodes: []string{"1", "2", "3"}, Images: n, B64Event: b64, Executed: tc.executed})
			outputs := historyEntry(t, s, id)["outputs"].(map[string]any)
			if tc.executed {
				want := websocketOutput(n, "image/png")
				if got := executedOutput(t, log, id); !reflect.DeepEqual(got, want) {
					t.Errorf("executed output %v, want %v", got, want)
				}
				if got := outputs["3"]; !reflect.DeepEqual(got, want) {
					t.Errorf("history outputs of node 3: %v, want %v", got, want)
				}
			} else if len(outputs) != 0 {
				t.Errorf("history outputs %v, want none", outputs)
			}
			checkImages(t, imagesOf(t, log, tc.shape, tc.event, id, n), n, p)
			if partLen, ok := tc.inputs["partlen"].(int); ok {
				for _, r := range log {
					if s, _ := r.Field("part_b64").(string); r.Type == tc.event && len(s) > partLen {
						t.Fatalf("a part of %d base64 characters, partlen %d", len(s), partLen)
					}
				}
			}
			if m := c.MaxMessage(); m > stockReadLimit {
				t.Errorf("largest message %d bytes, want under %d", m, protocol.DefaultMessageLimit)
			}
		})
	}
}

// defaultEvent is SendImageOnWebSocket's event when the prompt sets none:
// the serve config's default when it has one, else the node's own.
func defaultEvent() string {
	if e := config.Default().Defaults.Event; e != "" {
		return e
	}
	return builtin.DefaultEvent
}
