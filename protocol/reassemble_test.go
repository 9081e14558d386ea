package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func mustSplit(t testing.TB, s Splitter, h PartHeader, label string, image []byte) []ImagePart {
	t.Helper()
	parts, err := s.Split(h, label, image, WireParts)
	if err != nil {
		t.Fatal(err)
	}
	return parts
}

// frameOf returns the PART frame of p.
func frameOf(t testing.TB, p *ImagePart) []byte {
	t.Helper()
	b, err := AppendPartFrame(nil, &p.PartHeader, p.Data)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReassemblerInterleaved(t *testing.T) {
	type msg struct {
		image int
		frame []byte // PART frame, or nil for a base64 message in b64
		b64   []byte
	}
	var images [][]byte
	var msgs []msg
	s := Splitter{Limit: 2048}
	for i, size := range []int{0, 1, 2, 3, 2000, 7001, 20_000} {
		image := testImage(size, uint64(i))
		images = append(images, image)
		h := testHeader("img-" + strconv.Itoa(i))
		h.Index, h.Batch = i, 7
		for _, p := range mustSplit(t, s, h, "label "+strconv.Itoa(i), image) {
			frame, b64 := messages(t, &p)
			if i%2 == 0 {
				msgs = append(msgs, msg{image: i, frame: frame})
			} else {
				msgs = append(msgs, msg{image: i, b64: b64})
			}
		}
	}
	for seed := range uint64(5) {
		t.Run("shuffle "+strconv.FormatUint(seed, 10), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			order := append([]msg(nil), msgs...)
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			r := NewReassembler(ReassemblerOptions{})
			done := map[int]bool{}
			for _, m := range order {
				var img *Image
				var err error
				if m.frame != nil {
					img, err = r.AddFrame(m.frame)
				} else {
					img, err = addB64(r, m.b64)
				}
				if err != nil {
					t.Fatal(err)
				}
				if img == nil {
					continue
				}
				i := img.Index
				wantLabel := ""
				if i%2 == 1 {
					wantLabel = "label " + strconv.Itoa(i)
				}
				if done[i] || img.ImageID != "img-"+strconv.Itoa(i) || !bytes.Equal(img.Data, images[i]) ||
					img.Size != int64(len(images[i])) || img.SHA256 != sha256Hex(images[i]) || img.Label != wantLabel ||
					img.Event != "nodecast.image" || img.PromptID != "prompt-1" || img.Node != "9" || img.Batch != 7 || img.MIME != "image/png" {
					t.Fatalf("image %d reassembled wrong: %+v", i, *img)
				}
				done[i] = true
			}
			if len(done) != len(images) {
				t.Fatalf("%d of %d images completed", len(done), len(images))
			}
			if p := r.Pending(); len(p) != 0 || r.PendingBytes() != 0 {
				t.Fatalf("pending after all parts: %+v, %d bytes", p, r.PendingBytes())
			}
		})
	}
}

