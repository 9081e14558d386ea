package host_test

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"math/rand/v2"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/host/internal/hosttest"
	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/sendimage"
)

// startHost runs a host with the built-in pack as a real subprocess and serves
// its handler on 127.0.0.1.
func startHost(t *testing.T, opts host.Options) (*host.Host, *httptest.Server) {
	t.Helper()
	if len(opts.Packs) == 0 {
		opts.Packs = []host.PackSource{host.SelfPack("builtin")}
	}
	if opts.InputDir == "" {
		opts.InputDir = t.TempDir()
	}
	if opts.OutputDir == "" { // never ./output and ./temp in the source tree
		opts.OutputDir, opts.TempDir = t.TempDir(), t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := host.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(func() { srv.Close(); h.Close() })
	return h, srv
}

// noiseBatch returns a float32 IMAGE [n,size,size,3] of uniform noise, which
// PNG cannot compress: each 2048² image encodes to about 12 MB.
func noiseBatch(n, size int, seed uint64) *protocol.Tensor {
	r := rand.New(rand.NewPCG(seed, seed))
	t := protocol.NewFloat32(n, size, size, 3)
	v := t.Float32s()
	for i := range v {
		v[i] = r.Float32()
	}
	return t
}

// expectedPixels converts image i of t as ComfyUI does, written out here
// independently of sendimage: uint8(clip(255*x, 0, 255)), truncating.
func expectedPixels(t *protocol.Tensor, i int) []byte {
	h, w, c := t.Shape[1], t.Shape[2], t.Shape[3]
	v := t.Float32s()[i*h*w*c : (i+1)*h*w*c]
	out := make([]byte, len(v))
	for j, x := range v {
		y := 255 * x
		switch {
		case y < 0:
			y = 0
		case y > 255:
			y = 255
		}
		out[j] = byte(y)
	}
	return out
}

func checkPNGPixels(t *testing.T, data []byte, want []byte, w, h int) {
	t.Helper()
	m, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decode PNG: %v", err)
	}
	if m.Bounds() != image.Rect(0, 0, w, h) {
		t.Fatalf("bounds %v, want %dx%d", m.Bounds(), w, h)
	}
	var got []byte
	switch m := m.(type) {
	case *image.NRGBA:
		got = make([]byte, 0, w*h*3)
		for i := 0; i < len(m.Pix); i += 4 {
			got = append(got, m.Pix[i], m.Pix[i+1], m.Pix[i+2])
		}
	case *image.RGBA:
		got = make([]byte, 0, w*h*3)
		for i := 0; i < len(m.Pix); i += 4 {
			got = append(got, m.Pix[i], m.Pix[i+1], m.Pix[i+2])
		}
	default:
		t.Fatalf("decoded %T, want RGB", m)
	}
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("pixel byte %d: got %d, want %d", i, got[i], want[i])
			}
		}
	}
}

