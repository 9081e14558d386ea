package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// ErrSplit says that a Splitter was configured with values it cannot use
// (a negative limit, a part size below 3). Sizes that do not fit the limit are
// *LimitError instead.
var ErrSplit = errors.New("protocol: bad splitter setting")

// MinPartSize is the smallest part a Splitter makes (but for the last part of
// an image): three bytes, one base64 quantum.
const MinPartSize = 3

// Splitter plans the parts of an encoded image so that every WebSocket message
// that carries a part, as a PART frame or as a base64 JSON part, is strictly
// smaller than Limit, whatever the strings of the header.
//
// Every part but the last holds the same number of bytes, a multiple of 3, so
// that the base64 of the parts, joined, is the base64 of the whole image (the
// ntlb64part client joins part strings and decodes once). The zero value splits
// for DefaultMessageLimit with the largest parts that fit.
type Splitter struct {
	// Limit is the size that every message must stay strictly below, header
	// included; 0 means DefaultMessageLimit.
	Limit int
	// PartSize is the most raw bytes in one part; 0 means the largest that
	// fits Limit. A value that is not a multiple of 3 is rounded down to one;
	// a value that does not fit Limit is refused with a *LimitError whose
	// Limit is the largest part size that fits.
	PartSize int
}

// Plan is how an image of Size bytes is cut: parts 0..Parts-2 hold PartSize
// bytes each and the last part holds the rest. An empty image is one empty part.
type Plan struct {
	Size     int64 // bytes of the whole encoded image
	PartSize int   // bytes of every part but the last; a multiple of 3
	Parts    int   // number of parts, at least 1
}

// Part returns where part i starts in the image and how many bytes it holds,
// or (0, 0) for an i outside 0..Parts-1.
func (p Plan) Part(i int) (offset, length int64) {
	if i < 0 || i >= p.Parts {
		return 0, 0
	}
	offset = int64(i) * int64(p.PartSize)
	length = min(int64(p.PartSize), p.Size-offset)
	return offset, length
}

// Plan returns how to cut an image of size bytes described by h (whose Part,
// Parts, Offset and Size are ignored) and carried with nodelabel label in
// base64 JSON parts. An empty h.SHA256 is measured as the 64 hex digits that
// Split will put there.
//
// The header is measured as the real marshallers write it (JSON escaping of
// the strings included), with the longest numbers any part of this image can
// have, carrying a full PartSize bytes. So any part size up to the largest
// fits, a plan made for a size bound holds for every smaller image, and the
// largest part size is within a few bytes of what the exact last part needs.
func (s Splitter) Plan(h PartHeader, label string, size int64) (Plan, error) {
	limit := int64(s.Limit)
	switch {
	case s.Limit == 0:
		limit = DefaultMessageLimit
	case s.Limit < 0:
		return Plan{}, fmt.Errorf("%w: message limit %d is negative", ErrSplit, s.Limit)
	}
	limit = min(limit, 1<<62) // keeps header + payload sums far from overflow
	if size < 0 {
		return Plan{}, fmt.Errorf("%w: image size %d is negative", ErrSplit, size)
	}
	if s.PartSize < 0 || (s.PartSize > 0 && s.PartSize < MinPartSize) {
		return Plan{}, fmt.Errorf("%w: part size %d is below the minimum %d", ErrSplit, s.PartSize, MinPartSize)
	}
	m := measurePart(h, label, size)
	largest, err := m.largestPartSize(limit)
	if err != nil {
		return Plan{}, err
	}
	ps := largest
	if s.PartSize > 0 {
		ps = int64(s.PartSize) / 3 * 3
		// The bound is monotone, so ps <= largest fits; measuring ps itself
		// keeps that an invariant the tests check rather than an assumption.
		if ps > largest || m.longestMessage(ps) >= limit {
			return Plan{}, &LimitError{What: "part size", Value: int64(s.PartSize), Limit: largest}
		}
	}
	return Plan{Size: size, PartSize: int(ps), Parts: int(partCount(size, ps))}, nil
}

