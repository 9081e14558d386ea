package protocol

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// sizesAround returns 0..3 and every size within 1 of the first multiples of
// ps, the sizes where the part count changes.
func sizesAround(ps, multiples int) []int {
	sizes := []int{0, 1, 2, 3, 4}
	for k := 1; k <= multiples; k++ {
		sizes = append(sizes, k*ps-1, k*ps, k*ps+1)
	}
	return sizes
}

func TestSplitBoundarySizes(t *testing.T) {
	plain := testHeader("img-1")
	hostile, hostileLabel := hostileStrings()
	for _, limit := range []int{4096, 65536} {
		for _, tc := range []struct {
			name  string
			h     PartHeader
			label string
		}{
			{"plain", plain, "9"},
			{"hostile strings", hostile, hostileLabel},
		} {
			s := Splitter{Limit: limit}
			plan, err := s.Plan(tc.h, tc.label, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for _, size := range sizesAround(plan.PartSize, 4) {
				t.Run(fmt.Sprintf("limit=%d/%s/size=%d", limit, tc.name, size), func(t *testing.T) {
					image := testImage(size, uint64(size))
					parts, err := s.Split(tc.h, tc.label, image, WireParts)
					if err != nil {
						t.Fatal(err)
					}
					checkSplit(t, limit, parts, image)
				})
			}
		}
	}
}

// TestSplitEverySize sweeps every size up to three parts under a small limit.
func TestSplitEverySize(t *testing.T) {
	const limit = 512
	s := Splitter{Limit: limit}
	h := testHeader("sweep")
	plan, err := s.Plan(h, "9", 1000)
	if err != nil {
		t.Fatal(err)
	}
	image := testImage(3*plan.PartSize+1, 7)
	for size := 0; size <= len(image); size++ {
		parts, err := s.Split(h, "9", image[:size], WireB64Parts)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		checkSplit(t, limit, parts, image[:size])
	}
}

func TestSplitDefaultLimit(t *testing.T) {
	h := testHeader("big")
	plan, err := Splitter{}.Plan(h, "9", 20<<20)
	if err != nil {
		t.Fatal(err)
	}
	ps := plan.PartSize
	// Parts this size are what the hub sends; they must leave little on the table.
	if ps < 3*DefaultMessageLimit/4-1024 || ps > 3*DefaultMessageLimit/4 {
		t.Fatalf("largest part under the default limit is %d bytes", ps)
	}
	big := testImage(20<<20, 20)
	for _, size := range []int{ps - 1, ps, ps + 1, 2*ps + 1, 20 << 20} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			parts, err := Splitter{}.Split(h, "9", big[:size], WireParts)
			if err != nil {
				t.Fatal(err)
			}
			checkSplitShapes(t, DefaultMessageLimit, parts, big[:size], size <= ps+1)
		})
	}
}

// TestPlanIsTight checks that the largest part size is exact: a part 3 bytes
// larger, in the position with the longest header, makes a message that
// reaches the limit, and asking for it is refused naming the largest.
func TestPlanIsTight(t *testing.T) {
	hostile, hostileLabel := hostileStrings()
	for _, limit := range []int{600, 4096, 65536, DefaultMessageLimit} {
		sizes := []int64{0, 1, 10_000, 1 << 20, 1<<20 + 1, 200 << 20}
		if limit == DefaultMessageLimit {
			sizes = []int64{1, 200 << 20} // each check marshals a 4 MiB message: keep -race fast
		}
		for _, size := range sizes {
			for name, h := range map[string]PartHeader{"plain": testHeader("t"), "hostile": hostile} {
				label := map[string]string{"plain": "9", "hostile": hostileLabel}[name]
				t.Run(fmt.Sprintf("%d/%d/%s", limit, size, name), func(t *testing.T) {
					s := Splitter{Limit: limit}
					plan, err := s.Plan(h, label, size)
					if err != nil {
						if name == "hostile" && limit == 600 && errors.Is(err, ErrLimit) {
							return // the hostile header alone is over 600 bytes
						}
						t.Fatal(err)
					}
					ps := plan.PartSize
					if ps%3 != 0 || ps < MinPartSize {
						t.Fatalf("part size %d", ps)
					}
					if got := longestBuilt(t, h, label, size, ps); got >= limit {
						t.Fatalf("part size %d makes a %d-byte message, limit %d", ps, got, limit)
					}
					if got := longestBuilt(t, h, label, size, ps+3); got < limit {
						t.Fatalf("part size %d+3 still fits (%d bytes < %d): not the largest", ps, got, limit)
					}
					for _, asked := range []int{ps, ps + 1, ps + 2} {
						p, err := Splitter{Limit: limit, PartSize: asked}.Plan(h, label, size)
						if err != nil || p.PartSize != ps {
							t.Fatalf("PartSize %d: plan %+v, %v; want part size %d", asked, p, err, ps)
						}
					}
					_, err = Splitter{Limit: limit, PartSize: ps + 3}.Plan(h, label, size)
					var le *LimitError
					if !errors.As(err, &le) || le.What != "part size" || le.Value != int64(ps+3) || le.Limit != int64(ps) {
						t.Fatalf("PartSize %d: %v; want *LimitError part size %d > %d", ps+3, err, ps+3, ps)
					}
					if !strings.Contains(err.Error(), strconv.Itoa(ps+3)) || !strings.Contains(err.Error(), strconv.Itoa(ps)) {
						t.Fatalf("error %q does not name the value and the limit", err)
					}
				})
			}
		}
	}
}

