package plugins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/protocol/pluginpb"
)

// repeatNode emits `images` images of 2 parts each, as a sender does:
// "same" sends one buffer every time (a repeated image, encoded once);
// "reuse" rewrites one buffer with new bytes for each image (a node that
// recycles its buffer); "lie" sends one buffer under a new sha256 each time;
// "cycle6" and "cycle10" send 6 or 10 buffers in turn, the first within the
// window of parts the bridge remembers, the second beyond it.
type repeatNode struct{}

func (repeatNode) Spec() Spec {
	return Spec{ClassType: "test.Repeat", OutputNode: true, Inputs: []Input{
		{Name: "mode", Type: TypeString}, {Name: "images", Type: TypeInt}}}
}

func (repeatNode) Run(ctx context.Context, c *Call) (Result, error) {
	mode, err := c.String("mode", "same")
	if err != nil {
		return Result{}, err
	}
	n, err := c.Int("images", 4)
	if err != nil {
		return Result{}, err
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
				return Result{}, err
			}
		}
	}
	return Result{}, nil
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
	srv, err := newPackServer(Pack{Name: "repeat", Nodes: []Node{repeatNode{}}})
	if err != nil {
		t.Fatal(err)
	}
	conn, gs := plugin.TestGRPCConn(t, func(s *grpc.Server) { pluginpb.RegisterNodePackServer(s, srv) })
	t.Cleanup(func() { _ = conn.Close(); gs.Stop() })
	pc := newPackClient(context.Background(), conn)
	const images = 20 // more than the window's parts: early parts are sent again
	for _, mode := range []string{"same", "reuse", "lie", "cycle6", "cycle10"} {
		t.Run(mode, func(t *testing.T) {
			var parts []*protocol.ImagePart
			_, err := pc.Run(t.Context(), RunRequest{ClassType: "test.Repeat", NodeID: "3", PromptID: "p",
				Inputs: map[string]any{"mode": mode, "images": images}},
				RunHandlers{Part: func(p *protocol.ImagePart) error { parts = append(parts, p); return nil }})
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

// TestRunRefusesBadPartReference: a part that names bytes the run does not
// hold (no such part, another sha256 or offset, or data beside the
// reference) fails the run with ErrProtocol; a right one gets the bytes.
func TestRunRefusesBadPartReference(t *testing.T) {
	sha := fmt.Sprintf("%064x", 1)
	part := func(id string, data []byte, ref int64, sha string, offset int64) *pluginpb.RunEvent {
		return &pluginpb.RunEvent{Event: &pluginpb.RunEvent_Part{Part: &pluginpb.ImagePart{
			Event: "e", ImageId: id, Batch: 1, Parts: 1, Offset: offset, Size: 4, Mime: "image/png",
			Sha256: sha, Data: data, DataOfPart: ref}}}
	}
	result := &pluginpb.RunEvent{Event: &pluginpb.RunEvent_Result{Result: &pluginpb.RunResult{}}}
	for _, tc := range []struct {
		name   string
		events []*pluginpb.RunEvent
		reason string
	}{
		{"no earlier part", []*pluginpb.RunEvent{part("a", nil, 1, sha, 0), result}, "names the bytes of part event 1"},
		{"itself", []*pluginpb.RunEvent{part("a", []byte("abcd"), 0, sha, 0), part("b", nil, 2, sha, 0), result}, "part event 2"},
		{"another sha256", []*pluginpb.RunEvent{part("a", []byte("abcd"), 0, sha, 0), part("b", nil, 1, fmt.Sprintf("%064x", 2), 0), result}, "same sha256"},
		{"another offset", []*pluginpb.RunEvent{part("a", []byte("abcd"), 0, sha, 0), part("b", nil, 1, sha, 4), result}, "same sha256 and offset"},
		{"data beside it", []*pluginpb.RunEvent{part("a", []byte("abcd"), 0, sha, 0), part("b", []byte("wxyz"), 1, sha, 0), result}, "part event 1"},
		{"right", []*pluginpb.RunEvent{part("a", []byte("abcd"), 0, sha, 0), part("b", nil, 1, sha, 0), result}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newLyingClient(t, &lyingPack{events: tc.events})
			var got [][]byte
			_, err := c.Run(t.Context(), RunRequest{ClassType: "x"}, RunHandlers{Part: func(p *protocol.ImagePart) error {
				got = append(got, p.Data)
				return nil
			}})
			if tc.reason == "" {
				if err != nil || len(got) != 2 || string(got[1]) != "abcd" {
					t.Fatalf("err %v, parts %q: want both parts with the bytes abcd", err, got)
				}
				return
			}
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("err = %v, want ErrProtocol mentioning %q", err, tc.reason)
			}
		})
	}
}