// Split cuts image into parts for h, as Plan does, and fills each part's Part,
// Parts, Offset, Size and SHA256 (computed here when h.SHA256 is empty, and
// trusted when set). Each part's Data is a sub-slice of image, capped at its
// own length, so appending to one part never overwrites the next.
func (s Splitter) Split(h PartHeader, label string, image []byte, wire Wire) ([]ImagePart, error) {
	if h.SHA256 == "" {
		sum := sha256.Sum256(image)
		h.SHA256 = hex.EncodeToString(sum[:])
	}
	plan, err := s.Plan(h, label, int64(len(image)))
	if err != nil {
		return nil, err
	}
	h.Parts, h.Size = plan.Parts, plan.Size
	h.Part, h.Offset = 0, 0
	// Refuse what a receiver would refuse: empty image_id, index outside the
	// batch, a sha256 that is not 64 lowercase hex digits.
	_, n := plan.Part(0)
	if err := h.Check(int(n)); err != nil {
		return nil, err
	}
	parts := make([]ImagePart, plan.Parts)
	for i := range parts {
		off, n := plan.Part(i)
		ph := h
		ph.Part, ph.Offset = i, off
		parts[i] = ImagePart{PartHeader: ph, Label: label, Wire: wire, Data: image[off : off+n : off+n]}
	}
	return parts, nil
}

// partMeasure holds the length of a part's two message shapes when every
// varying number (part, parts, offset) is 0 and the payload is empty; the real
// length adds the extra digits of those numbers and the payload.
type partMeasure struct {
	size      int64
	frameBase int64 // PART frame: 8-byte prefix + JSON header
	b64Base   int64 // base64 JSON part message with part_b64 ""
}

func measurePart(h PartHeader, label string, size int64) partMeasure {
	if h.SHA256 == "" {
		h.SHA256 = "0000000000000000000000000000000000000000000000000000000000000000"
	}
	h.Part, h.Parts, h.Offset, h.Size = 0, 0, 0, size
	m := partMeasure{size: size}
	// Neither marshaller can fail: the header holds only strings and integers.
	j, _ := AppendPartFrame(nil, &h, nil)
	m.frameBase = int64(len(j))
	j, _ = MarshalB64Part(&ImagePart{PartHeader: h, Label: label})
	m.b64Base = int64(len(j))
	return m
}

// longestMessage bounds the length of every message of an image cut into
// parts of ps bytes: the header of the last part (the longest part number)
// with the largest offset any part can have (size-1), carrying a full ps
// bytes. Measured so, the bound never shrinks as ps or the size grows: every
// part size under the largest that fits also fits, and a part size that fits
// an image fits every smaller one.
func (m partMeasure) longestMessage(ps int64) int64 {
	parts := partCount(m.size, ps)
	extra := int64(digits(parts-1)-1) + int64(digits(parts)-1) + int64(digits(max(m.size-1, 0))-1)
	frame := m.frameBase + extra + ps
	b64 := m.b64Base + extra + base64Len(ps)
	return max(frame, b64)
}

// largestPartSize returns the largest multiple of 3 whose longest message is
// under limit, or a *LimitError when not even 3 bytes fit.
func (m partMeasure) largestPartSize(limit int64) (int64, error) {
	// Start from the bound that one-digit numbers give (no larger part can
	// fit) and step down. The numbers are at most 19 digits each, so the
	// longest message is within ~60 bytes of that bound and the scan is short.
	room := limit - 1
	ps := min(room-m.frameBase, (room-m.b64Base)/4*3) / 3 * 3
	for ; ps >= MinPartSize; ps -= 3 {
		if m.longestMessage(ps) <= room {
			return ps, nil
		}
	}
	// Limit is room: the largest message allowed, so that Value > Limit reads right.
	return 0, &LimitError{What: "smallest part message (header and 3 bytes)", Value: m.longestMessage(MinPartSize), Limit: room}
}

// partCount is the number of parts of ps bytes that hold size bytes, at least 1.
func partCount(size, ps int64) int64 {
	if size <= 0 {
		return 1
	}
	return (size-1)/ps + 1
}

func base64Len(n int64) int64 { return (n + 2) / 3 * 4 }

// digits returns the number of decimal digits of a non-negative n.
func digits(n int64) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}
