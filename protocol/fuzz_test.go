package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"
)

// Seeds live in testdata/fuzz/<FuzzName>/; `go test` replays them.

func FuzzParsePartFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		h, data, err := ParsePartFrame(b)
		if err != nil {
			var fe *FrameError
			if !errors.As(err, &fe) || data != nil {
				t.Fatalf("error %v is not a *FrameError, or data came with it", err)
			}
			return
		}
		if len(data) > 0 && &data[len(data)-1] != &b[len(b)-1] {
			t.Fatal("data does not alias the frame's tail")
		}
		if h.Check(len(data)) != nil {
			t.Fatal("accepted a header that check refuses")
		}
		// What parses re-encodes to a frame that parses to the same part.
		again, err := AppendPartFrame(nil, &h, data)
		if err != nil {
			t.Fatal(err)
		}
		h2, data2, err := ParsePartFrame(again)
		if err != nil || h2 != h || !bytes.Equal(data2, data) {
			t.Fatalf("round trip: %+v %v\nwas %+v", h2, err, h)
		}
		// And the Reassembler takes it without panicking, never returning an
		// image whose hash disagrees.
		img, err := NewReassembler(ReassemblerOptions{MaxImageSize: 1 << 20}).AddFrame(b)
		checkImage(t, img, err)
	})
}

// checkImage fails when a returned image is not what its header says.
func checkImage(t *testing.T, img *Image, err error) {
	t.Helper()
	if img == nil {
		return
	}
	if err != nil {
		t.Fatalf("both an image and an error: %v", err)
	}
	sum := sha256.Sum256(img.Data)
	if hex.EncodeToString(sum[:]) != img.SHA256 || int64(len(img.Data)) != img.Size {
		t.Fatalf("image %q: %d bytes with sha256 %x; header says %d bytes, %s", img.ImageID, len(img.Data), sum, img.Size, img.SHA256)
	}
}

// FuzzReassembler cuts two images into PART frames, lets ops reorder,
// duplicate, drop, corrupt and re-head them and turn some into base64
// messages, and feeds them all to one Reassembler. It must never panic, never
// return an image whose sha256 or size disagrees with its header, and never
// hold more than MaxPending; with no ops both images must come back whole.
func FuzzReassembler(f *testing.F) {
	f.Fuzz(func(t *testing.T, image []byte, ops []byte) {
		if len(image) > 4096 {
			image = image[:4096]
		}
		images := map[string][]byte{"A": image, "B": append(bytes.Repeat([]byte{0x42}, 7), image...)}
		type msg struct {
			frame []byte
			b64   bool
		}
		var msgs []msg
		// 1 to 16 parts per image: enough to reorder, few enough to run fast.
		split := Splitter{PartSize: max(MinPartSize, (len(image)/(1+len(image)%16)+3)/3*3)}
		var partsA, partsB []ImagePart
		for id, img := range images {
			h := testHeader(id)
			parts, err := split.Split(h, "", img, WireParts)
			if err != nil {
				t.Fatal(err)
			}
			if id == "A" {
				partsA = parts
			} else {
				partsB = parts
			}
		}
		for i := 0; i < max(len(partsA), len(partsB)); i++ { // interleave
			for _, ps := range [][]ImagePart{partsA, partsB} {
				if i < len(ps) {
					msgs = append(msgs, msg{frame: frameOf(t, &ps[i])})
				}
			}
		}

		opts := ReassemblerOptions{MaxPending: 1 << 20, MaxImageSize: 1 << 20}
		flushAt := -1
		untouched := len(ops) < 3
		ops = ops[:min(len(ops), 300)]
		for len(ops) >= 3 && len(msgs) > 0 {
			op, a, b := ops[0], int(ops[1]), int(ops[2])
			ops = ops[3:]
			i, j := a%len(msgs), b%len(msgs)
			switch op % 9 {
			case 0:
				msgs[i], msgs[j] = msgs[j], msgs[i]
			case 1:
				msgs = append(msgs, msg{frame: bytes.Clone(msgs[i].frame), b64: msgs[i].b64})
			case 2:
				msgs = append(msgs[:i], msgs[i+1:]...)
			case 3:
				if fr := msgs[i].frame; len(fr) > 0 {
					fr = bytes.Clone(fr)
					fr[b%len(fr)] ^= byte(1 << (a % 8))
					msgs[i].frame = fr
				}
			case 4:
				msgs[i].frame = msgs[i].frame[:b%(len(msgs[i].frame)+1)]
			case 5:
				msgs[i].frame = editHeader(msgs[i].frame, a, b)
			case 6:
				msgs[i].b64 = true
			case 7:
				flushAt = i
			case 8:
				opts.MaxPending = int64(a*b) + 1
				opts.MaxImageSize = int64(a)*16 + 1
			}
		}

		r := NewReassembler(opts)
		complete := map[string]bool{}
		for k, m := range msgs {
			if k == flushAt {
				r.Flush("prompt-1")
			}
			var img *Image
			var err error
			if m.b64 {
				img, err = addAsB64(r, m.frame)
			} else {
				img, err = r.AddFrame(m.frame)
			}
			checkImage(t, img, err)
			if err != nil && !errors.Is(err, ErrPart) && !errors.Is(err, ErrFrame) {
				t.Fatalf("error of no known kind: %v", err)
			}
			if n := r.PendingBytes(); n < 0 || n > r.maxPending() {
				t.Fatalf("%d bytes pending, limit %d", n, r.maxPending())
			}
			if img != nil {
				if want, ok := images[img.ImageID]; ok && img.SHA256 == sha256Hex(want) && !bytes.Equal(img.Data, want) {
					t.Fatal("an image with the right sha256 has the wrong bytes")
				}
				complete[img.ImageID] = true
			}
		}
		if untouched && (!complete["A"] || !complete["B"]) {
			t.Fatalf("untouched parts did not complete both images: %+v", r.Pending())
		}
		r.FlushAll()
		if r.PendingBytes() != 0 {
			t.Fatalf("%d bytes pending after FlushAll", r.PendingBytes())
		}
	})
}

