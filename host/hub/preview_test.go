package hub

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/nodecast/nodecast/protocol"
)

// TestPreviewMetadataFrames: from one published image, a client that sent
// supports_preview_metadata gets a type 4 frame with ComfyUI's header, a
// client that sent nothing gets type 1, a parts client gets PART, all at once.
func TestPreviewMetadataFrames(t *testing.T) {
	h, srv := startHub(t, Options{})
	preview := connect(t, srv, dialOpts{query: "clientId=preview", flags: protocol.FeatureFlags{protocol.FlagPreviewMetadata: true}})
	plain := connect(t, srv, dialOpts{query: "clientId=plain"})
	parts := connect(t, srv, dialOpts{query: "clientId=parts", flags: protocol.FeatureFlags{protocol.FlagImageParts: true, protocol.FlagPreviewMetadata: true}})
	notTrue := connect(t, srv, dialOpts{query: "clientId=nottrue", flags: protocol.FeatureFlags{protocol.FlagPreviewMetadata: "yes"}})
	img := testPNG(t)
	publishAll(t, h, "", split(img, 1<<20, protocol.WireComfy, "img-1"))

	kind, msg := preview.read()
	if kind != websocket.BinaryMessage {
		t.Fatalf("preview client: message kind %d", kind)
	}
	if typ, _ := protocol.FrameType(msg); typ != protocol.BinaryPreviewImageWithMetadata {
		t.Fatalf("preview client: frame type %d, want 4", typ)
	}
	meta, data, err := protocol.ParsePreviewFrame(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, img) {
		t.Errorf("type 4 image: %d bytes differ from the %d published", len(data), len(img))
	}
	want := protocol.PreviewMetadata{NodeID: "9", DisplayNodeID: "9", RealNodeID: "9", PromptID: "prompt-1", ImageType: "image/png"}
	if meta != want {
		t.Errorf("type 4 metadata %+v, want %+v", meta, want)
	}
	// The header's keys, in ComfyUI's order, parent_node_id null as ComfyUI sends it.
	n := int(msg[4])<<24 | int(msg[5])<<16 | int(msg[6])<<8 | int(msg[7])
	if got := string(msg[8 : 8+n]); got != `{"node_id":"9","prompt_id":"prompt-1","display_node_id":"9","parent_node_id":null,"real_node_id":"9","image_type":"image/png"}` {
		t.Errorf("type 4 header %s", got)
	}
	checkPNG(t, "plain client", plain.readImage(shapeWhole).data, img)
	checkPNG(t, "parts client", parts.readImage(shapePART).data, img)
	checkPNG(t, "client whose flag is not true", notTrue.readImage(shapeWhole).data, img)

	// Base64-wire images stay base64 for a preview client: type 4 replaces
	// type 1 only.
	publishAll(t, h, "preview", split(img, 1<<20, protocol.WireB64Parts, "img-2"))
	checkPNG(t, "preview client, b64parts", preview.readImage(shapeBase64).data, img)
	// A format type 1 has no code for still reaches a preview client whole,
	// named by image_type.
	webp := split([]byte("RIFF\x00\x00\x00\x00WEBPVP8 fake"), 1<<20, protocol.WireComfy, "img-3")
	for _, p := range webp {
		p.MIME = "image/webp"
	}
	publishAll(t, h, "preview", webp)
	_, msg = preview.read()
	meta, data, err = protocol.ParsePreviewFrame(msg)
	if err != nil || meta.ImageType != "image/webp" || string(data) != "RIFF\x00\x00\x00\x00WEBPVP8 fake" {
		t.Errorf("webp to a preview client: %+v %q %v", meta, data, err)
	}
	var m map[string]any
	if err := json.Unmarshal(msg[8:8+int(msg[7])], &m); err != nil || len(m) != 6 {
		t.Errorf("header %v: %v", m, err)
	}
}
