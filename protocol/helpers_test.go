package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// testImage returns n pseudo-random bytes, the same for the same seed. Past
// 64 KiB the bytes repeat with a prime period (so no two parts look alike),
// which keeps large images cheap under the race detector.
func testImage(n int, seed uint64) []byte {
	const period = 65521
	rng := rand.New(rand.NewPCG(seed, 0x6e6f6465))
	b := make([]byte, n)
	for i := 0; i < min(n, period); i++ {
		b[i] = byte(rng.Uint32())
	}
	for done := period; done < n; done *= 2 {
		copy(b[done:], b[:done])
	}
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// testHeader is a plain header for image id.
func testHeader(id string) PartHeader {
	return PartHeader{Event: "nodecast.image", PromptID: "prompt-1", Node: "9", ImageID: id,
		Index: 0, Batch: 1, MIME: "image/png"}
}

// hostileStrings returns a header and label whose strings are as long and as
// expensive to escape in JSON as the brief allows.
func hostileStrings() (PartHeader, string) {
	nasty := `<>&"\` + "\u00e9\u4e2d\U0001F600\u2028\u2029\x00\x1f\x7f" + "\xff\xfe" // HTML, quotes, unicode, controls, invalid UTF-8
	prompt := strings.Repeat(nasty, 300)[:300]
	h := PartHeader{
		Event:    strings.Repeat("e", MaxEventNameLen),
		PromptID: prompt,
		Node:     strings.Repeat(`"<`, 60),
		ImageID:  strings.Repeat(`\&`, 40),
		Index:    12345, Batch: 99999,
		MIME: "image/png; x=\"<&>\"",
	}
	return h, strings.Repeat("\u2028<label>", 30)
}

// messages builds both wire shapes of a part.
func messages(t testing.TB, p *ImagePart) (frame, b64 []byte) {
	t.Helper()
	frame, err := AppendPartFrame(nil, &p.PartHeader, p.Data)
	if err != nil {
		t.Fatal(err)
	}
	b64, err = MarshalB64Part(p)
	if err != nil {
		t.Fatal(err)
	}
	return frame, b64
}

// addB64 feeds a base64 JSON part message to r as a client would: decode the
// envelope, then hand its type and data over.
func addB64(r *Reassembler, msg []byte) (*Image, error) {
	var m RawMessage
	if err := json.Unmarshal(msg, &m); err != nil {
		return nil, err
	}
	return r.AddB64(m.Type, m.Data)
}

// checkSplit builds every part of parts in both wire shapes, checks that each
// message is under limit and that parts tile the image with sizes that are
// multiples of 3, then reassembles the image through both shapes and through
// the ntlb64part way (join the part_b64 strings, decode once).
func checkSplit(t *testing.T, limit int, parts []ImagePart, image []byte) {
	t.Helper()
	checkSplitShapes(t, limit, parts, image, true)
}

// checkSplitShapes is checkSplit; without viaB64, base64 messages are only
// measured, not decoded, which keeps 20 MiB images fast under -race.
func checkSplitShapes(t *testing.T, limit int, parts []ImagePart, image []byte, viaB64 bool) {
	t.Helper()
	rFrames, rB64 := NewReassembler(ReassemblerOptions{}), NewReassembler(ReassemblerOptions{})
	var joined strings.Builder
	var gotFrame, gotB64 *Image
	var off int64
	for i := range parts {
		p := &parts[i]
		if p.Part != i || p.Parts != len(parts) || p.Offset != off || p.Size != int64(len(image)) {
			t.Fatalf("part %d: header part=%d parts=%d offset=%d size=%d, want %d %d %d %d",
				i, p.Part, p.Parts, p.Offset, p.Size, i, len(parts), off, len(image))
		}
		if i < len(parts)-1 && len(p.Data)%3 != 0 {
			t.Fatalf("part %d of %d holds %d bytes, not a multiple of 3", i, len(parts), len(p.Data))
		}
		off += int64(len(p.Data))
		frame, b64 := messages(t, p)
		if len(frame) >= limit || len(b64) >= limit {
			t.Fatalf("part %d/%d (%d bytes): PART frame %d, base64 message %d bytes; limit %d",
				i, len(parts), len(p.Data), len(frame), len(b64), limit)
		}
		img, err := rFrames.AddFrame(frame)
		if err != nil {
			t.Fatalf("part %d: AddFrame: %v", i, err)
		}
		if img != nil {
			gotFrame = img
		}
		if !viaB64 {
			continue
		}
		var m struct{ Data B64PartData }
		if err := json.Unmarshal(b64, &m); err != nil {
			t.Fatal(err)
		}
		joined.WriteString(m.Data.PartB64)
		if img, err = addB64(rB64, b64); err != nil {
			t.Fatalf("part %d: AddB64: %v", i, err)
		} else if img != nil {
			gotB64 = img
		}
	}
	if off != int64(len(image)) {
		t.Fatalf("parts hold %d bytes, image has %d", off, len(image))
	}
	if gotFrame == nil || !bytes.Equal(gotFrame.Data, image) {
		t.Fatal("PART frames did not reassemble to the image")
	}
	if viaB64 {
		if gotB64 == nil || !bytes.Equal(gotB64.Data, image) {
			t.Fatal("base64 parts did not reassemble to the image")
		}
		if joined.String() != base64.StdEncoding.EncodeToString(image) {
			t.Fatal("joined part_b64 strings are not the base64 of the image")
		}
	}
	if n := rFrames.PendingBytes() + rB64.PendingBytes(); n != 0 {
		t.Fatalf("%d bytes still pending after reassembly", n)
	}
}