// editHeader re-marshals a PART frame's header with one field changed, so that
// the frame stays well-formed but lies; frames that do not decode are kept.
func editHeader(frame []byte, field, delta int) []byte {
	h, data, err := decodePartFrame(frame)
	if err != nil {
		return frame
	}
	d := delta - 128
	switch field % 10 {
	case 0:
		h.Part += d
	case 1:
		h.Parts += d
	case 2:
		h.Offset += int64(d)
	case 3:
		h.Size += int64(d)
	case 4:
		h.Index += d
	case 5:
		h.Batch += d
	case 6:
		h.SHA256 = sha256Hex([]byte{byte(d)})
	case 7:
		h.MIME += "x"
	case 8:
		h.ImageID = string(rune('A' + delta%3))
	case 9:
		h.Node = ""
	}
	out, _ := AppendPartFrame(nil, &h, data)
	return out
}

// addAsB64 sends the part of a PART frame as a base64 JSON message, or the
// frame itself when it does not decode.
func addAsB64(r *Reassembler, frame []byte) (*Image, error) {
	h, data, err := decodePartFrame(frame)
	if err != nil {
		return r.AddFrame(frame)
	}
	msg, err := MarshalB64Part(&ImagePart{PartHeader: h, Data: data})
	if err != nil {
		return nil, err
	}
	var m RawMessage
	if err := json.Unmarshal(msg, &m); err != nil {
		return nil, err
	}
	return r.AddB64(m.Type, m.Data)
}

// FuzzSplit splits images of any size, with any strings, under any limit: every
// message must be under the limit and the parts must reassemble, both ways.
func FuzzSplit(f *testing.F) {
	f.Fuzz(func(t *testing.T, size uint32, limit uint16, partSize uint16, event, promptID, imageID, label string, index, batch int) {
		size %= 1 << 16
		if len(event)+len(promptID)+len(imageID)+len(label) > 2048 {
			return
		}
		lim := 64 + int(limit)
		h := PartHeader{Event: event, PromptID: promptID, Node: label, ImageID: imageID, Index: index, Batch: batch, MIME: event}
		s := Splitter{Limit: lim, PartSize: int(partSize)}
		if plan, err := s.Plan(h, label, int64(size)); err == nil && plan.Parts > 1100 {
			size = uint32(1100 * plan.PartSize) // past the 1000th part, where numbers gain a digit, and no further
		}
		image := testImage(int(size), uint64(size))
		parts, err := s.Split(h, label, image, WireParts)
		if err != nil {
			if !errors.Is(err, ErrLimit) && !errors.Is(err, ErrSplit) && !errors.Is(err, ErrFrame) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		if partSize >= MinPartSize && len(parts) > 1 && len(parts[0].Data) != int(partSize)/3*3 {
			t.Fatalf("asked for parts of %d, got %d", partSize, len(parts[0].Data))
		}
		checkSplit(t, lim, parts, image)
	})
}