// TestReassemblerErrors feeds the parts of image A, edited to be wrong, mixed
// with the parts of a good image B. The error must be typed and say what is
// wrong; A must be dropped and its memory freed; B must complete.
func TestReassemblerErrors(t *testing.T) {
	const size, partSize = 3000, 600 // 5 parts
	imageA := testImage(size, 1)
	hA := testHeader("A")
	hA.Index, hA.Batch = 0, 2
	good := mustSplit(t, Splitter{PartSize: partSize}, hA, "", imageA)

	edit := func(i int, f func(p *ImagePart)) func([]ImagePart) []ImagePart {
		return func(ps []ImagePart) []ImagePart {
			p := ps[i]
			p.Data = append([]byte(nil), p.Data...)
			f(&p)
			ps[i] = p
			return ps
		}
	}
	pick := func(idx ...int) func([]ImagePart) []ImagePart {
		return func(ps []ImagePart) []ImagePart {
			out := make([]ImagePart, len(idx))
			for k, i := range idx {
				out[k] = ps[i]
			}
			return out
		}
	}
	otherSHA := strings.Repeat("0f", 32)
	for _, tc := range []struct {
		name    string
		opts    ReassemblerOptions
		parts   func([]ImagePart) []ImagePart
		errAt   int    // index into the fed parts
		reason  string // substring of the error
		limit   *LimitError
		noImage bool // the bad part names no image: nothing to drop
	}{
		{name: "duplicate part", parts: pick(0, 1, 1), errAt: 2, reason: "duplicate part"},
		{name: "part out of range", parts: edit(1, func(p *ImagePart) { p.Part = 5 }), errAt: 1, reason: "part 5 is outside 0..4"},
		{name: "negative part", parts: edit(1, func(p *ImagePart) { p.Part = -1 }), errAt: 1, reason: "part -1 is outside 0..4"},
		{name: "size differs", parts: edit(2, func(p *ImagePart) { p.Size++ }), errAt: 2, reason: `size "3001" differs from "3000"`},
		{name: "parts differ", parts: edit(2, func(p *ImagePart) { p.Parts = 6 }), errAt: 2, reason: `parts "6" differs from "5"`},
		{name: "sha256 differs", parts: edit(2, func(p *ImagePart) { p.SHA256 = otherSHA }), errAt: 2, reason: "sha256 \"" + otherSHA},
		{name: "mime differs", parts: edit(3, func(p *ImagePart) { p.MIME = "image/jpeg" }), errAt: 3, reason: `mime "image/jpeg" differs from "image/png"`},
		{name: "batch differs", parts: edit(3, func(p *ImagePart) { p.Batch = 3 }), errAt: 3, reason: `batch "3" differs from "2"`},
		{name: "index differs", parts: edit(3, func(p *ImagePart) { p.Index = 1 }), errAt: 3, reason: `index "1" differs from "0"`},
		{name: "event differs", parts: edit(1, func(p *ImagePart) { p.Event = "other" }), errAt: 1, reason: `event "other" differs`},
		{name: "node differs", parts: edit(1, func(p *ImagePart) { p.Node = "10" }), errAt: 1, reason: `node "10" differs from "9"`},
		{name: "label differs", parts: edit(4, func(p *ImagePart) { p.Label = "x" }), errAt: 4, reason: `nodelabel "x" differs from ""`},
		{name: "gap", parts: edit(1, func(p *ImagePart) { p.Offset += 3 }), errAt: 1,
			reason: "gap: part 0 ends at offset 600 but part 1 starts at offset 603"},
		{name: "overlap", parts: edit(1, func(p *ImagePart) { p.Offset -= 3 }), errAt: 1,
			reason: "overlap: part 0 ends at offset 600 but part 1 starts at offset 597"},
		{name: "overlap seen from the earlier part", parts: func(ps []ImagePart) []ImagePart {
			ps = edit(1, func(p *ImagePart) { p.Offset -= 3 })(ps)
			return []ImagePart{ps[1], ps[0]}
		}, errAt: 1, reason: "overlap: part 0 ends at offset 600 but part 1 starts at offset 597"},
		{name: "part 0 not at 0", parts: edit(0, func(p *ImagePart) { p.Offset = 3 }), errAt: 0, reason: "part 0 starts at offset 3, not 0"},
		{name: "last part short", parts: edit(4, func(p *ImagePart) { p.Data = p.Data[:len(p.Data)-1] }), errAt: 4,
			reason: "the last part ends at offset 2999 but the image's size is 3000"},
		{name: "offset past size", parts: edit(4, func(p *ImagePart) { p.Offset = 2401 }), errAt: 4,
			reason: "offset 2401 + 600 bytes is outside the image's 3000"},
		{name: "negative offset", parts: edit(2, func(p *ImagePart) { p.Offset = -1 }), errAt: 2, reason: "offset -1"},
		{name: "empty part", parts: edit(2, func(p *ImagePart) { p.Data = nil }), errAt: 2, reason: "empty part of a 3000-byte image"},
		{name: "more parts than bytes", parts: func(ps []ImagePart) []ImagePart {
			p := ps[0]
			p.Parts, p.Data = 3001, p.Data[:1]
			return []ImagePart{p}
		}, errAt: 0, reason: "parts 3001 exceed what a 3000-byte image can fill"},
		{name: "corrupt byte", parts: edit(2, func(p *ImagePart) { p.Data[7] ^= 1 }), errAt: 4,
			reason: "sha256 of the reassembled image is "},
		{name: "uppercase sha256", parts: edit(0, func(p *ImagePart) { p.SHA256 = strings.ToUpper(p.SHA256) }), errAt: 0,
			reason: "sha256 is not 64 lowercase hex digits"},
		{name: "no image id", parts: edit(1, func(p *ImagePart) { p.ImageID = "" }), errAt: 1, reason: "empty image_id", noImage: true},
		{name: "image over MaxImageSize", opts: ReassemblerOptions{MaxImageSize: size - 1}, parts: pick(0), errAt: 0,
			reason: "image size 3000 exceeds limit 2999", limit: &LimitError{What: "image size", Value: size, Limit: size - 1}},
		// B (2500 bytes, 3 parts) is pending first; A needs 3000 + 5 parts' bookkeeping more.
		{name: "image over MaxPending", opts: ReassemblerOptions{MaxPending: 2548 + 3080 - 1}, parts: pick(0), errAt: 0,
			reason: "pending image bytes 5628 exceeds limit 5627", limit: &LimitError{What: "pending image bytes", Value: 5628, Limit: 5627}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			imageB := testImage(2500, 2)
			hB := hA
			hB.ImageID, hB.Index = "B", 1
			partsB := mustSplit(t, Splitter{PartSize: 999}, hB, "", imageB)
			r := NewReassembler(tc.opts)
			feed := tc.parts(append([]ImagePart(nil), good...))
			var gotB *Image
			addB := func() {
				if len(partsB) == 0 {
					return
				}
				img, err := r.AddFrame(frameOf(t, &partsB[0]))
				if err != nil {
					t.Fatalf("image B: %v", err)
				}
				partsB = partsB[1:]
				if img != nil {
					gotB = img
				}
			}
			for i := range feed {
				addB()
				img, err := r.Add(&feed[i])
				if i < tc.errAt {
					if err != nil || img != nil {
						t.Fatalf("part %d: %v, %v before the bad part", i, img, err)
					}
					continue
				}
				var pe *PartError
				if !errors.As(err, &pe) || !errors.Is(err, ErrPart) || img != nil {
					t.Fatalf("part %d: %v, %v; want a *PartError", i, img, err)
				}
				if !strings.Contains(err.Error(), tc.reason) {
					t.Fatalf("error %q does not say %q", err, tc.reason)
				}
				if pe.Part != feed[i].Part || (!tc.noImage && pe.ImageID != "A") || pe.PromptID != "prompt-1" {
					t.Fatalf("error names %q part %d", pe.ImageID, pe.Part)
				}
				if tc.limit != nil {
					var le *LimitError
					if !errors.As(err, &le) || *le != *tc.limit || !errors.Is(err, ErrLimit) {
						t.Fatalf("limit error %+v, want %+v", le, tc.limit)
					}
				}
				break
			}
			for len(partsB) > 0 {
				addB()
			}
			if gotB == nil || !bytes.Equal(gotB.Data, imageB) {
				t.Fatal("image B did not complete")
			}
			if tc.noImage {
				// A part without an image_id cannot be blamed on A, which stays pending.
				if p := r.Pending(); len(p) != 1 || p[0].ImageID != "A" || p[0].Received != tc.errAt {
					t.Fatalf("pending: %+v", p)
				}
				return
			}
			if p := r.Pending(); len(p) != 0 || r.PendingBytes() != 0 {
				t.Fatalf("image A still pending after its error: %+v, %d bytes", p, r.PendingBytes())
			}
			// Later parts of A are refused as parts of a dropped image.
			_, err := r.Add(&good[4])
			if !errors.Is(err, ErrImageDropped) || !errors.Is(err, ErrPart) {
				t.Fatalf("a part of dropped image A: %v; want ErrImageDropped", err)
			}
		})
	}
}