// TestBatchToThreeKindsOfClient sends a batch of four 2048² noise images, each
// PNG over 4 MiB, through the built-in pack in a real subprocess to three
// clients at once: one that negotiated PART, one that did not (base64 parts),
// and one that reads whole type 1 frames. A fourth client receives nothing.
func TestBatchToThreeKindsOfClient(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 3×192 MiB of tensors")
	}
	const n, size = 4, 2048
	// The plugin is the nodecast binary built without -race: the test still
	// crosses a real process boundary, and the race detector's 30× slowdown
	// stays on the host's side, where this test's concurrency is.
	h, srv := startHost(t, host.Options{Packs: []host.PackSource{hosttest.BuiltinPack(t)}})

	partsC, err := testclient.Dial(srv.URL, "parts", testclient.Parts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer partsC.Close()
	b64C, err := testclient.Dial(srv.URL, "b64", testclient.Plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b64C.Close()
	wholeC, err := testclient.Dial(srv.URL, "whole", testclient.Plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wholeC.Close()
	otherC, err := testclient.Dial(srv.URL, "other", testclient.Parts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer otherC.Close()

	batch := noiseBatch(n, size, 1)
	// What the encoder produces for each image: the bytes every client must get.
	enc, err := sendimage.NewEncoder("png", sendimage.EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := make([][]byte, n)
	for i := range want {
		px, err := sendimage.ToPixels(batch, i, sendimage.ConvertOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := enc.Encode(&buf, px); err != nil {
			t.Fatal(err)
		}
		if buf.Len() < protocol.DefaultMessageLimit {
			t.Fatalf("image %d encodes to %d bytes; the test needs images over 4 MiB", i, buf.Len())
		}
		want[i] = buf.Bytes()
		// Every client must receive exactly these bytes, so decoding them once
		// checks the pixels every client gets.
		checkPNGPixels(t, want[i], expectedPixels(batch, i), size, size)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	runs := []struct{ client, wire string }{{"parts", "parts"}, {"b64", "parts"}, {"whole", "comfy"}}
	var wg sync.WaitGroup
	errs := make([]error, len(runs))
	for i, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = h.RunNode(ctx, host.NodeCall{
				Class: "SendImageOnWebSocket", ClientID: r.client,
				Inputs: map[string]any{"images": batch, "event": "batch.test", "encoder": "png", "wire": r.wire},
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("run for %s: %v", runs[i].client, err)
		}
	}

	for _, c := range []*testclient.Client{partsC, b64C} {
		if err := c.WaitImages(n, time.Minute); err != nil {
			t.Fatalf("%s: %v", c.ID, err)
		}
		imgs := c.Images()
		if len(imgs) != n {
			t.Fatalf("%s: %d images, want %d", c.ID, len(imgs), n)
		}
		seen := map[int]bool{}
		for _, img := range imgs {
			seen[img.Index] = true
			if img.Event != "batch.test" || img.MIME != "image/png" || img.Batch != n {
				t.Errorf("%s: image %d header event=%q mime=%q batch=%d", c.ID, img.Index, img.Event, img.MIME, img.Batch)
			}
			if !bytes.Equal(img.Data, want[img.Index]) {
				t.Fatalf("%s: image %d is not byte-identical to the encoder's output (%d vs %d bytes)", c.ID, img.Index, len(img.Data), len(want[img.Index]))
			}
		}
		if len(seen) != n {
			t.Errorf("%s: image indexes %v, want 0..%d", c.ID, seen, n-1)
		}
		if m := c.MaxMessage(); m >= protocol.DefaultMessageLimit {
			t.Errorf("%s: received a message of %d bytes, limit %d", c.ID, m, protocol.DefaultMessageLimit)
		}
	}
	if err := wholeC.WaitImages(n, time.Minute); err != nil {
		t.Fatal(err)
	}
	for i, data := range wholeC.Whole() {
		if !bytes.Equal(data, want[i]) {
			t.Fatalf("whole: image %d is not byte-identical to the encoder's output", i)
		}
	}
	if got := len(partsC.Whole()) + len(b64C.Whole()); got != 0 {
		t.Errorf("parts-aware and base64 clients got %d whole type 1 frames", got)
	}

	// The fourth client: a marker sent after everything else arrives after
	// anything that could have been routed to it, so nothing more can come.
	h.Hub().SendJSON("other", "test.marker", map[string]any{})
	if _, err := otherC.WaitMessage("test.marker", time.Minute); err != nil {
		t.Fatal(err)
	}
	if imgs, whole := otherC.Images(), otherC.Whole(); len(imgs)+len(whole) != 0 {
		t.Fatalf("client 'other' received %d images", len(imgs)+len(whole))
	}
	for _, m := range otherC.Messages() {
		if m.Type == protocol.TypeProgress || m.Type == "batch.test" {
			t.Fatalf("client 'other' received %s: %s", m.Type, m.Data)
		}
	}
	for _, c := range []*testclient.Client{partsC, b64C, wholeC, otherC} {
		if err := c.Err(); err != nil {
			t.Errorf("%s: %v", c.ID, err)
		}
	}
}
