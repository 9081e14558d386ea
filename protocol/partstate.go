package protocol

import "strconv"

// What a receiver of image parts keeps per image, shared by the host's hub
// (which holds parts until an image is complete) and the Reassembler (which
// clients use): the checks a part must pass against its image, and a bounded
// memory of finished images so that late parts of them are refused.

// CheckPart checks a part on its own before it starts or joins an image:
// the header's own consistency (Check), then that the part carries bytes
// and that the image can hold its parts. The reason of the *FrameError says
// what is wrong.
func (h *PartHeader) CheckPart(n int) error {
	if err := h.Check(n); err != nil {
		return err
	}
	bad := func(reason string) error { return &FrameError{Kind: "PART", Reason: reason} }
	switch {
	case n == 0 && h.Size > 0:
		return bad("empty part of a " + strconv.FormatInt(h.Size, 10) + "-byte image")
	case int64(h.Parts) > max(h.Size, 1):
		return bad("parts " + strconv.Itoa(h.Parts) + " exceed what a " + strconv.FormatInt(h.Size, 10) +
			"-byte image can fill (every part holds at least one byte)")
	}
	return nil
}

// Mismatch names the first field that describes the whole image (size,
// parts, sha256, mime, event, prompt_id, node, index, batch) in which h
// disagrees with first, the header of an earlier part of the same image, as
// `size "3001" differs from "3000"`; "" when they agree.
func (h *PartHeader) Mismatch(first *PartHeader) string {
	field := func(name, got, want string) string {
		return name + " " + strconv.Quote(got) + " differs from " + strconv.Quote(want)
	}
	num := func(v int64) string { return strconv.FormatInt(v, 10) }
	switch {
	case h.Size != first.Size:
		return field("size", num(h.Size), num(first.Size))
	case h.Parts != first.Parts:
		return field("parts", num(int64(h.Parts)), num(int64(first.Parts)))
	case h.SHA256 != first.SHA256:
		return field("sha256", h.SHA256, first.SHA256)
	case h.MIME != first.MIME:
		return field("mime", h.MIME, first.MIME)
	case h.Event != first.Event:
		return field("event", h.Event, first.Event)
	case h.PromptID != first.PromptID:
		return field("prompt_id", h.PromptID, first.PromptID)
	case h.Node != first.Node:
		return field("node", h.Node, first.Node)
	case h.Index != first.Index:
		return field("index", num(int64(h.Index)), num(int64(first.Index)))
	case h.Batch != first.Batch:
		return field("batch", num(int64(h.Batch)), num(int64(first.Batch)))
	}
	return ""
}

// ImageKey names an image: image ids are unique within a prompt.
type ImageKey struct{ PromptID, ImageID string }

// MaxFinishedImages is how many finished images a FinishedImages remembers.
const MaxFinishedImages = 4096

// FinishedImages remembers the most recent images that completed or were
// dropped (at most MaxFinishedImages, the oldest forgotten first), so that a
// late part of one is refused instead of starting an image that would never
// complete. The zero value is ready; it is not safe for concurrent use
// (its owner's lock guards it).
type FinishedImages struct {
	m    map[ImageKey]bool // true: dropped
	ring [MaxFinishedImages]ImageKey
	next int
	n    int
}

// Mark remembers k as dropped or completed.
func (f *FinishedImages) Mark(k ImageKey, dropped bool) {
	if f.m == nil {
		f.m = make(map[ImageKey]bool)
	}
	if _, ok := f.m[k]; ok {
		f.m[k] = dropped
		return
	}
	if f.n == MaxFinishedImages {
		delete(f.m, f.ring[f.next])
	} else {
		f.n++
	}
	f.ring[f.next] = k
	f.next = (f.next + 1) % MaxFinishedImages
	f.m[k] = dropped
}

// Lookup says whether k is remembered, and whether it was dropped.
func (f *FinishedImages) Lookup(k ImageKey) (dropped, ok bool) {
	dropped, ok = f.m[k]
	return dropped, ok
}

// ForgetPrompt forgets the images of promptID, so that a retry of the
// prompt can send them again.
func (f *FinishedImages) ForgetPrompt(promptID string) {
	for k := range f.m {
		if k.PromptID == promptID {
			delete(f.m, k)
		}
	}
}

// Len is how many images are remembered.
func (f *FinishedImages) Len() int { return len(f.m) }