func TestReassemblerPendingOverMaxPendingWithOthers(t *testing.T) {
	r := NewReassembler(ReassemblerOptions{MaxPending: 10_000})
	a := mustSplit(t, Splitter{PartSize: 3000}, testHeader("a"), "", testImage(6000, 1)) // 6032 bytes pending
	b := mustSplit(t, Splitter{PartSize: 3000}, testHeader("b"), "", testImage(6000, 2))
	if _, err := r.Add(&a[0]); err != nil {
		t.Fatal(err)
	}
	_, err := r.Add(&b[0])
	var le *LimitError
	if !errors.As(err, &le) || le.What != "pending image bytes" || le.Value != 12_064 || le.Limit != 10_000 {
		t.Fatalf("second image: %v; want pending image bytes 12064 over 10000", err)
	}
	if !strings.Contains(err.Error(), "12064") || !strings.Contains(err.Error(), "10000") {
		t.Fatalf("error %q does not name the value and the limit", err)
	}
	// a is unaffected and completes; its memory is then free again.
	if img, err := r.Add(&a[1]); err != nil || img == nil {
		t.Fatalf("a: %v, %v", img, err)
	}
	if r.PendingBytes() != 0 {
		t.Fatalf("%d bytes pending", r.PendingBytes())
	}
}

