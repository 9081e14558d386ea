package plugins_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"unsafe"

	"github.com/hashicorp/go-plugin"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// repeatNode emits `images` images of 2 parts each, as a sender does:
// "same" sends one buffer every time (a repeated image, encoded once);
// "reuse" rewrites one buffer with new bytes for each image (a node that
// recycles its buffer); "lie" sends one buffer under a new sha256 each time;
// "cycle6" and "cycle10" send 6 or 10 buffers in turn, the first within the
// window of parts the bridge remembers, the second beyond it.
type repeatNode struct{}

func (repeatNode) Spec() plugins.Spec {
	return plugins.Spec{ClassType: "test.Repeat", OutputNode: true, Inputs: []plugins.Input{
		{Name: "mode", Type: plugins.TypeString}, {Name: "images", Type: plugins.TypeInt}}}
}

func (repeatNode) Run(ctx context.Context, c *plugins.Call) (plugins.Result, error) {
	mode, err := c.String("mode", "same")
	if err != nil {
		return plugins.Result{}, err
	}
	n, err := c.Int("images", 4)
	if err != nil {
		return plugins.Result{}, err
	}
	bufs := make([][]byte, 10)
	for i := range bufs {
		bufs[i] = repeatImage(i)
	}
	buf := bufs[0]
	for i := range int(n) {
		switch mode {
		case "cycle6":
			buf = bufs[i%6]
		case "cycle10":
			buf = bufs[i%10]
		}
		sum := sha256.Sum256(buf)
		sha := hex.EncodeToString(sum[:])
		switch mode {
		case "reuse":
			copy(buf, repeatImage(i))
			sum = sha256.Sum256(buf)
			sha = hex.EncodeToString(sum[:])
		case "lie":
			sha = fmt.Sprintf("%064x", i)
		}
		half := len(buf) / 2
		for k, r := range [][2]int{{0, half}, {half, len(buf)}} {
			p := &protocol.ImagePart{PartHeader: protocol.PartHeader{
				Event: "e", PromptID: c.PromptID, Node: c.NodeID, ImageID: fmt.Sprintf("img%d", i),
				Index: i, Batch: int(n), Part: k, Parts: 2, Offset: int64(r[0]), Size: int64(len(buf)),
				MIME: "image/png", SHA256: sha}, Data: buf[r[0]:r[1]]}
			if err := c.Emitter.EmitPart(ctx, p); err != nil {
				return plugins.Result{}, err
			}
		}
	}
	return plugins.Result{}, nil
}

// repeatImage is 256 KiB of bytes that differ for each i.
func repeatImage(i int) []byte {
	b := make([]byte, 256<<10)
	for j := range b {
		b[j] = byte(j*7 + i*13 + j>>9)
	}
	return b
}

// TestRepeatedPartBytesCrossOnce checks that parts whose bytes are the same
// memory with the same sha256 cross the bridge once (the host's parts share
// the first copy), and that a recycled buffer or a changed sha256 is sent
// again, each image with its own bytes.
func TestRepeatedPartBytesCrossOnce(t *testing.T) {
	p := &plugins.NodePackPlugin{Pack: plugins.Pack{Name: "repeat", Nodes: []plugins.Node{repeatNode{}}}}
	client, server := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{plugins.PluginName: p})
	t.Cleanup(func() { server.Stop(); _ = client.Close() })
	raw, err := client.Dispense(plugins.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	pc := raw.(*plugins.PackClient)
	const images = 20 // more than the window's parts: early parts are sent again
	for _, mode := range []string{"same", "reuse", "lie", "cycle6", "cycle10"} {
		t.Run(mode, func(t *testing.T) {
			var parts []*protocol.ImagePart
			_, err := pc.Run(t.Context(), plugins.RunRequest{ClassType: "test.Repeat", NodeID: "3", PromptID: "p",
				Inputs: map[string]any{"mode": mode, "images": images}},
				plugins.RunHandlers{Part: func(p *protocol.ImagePart) error { parts = append(parts, p); return nil }})
			if err != nil {
				t.Fatal(err)
			}
			if len(parts) != 2*images {
				t.Fatalf("%d parts, want %d", len(parts), 2*images)
			}
			copies := map[*byte]bool{}
			for i := range images {
				want := repeatImage(0)
				switch mode {
				case "reuse":
					want = repeatImage(i)
				case "cycle6":
					want = repeatImage(i % 6)
				case "cycle10":
					want = repeatImage(i % 10)
				}
				got := append(append([]byte(nil), parts[2*i].Data...), parts[2*i+1].Data...)
				if !bytes.Equal(got, want) {
					t.Fatalf("image %d: wrong bytes", i)
				}
				copies[unsafe.SliceData(parts[2*i].Data)] = true
			}
			// The window holds 16 parts (8 images): 6 buffers in turn stay
			// in it, 10 do not, and each comes again after it left.
			wantCopies := map[string]int{"same": 1, "cycle6": 6}[mode]
			if wantCopies == 0 {
				wantCopies = images
			}
			if len(copies) != wantCopies {
				t.Errorf("the host holds %d copies of the first parts, want %d", len(copies), wantCopies)
			}
		})
	}
}