// longestBuilt builds, with the real marshallers, the messages of the longest
// header a size-byte image cut into ps-byte parts can have (the last part, at
// the image's last byte) carrying a full ps bytes, and returns the longer.
func longestBuilt(t *testing.T, h PartHeader, label string, size int64, ps int) int {
	t.Helper()
	parts := partCount(size, int64(ps))
	if h.SHA256 == "" {
		h.SHA256 = sha256Hex(nil)
	}
	h.Part, h.Parts, h.Offset, h.Size = int(parts-1), int(parts), max(size-1, 0), size
	frame, b64 := messages(t, &ImagePart{PartHeader: h, Label: label, Data: make([]byte, ps)})
	return max(len(frame), len(b64))
}

// TestPlanMonotone checks that every part size up to the largest fits, and
// that a plan for a size bound holds for smaller images (what a sender node
// checks once before it encodes anything). Sizes just around the largest part
// size are where a single part becomes two and the offset gains its digits.
func TestPlanMonotone(t *testing.T) {
	h := testHeader("mono")
	for _, limit := range []int{600, 4096, DefaultMessageLimit} {
		largest, err := Splitter{Limit: limit}.Plan(h, "9", 0)
		if err != nil {
			t.Fatal(err)
		}
		l := int64(largest.PartSize)
		sizes := []int64{0, 1, 2 * l, 1_000_000}
		for size := l - 12; size <= l+12; size++ {
			sizes = append(sizes, size)
		}
		for _, size := range sizes {
			biggest, err := Splitter{Limit: limit}.Plan(h, "9", size)
			if err != nil {
				t.Fatal(err)
			}
			// The small sizes, and every size near the largest (where a
			// single part's offset 0 turns into a 7-digit offset).
			sizesToTry := []int{MinPartSize, 6, biggest.PartSize / 2 / 3 * 3}
			for ps := max(9, biggest.PartSize-90); ps <= biggest.PartSize; ps += 3 {
				sizesToTry = append(sizesToTry, ps)
			}
			for _, ps := range sizesToTry {
				for _, smaller := range []int64{size, size / 2, size - 1, 0} {
					if smaller < 0 {
						continue
					}
					if _, err := (Splitter{Limit: limit, PartSize: ps}).Plan(h, "9", smaller); err != nil {
						t.Fatalf("limit %d, size %d: part size %d fits, but not for %d bytes: %v", limit, size, ps, smaller, err)
					}
				}
			}
		}
	}
}

func TestPlanTinyLimit(t *testing.T) {
	h := testHeader("tiny")
	smallest := 0
	for limit := 1; limit < 1000; limit++ {
		_, err := Splitter{Limit: limit}.Plan(h, "9", 10)
		if err == nil {
			smallest = limit
			break
		}
		var le *LimitError
		if !errors.As(err, &le) || !errors.Is(err, ErrLimit) {
			t.Fatalf("limit %d: %v; want a *LimitError", limit, err)
		}
		if le.Limit != int64(limit-1) || le.Value <= le.Limit {
			t.Fatalf("limit %d: %+v; want Limit %d (largest message allowed) and a larger Value", limit, le, limit-1)
		}
		if !strings.Contains(err.Error(), strconv.FormatInt(le.Value, 10)) || !strings.Contains(err.Error(), strconv.Itoa(limit-1)) {
			t.Fatalf("error %q does not name the value and the limit", err)
		}
	}
	if smallest == 0 {
		t.Fatal("no limit under 1000 fits a part")
	}
	s := Splitter{Limit: smallest}
	plan, err := s.Plan(h, "9", 10)
	if err != nil || plan.PartSize != MinPartSize || plan.Parts != 4 {
		t.Fatalf("at the smallest limit %d: %+v, %v; want 4 parts of 3 bytes", smallest, plan, err)
	}
	image := testImage(10, 1)
	parts, err := s.Split(h, "9", image, WireParts)
	if err != nil {
		t.Fatal(err)
	}
	checkSplit(t, smallest, parts, image)
}