func TestReassemblerCopiesParts(t *testing.T) {
	image := testImage(5000, 9)
	parts := mustSplit(t, Splitter{PartSize: 999}, testHeader("c"), "", image)
	r := NewReassembler(ReassemblerOptions{})
	buf := make([]byte, 0, 2000)
	var got *Image
	for i := range parts {
		buf = buf[:0]
		buf, _ = AppendPartFrame(buf, &parts[i].PartHeader, parts[i].Data)
		img, err := r.AddFrame(buf)
		if err != nil {
			t.Fatal(err)
		}
		clear(buf[:cap(buf)]) // the caller reuses its buffer
		if img != nil {
			got = img
		}
	}
	if got == nil || !bytes.Equal(got.Data, image) {
		t.Fatal("image changed when the caller reused its buffer")
	}
	if cap(got.Data) != len(image) {
		t.Fatalf("image buffer has cap %d for %d bytes: not allocated once from Size", cap(got.Data), len(image))
	}
}

func TestReassemblerAllocatesOnlyOnFirstPart(t *testing.T) {
	image := testImage(30_000, 4)
	parts := mustSplit(t, Splitter{PartSize: 300}, testHeader("alloc"), "", image)
	r := NewReassembler(ReassemblerOptions{})
	if _, err := r.Add(&parts[0]); err != nil {
		t.Fatal(err)
	}
	next := 1
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := r.Add(&parts[next]); err != nil {
			t.Fatal(err)
		}
		next++
	})
	if allocs != 0 {
		t.Fatalf("a middle part allocates %v times", allocs)
	}
}

func TestReassemblerFlush(t *testing.T) {
	r := NewReassembler(ReassemblerOptions{})
	image := testImage(3000, 5)
	h1 := testHeader("one")
	h1.Index, h1.Batch = 1, 2
	p1 := mustSplit(t, Splitter{PartSize: 600}, h1, "", image) // 5 parts
	h0 := h1
	h0.ImageID, h0.Index = "zero", 0
	p0 := mustSplit(t, Splitter{PartSize: 600}, h0, "", image)
	h2 := testHeader("other")
	h2.PromptID = "prompt-2"
	p2 := mustSplit(t, Splitter{PartSize: 600}, h2, "", image)
	for _, p := range []*ImagePart{&p1[0], &p1[2], &p1[4], &p0[1], &p2[0]} {
		if _, err := r.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	if pend := r.Pending(); len(pend) != 3 || pend[0].ImageID != "zero" || pend[1].ImageID != "one" || pend[2].ImageID != "other" {
		t.Fatalf("Pending() = %+v", pend)
	}
	missing := r.Flush("prompt-1")
	if len(missing) != 2 {
		t.Fatalf("Flush returned %d images", len(missing))
	}
	want := PendingImage{Event: "nodecast.image", PromptID: "prompt-1", Node: "9", ImageID: "one", Index: 1, Batch: 2,
		Size: 3000, Parts: 5, Received: 3, ReceivedBytes: 1800, Missing: []int{1, 3}}
	if fmt.Sprint(missing[1]) != fmt.Sprint(want) {
		t.Fatalf("Flush()[1] = %+v\nwant %+v", missing[1], want)
	}
	err := missing[1].Err()
	var pe *PartError
	if !errors.As(err, &pe) || pe.Part != 1 || !errors.Is(err, ErrPart) ||
		!strings.Contains(err.Error(), "missing 2 of 5 parts (1, 3); received 1800 of 3000 bytes") {
		t.Fatalf("Err() = %v", err)
	}
	if r.PendingBytes() != 3000+5*spanBytes {
		t.Fatalf("after Flush, %d bytes pending; want only prompt-2's image", r.PendingBytes())
	}
	if _, err := r.Add(&p1[1]); !errors.Is(err, ErrImageDropped) {
		t.Fatalf("late part of a flushed image: %v", err)
	}
	if got := r.Flush("prompt-1"); got != nil {
		t.Fatalf("second Flush: %+v", got)
	}
	if got := r.FlushAll(); len(got) != 1 || got[0].ImageID != "other" || r.PendingBytes() != 0 {
		t.Fatalf("FlushAll: %+v", got)
	}
}

func TestPendingImageErrListsFirstMissing(t *testing.T) {
	p := PendingImage{ImageID: "x", Parts: 40, Received: 2, Missing: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}}
	if err := p.Err(); !strings.Contains(err.Error(), "missing 38 of 40 parts (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, ...)") {
		t.Fatalf("Err() = %v", err)
	}
}

