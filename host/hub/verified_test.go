package hub

import (
	"errors"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/protocol"
)

// TestRepeatedImageHashedOnce checks the hub's memory of the last verified
// image: parts that are the same memory with the same sha256 (a repeated
// image whose bytes crossed the plugin bridge once) commit without a second
// hash, while the same memory under another sha256, or equal-looking parts
// in other memory with a flipped byte, are still hashed and refused.
func TestRepeatedImageHashedOnce(t *testing.T) {
	h, _ := startHub(t, Options{})
	img := mediumPNG(t)
	a := split(img, len(img)/3+1, protocol.WireComfy, "a")
	publishAll(t, h, "", a)
	if !h.verified.same(a, a[0].SHA256) {
		t.Fatal("the verified image is not remembered")
	}
	// The same memory again, under its own image id: committed.
	b := split(img, len(img)/3+1, protocol.WireComfy, "b")
	if !h.verified.same(b, b[0].SHA256) {
		t.Fatal("parts over the same memory do not match the verified image")
	}
	publishAll(t, h, "", b)

	// The same memory, claiming another sum: hashed, refused.
	c := split(img, len(img)/3+1, protocol.WireComfy, "c")
	for _, p := range c {
		p.SHA256 = strings.Repeat("0", 64)
	}
	if h.verified.same(c, c[0].SHA256) {
		t.Fatal("another sha256 matches the verified image")
	}
	err := publishParts(h, c)
	if !errors.Is(err, protocol.ErrPart) {
		t.Fatalf("same memory, wrong sha256: got %v, want a part error", err)
	}

	// Other memory with the verified sum and a flipped byte: hashed, refused.
	bad := append([]byte(nil), img...)
	bad[len(bad)/2] ^= 1
	d := split(bad, len(img)/3+1, protocol.WireComfy, "d")
	for _, p := range d {
		p.SHA256 = a[0].SHA256
	}
	if h.verified.same(d, d[0].SHA256) {
		t.Fatal("a copy in other memory matches the verified image")
	}
	if err := publishParts(h, d); !errors.Is(err, protocol.ErrPart) {
		t.Fatalf("flipped byte under the verified sha256: got %v, want a part error", err)
	}
	if s := h.Stats(); s.Committed != 2 {
		t.Errorf("committed %d images, want 2", s.Committed)
	}
}

// publishParts publishes parts in order and returns the first error.
func publishParts(h *Hub, parts []*protocol.ImagePart) error {
	for _, p := range parts {
		if err := h.Publish("", p); err != nil {
			return err
		}
	}
	return nil
}