func TestPlanPartSize(t *testing.T) {
	h := testHeader("custom")
	for _, tc := range []struct {
		partSize  int
		size      int64
		wantSize  int
		wantParts int
	}{
		{1000, 10_000, 999, 11},
		{999, 999, 999, 1},
		{999, 1000, 999, 2},
		{3, 0, 3, 1},
		{3, 10, 3, 4},
		{5, 10, 3, 4},
		{6, 12, 6, 2},
		{1 << 20, 3 << 20, 1<<20 - 1, 4},
	} {
		t.Run(fmt.Sprintf("%d/%d", tc.partSize, tc.size), func(t *testing.T) {
			plan, err := Splitter{PartSize: tc.partSize}.Plan(h, "9", tc.size)
			if err != nil {
				t.Fatal(err)
			}
			if plan.PartSize != tc.wantSize || plan.Parts != tc.wantParts || plan.Size != tc.size {
				t.Fatalf("plan %+v, want part size %d, %d parts", plan, tc.wantSize, tc.wantParts)
			}
			var sum int64
			for i := range plan.Parts {
				off, n := plan.Part(i)
				if off != sum || n < 0 || (n == 0 && tc.size > 0) {
					t.Fatalf("part %d: offset %d length %d", i, off, n)
				}
				sum += n
			}
			if sum != tc.size {
				t.Fatalf("parts hold %d bytes, want %d", sum, tc.size)
			}
			if off, n := plan.Part(plan.Parts); off != 0 || n != 0 {
				t.Fatalf("Part(Parts) = %d, %d", off, n)
			}
			if off, n := plan.Part(-1); off != 0 || n != 0 {
				t.Fatalf("Part(-1) = %d, %d", off, n)
			}
		})
	}
}

func TestPlanRefusesBadSettings(t *testing.T) {
	h := testHeader("bad")
	for _, tc := range []struct {
		name string
		s    Splitter
		size int64
		want string
	}{
		{"negative limit", Splitter{Limit: -1}, 10, "message limit -1 is negative"},
		{"negative part size", Splitter{PartSize: -3}, 10, "part size -3 is below the minimum 3"},
		{"part size 1", Splitter{PartSize: 1}, 10, "part size 1 is below the minimum 3"},
		{"part size 2", Splitter{PartSize: 2}, 10, "part size 2 is below the minimum 3"},
		{"negative size", Splitter{}, -5, "image size -5 is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.s.Plan(h, "9", tc.size)
			if !errors.Is(err, ErrSplit) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want ErrSplit saying %q", err, tc.want)
			}
		})
	}
	// A limit past any real message still plans one part.
	if p, err := (Splitter{Limit: math.MaxInt}).Plan(h, "9", 1<<40); err != nil || p.Parts != 1 || p.PartSize < 1<<40 {
		t.Fatalf("huge limit: %+v, %v", p, err)
	}
	_, err := Splitter{PartSize: DefaultMessageLimit}.Plan(h, "9", 10)
	var le *LimitError
	if !errors.As(err, &le) || le.What != "part size" || le.Value != DefaultMessageLimit {
		t.Fatalf("part size of the whole limit: %v", err)
	}
}

func TestSplitEmptyImage(t *testing.T) {
	parts, err := Splitter{}.Split(testHeader("empty"), "9", nil, WireParts)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 1 || len(parts[0].Data) != 0 || parts[0].Size != 0 || parts[0].SHA256 != sha256Hex(nil) {
		t.Fatalf("empty image split into %+v", parts)
	}
	checkSplit(t, DefaultMessageLimit, parts, []byte{})
}

func TestSplitFields(t *testing.T) {
	image := testImage(10_000, 3)
	h := testHeader("fields")
	h.Index, h.Batch = 2, 4
	parts, err := Splitter{PartSize: 3000}.Split(h, "my label", image, WireB64Parts)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256Hex(image)
	for i, p := range parts {
		want := h
		want.Part, want.Parts, want.Offset, want.Size, want.SHA256 = i, 4, int64(i*3000), 10_000, sum
		if p.PartHeader != want || p.Label != "my label" || p.Wire != WireB64Parts {
			t.Fatalf("part %d: %+v", i, p)
		}
		// Data aliases the image, capped so that an append cannot spill into the next part.
		if unsafe.SliceData(p.Data) != &image[p.Offset] || cap(p.Data) != len(p.Data) {
			t.Fatalf("part %d does not alias image[%d:] with cap = len", i, p.Offset)
		}
	}

	// A sha256 the caller already has is kept, not recomputed.
	h.SHA256 = strings.Repeat("ab", 32)
	parts, err = Splitter{}.Split(h, "", image, WireParts)
	if err != nil || parts[0].SHA256 != h.SHA256 {
		t.Fatalf("given sha256 not kept: %v", err)
	}
}

func TestSplitRefusesBadHeader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(*PartHeader)
		reason string
	}{
		{"empty image id", func(h *PartHeader) { h.ImageID = "" }, "empty image_id"},
		{"index outside batch", func(h *PartHeader) { h.Index, h.Batch = 3, 3 }, "index 3 is outside the batch of 3"},
		{"uppercase sha256", func(h *PartHeader) { h.SHA256 = strings.Repeat("AB", 32) }, "sha256 is not 64 lowercase hex digits"},
		{"short sha256", func(h *PartHeader) { h.SHA256 = "abc" }, "sha256 is not 64 lowercase hex digits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testHeader("x")
			tc.edit(&h)
			_, err := Splitter{}.Split(h, "", []byte("abc"), WireParts)
			var fe *FrameError
			if !errors.As(err, &fe) || fe.Reason != tc.reason {
				t.Fatalf("got %v; want a *FrameError %q", err, tc.reason)
			}
		})
	}
}
