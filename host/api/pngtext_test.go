package api

import (
	"bytes"
	"errors"
	"testing"

	"github.com/nodecast/nodecast/sendimage"
)

// pngWithText encodes a 2x2 PNG with text chunks, as SaveImage writes them.
func pngWithText(t testing.TB, text []sendimage.TextChunk) []byte {
	t.Helper()
	enc, err := sendimage.NewEncoder("png", sendimage.EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := enc.(sendimage.TextEncoder).EncodeText(&b, sendimage.NewPixels(2, 2, 3), text); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestReadPNGText reads back what sendimage writes (tEXt and iTXt), in
// order, as Pillow's PngImageFile.text holds them, and refuses text over
// the limit with a *textTooLargeError.
func TestReadPNGText(t *testing.T) {
	want := []sendimage.TextChunk{{Keyword: "prompt", Text: `{"a":1}`}, {Keyword: "workflow", Text: "ü ✓"}}
	got, err := readPNGText(bytes.NewReader(pngWithText(t, want)), 1<<20)
	if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %v %v, want %v", got, err, want)
	}
	_, err = readPNGText(bytes.NewReader(pngWithText(t, want)), 8)
	var te *textTooLargeError
	if !errors.As(err, &te) || te.Limit != 8 {
		t.Errorf("over the limit: %v", err)
	}
	if _, err := readPNGText(bytes.NewReader([]byte("GIF89a")), 1<<20); err == nil {
		t.Error("not a PNG: no error")
	}
}

// FuzzReadPNGText: any bytes; readPNGText never panics and never returns
// more text than its limit.
func FuzzReadPNGText(f *testing.F) {
	f.Add(pngWithText(f, []sendimage.TextChunk{{Keyword: "k", Text: "v"}}))
	f.Add(append([]byte{}, pngSignature...))
	f.Fuzz(func(t *testing.T, b []byte) {
		const limit = 4096
		text, err := readPNGText(bytes.NewReader(b), limit)
		n := 0
		for _, c := range text {
			n += len(c.Text)
		}
		if err == nil && n > 4*limit { // Latin-1 bytes may grow to 2-byte runes
			t.Fatalf("%d bytes of text under a limit of %d", n, limit)
		}
	})
}