func TestReassemblerLatePartOfCompleteImage(t *testing.T) {
	r := NewReassembler(ReassemblerOptions{})
	parts := mustSplit(t, Splitter{}, testHeader("done"), "", []byte("tiny"))
	if img, err := r.Add(&parts[0]); err != nil || img == nil {
		t.Fatal(img, err)
	}
	img, err := r.Add(&parts[0])
	if img != nil || err == nil || errors.Is(err, ErrImageDropped) || !strings.Contains(err.Error(), "already complete") {
		t.Fatalf("the same one-part image again: %v, %v; want a duplicate part error", img, err)
	}
}

func TestReassemblerRemembersBoundedFinished(t *testing.T) {
	var r Reassembler // the zero value works
	for i := range MaxFinishedImages + 10 {
		parts := mustSplit(t, Splitter{}, testHeader("f"+strconv.Itoa(i)), "", []byte{byte(i)})
		if img, err := r.Add(&parts[0]); err != nil || img == nil || img.Data[0] != byte(i) {
			t.Fatal(i, img, err)
		}
	}
	if r.finished.Len() != MaxFinishedImages {
		t.Fatalf("remembers %d finished images, want %d", r.finished.Len(), MaxFinishedImages)
	}
	if _, ok := r.finished.Lookup(imageKey{"prompt-1", "f9"}); ok {
		t.Fatal("the oldest finished images were not forgotten")
	}
}

func TestReassemblerMalformedMessages(t *testing.T) {
	r := NewReassembler(ReassemblerOptions{})
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", []byte("PART\x00\x00")},
		{"type 1", AppendImageFrame(nil, ImageFormatPNG, []byte("x"))},
		{"json length past end", []byte("PART\x00\x00\x00\x09{}")},
		{"bad json", appendJSONFrame(nil, BinaryPart, []byte("{]"), nil)},
		{"wrong field type", appendJSONFrame(nil, BinaryPart, []byte(`{"part":""}`), nil)},
	} {
		t.Run("frame "+tc.name, func(t *testing.T) {
			_, err := r.AddFrame(tc.b)
			var fe *FrameError
			if !errors.As(err, &fe) || errors.Is(err, ErrPart) {
				t.Fatalf("got %v; want a *FrameError", err)
			}
		})
	}
	if _, err := r.AddB64("ev", json.RawMessage(`{"part_b64":1}`)); !errors.Is(err, ErrFrame) {
		t.Fatalf("bad base64 JSON: %v", err)
	}
	if _, err := r.Add(nil); !errors.Is(err, ErrPart) {
		t.Fatalf("nil part: %v", err)
	}

	// Bad base64 in a part of a known image drops that image.
	parts := mustSplit(t, Splitter{PartSize: 300}, testHeader("b64"), "", testImage(1000, 3))
	b0, _ := MarshalB64Part(&parts[0])
	if _, err := addB64(r, b0); err != nil {
		t.Fatal(err)
	}
	b1, _ := MarshalB64Part(&parts[1])
	b1 = bytes.Replace(b1, []byte(`"part_b64":"`), []byte(`"part_b64":"!`), 1)
	_, err := addB64(r, b1)
	var pe *PartError
	var fe *FrameError
	if !errors.As(err, &pe) || !errors.As(err, &fe) || pe.ImageID != "b64" || !strings.Contains(err.Error(), "part_b64: illegal base64") {
		t.Fatalf("bad base64: %v", err)
	}
	if r.PendingBytes() != 0 {
		t.Fatal("the image with a bad base64 part was not dropped")
	}
}

func TestReassemblerConcurrent(t *testing.T) {
	r := NewReassembler(ReassemblerOptions{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for k := range 5 {
				image := testImage(5000+g*100+k, uint64(g*10+k))
				h := testHeader(fmt.Sprintf("g%d-%d", g, k))
				parts := mustSplit(t, Splitter{PartSize: 600}, h, "", image)
				var got *Image
				for i := len(parts) - 1; i >= 0; i-- {
					img, err := r.Add(&parts[i])
					if err != nil {
						t.Error(err)
						return
					}
					if img != nil {
						got = img
					}
					_ = r.Pending()
				}
				if got == nil || !bytes.Equal(got.Data, image) {
					t.Errorf("%s did not reassemble", h.ImageID)
				}
			}
		})
	}
	wg.Wait()
	if r.PendingBytes() != 0 {
		t.Fatalf("%d bytes pending", r.PendingBytes())
	}
}
