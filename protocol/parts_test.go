package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

func validHeader() PartHeader {
	return PartHeader{Event: "ev", PromptID: "p", Node: "9", ImageID: "i", Index: 1, Batch: 2,
		Part: 1, Parts: 3, Offset: 3, Size: 8, MIME: "image/png", SHA256: strings.Repeat("a1", 32)}
}

func TestPartFrameRoundTrip(t *testing.T) {
	h := validHeader()
	b, err := AppendPartFrame([]byte("x"), &h, []byte("abc"))
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 'x' || string(b[1:5]) != "PART" {
		t.Fatalf("frame starts % x", b[:5])
	}
	got, data, err := ParsePartFrame(b[1:])
	if err != nil || got != h || string(data) != "abc" {
		t.Fatalf("ParsePartFrame = %+v, %q, %v", got, data, err)
	}
}

func TestParsePartFrameMalformed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(h *PartHeader)
		data   string
		reason string
	}{
		{"empty image id", func(h *PartHeader) { h.ImageID = "" }, "abc", "empty image_id"},
		{"zero parts", func(h *PartHeader) { h.Parts, h.Part = 0, 0 }, "abc", "parts 0 is less than 1"},
		{"part = parts", func(h *PartHeader) { h.Part = 3 }, "abc", "part 3 is outside 0..2"},
		{"negative part", func(h *PartHeader) { h.Part = -1 }, "abc", "part -1 is outside 0..2"},
		{"negative size", func(h *PartHeader) { h.Size = -1 }, "abc", "negative size"},
		{"negative offset", func(h *PartHeader) { h.Offset = -1 }, "abc", "offset -1 + 3 bytes is outside the image's 8"},
		{"offset past size", func(h *PartHeader) { h.Offset = 9 }, "", "offset 9 + 0 bytes is outside the image's 8"},
		{"data past size", func(h *PartHeader) { h.Offset = 6 }, "abc", "offset 6 + 3 bytes is outside the image's 8"},
		{"index = batch", func(h *PartHeader) { h.Index = 2 }, "abc", "index 2 is outside the batch of 2"},
		{"negative index", func(h *PartHeader) { h.Index = -1 }, "abc", "index -1 is outside the batch of 2"},
		{"negative batch", func(h *PartHeader) { h.Batch = -1 }, "abc", "negative batch -1"},
		{"short sha256", func(h *PartHeader) { h.SHA256 = "abc" }, "abc", "sha256 is not 64 lowercase hex digits"},
		{"non-hex sha256", func(h *PartHeader) { h.SHA256 = strings.Repeat("zz", 32) }, "abc", "sha256 is not 64 lowercase hex digits"},
		{"uppercase sha256", func(h *PartHeader) { h.SHA256 = strings.Repeat("A1", 32) }, "abc", "sha256 is not 64 lowercase hex digits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := validHeader()
			tc.edit(&h)
			b, err := AppendPartFrame(nil, &h, []byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = ParsePartFrame(b)
			checkFrameError(t, err, "PART", tc.reason)

			// The same header as a base64 part is refused for the same reason.
			msg, err := MarshalB64Part(&ImagePart{PartHeader: h, Data: []byte(tc.data)})
			if err != nil {
				t.Fatal(err)
			}
			var m RawMessage
			if err := json.Unmarshal(msg, &m); err != nil {
				t.Fatal(err)
			}
			_, err = ParseB64Part(m.Type, m.Data)
			checkFrameError(t, err, "base64 part", tc.reason)
		})
	}
	// Framing errors come before the header is read.
	for _, tc := range []struct {
		name   string
		b      []byte
		reason string
	}{
		{"short", []byte("PART"), "shorter than its 8-byte header"},
		{"type 1", []byte{0, 0, 0, 1, 0, 0, 0, 0}, "type is 1"},
		{"json length past end", []byte("PART\x00\x00\x01\x00{}"), "json length 256 exceeds the 2 bytes"},
		{"bad json", []byte("PART\x00\x00\x00\x01{"), "header: "},
		{"string for number", appendJSONFrame(nil, BinaryPart, []byte(`{"part":"1"}`), nil), "header: "},
		{"empty json object", appendJSONFrame(nil, BinaryPart, []byte(`{}`), nil), "empty image_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParsePartFrame(tc.b)
			checkFrameError(t, err, "PART", tc.reason)
		})
	}
}

func TestB64PartRoundTrip(t *testing.T) {
	p := ImagePart{PartHeader: validHeader(), Label: "ntl label", Wire: WireB64Parts, Data: []byte("abc")}
	msg, err := MarshalB64Part(&p)
	if err != nil {
		t.Fatal(err)
	}
	// The fields the ntlb64part client reads, with ComfyUI's envelope.
	for _, want := range []string{`{"type":"ev","data":{"nodelabel":"ntl label","img_idx":1,"part_idx":1,"part_b64":"YWJj","part_count":3,`,
		`"size":8,`, `"sha256":"a1a1`, `"image_id":"i"`, `"offset":3,`, `"batch":2}`} {
		if !bytes.Contains(msg, []byte(want)) {
			t.Fatalf("message %s lacks %s", msg, want)
		}
	}
	var m RawMessage
	if err := json.Unmarshal(msg, &m); err != nil {
		t.Fatal(err)
	}
	got, err := ParseB64Part(m.Type, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.PartHeader != p.PartHeader || got.Label != p.Label || got.Wire != WireB64Parts || string(got.Data) != "abc" {
		t.Fatalf("ParseB64Part = %+v", got)
	}
}

func TestParseB64PartMalformed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		data   string
		reason string
	}{
		{"not json", `{`, "unexpected end of JSON input"},
		{"number for string", `{"part_b64":1}`, "cannot unmarshal"},
		{"bad base64", `{"part_b64":"!!!!"}`, "part_b64: illegal base64 data"},
		{"missing padding", `{"part_b64":"YWJ"}`, "part_b64: "},
		{"empty object", `{}`, "empty image_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseB64Part("ev", []byte(tc.data))
			checkFrameError(t, err, "base64 part", tc.reason)
		})
	}
}

func TestParseWire(t *testing.T) {
	for _, w := range []Wire{WireComfy, WireB64Parts, WireParts} {
		if got, err := ParseWire(string(w)); err != nil || got != w {
			t.Errorf("ParseWire(%q) = %q, %v", w, got, err)
		}
	}
	for _, bad := range []string{"", "Parts", "b64", "comfy "} {
		_, err := ParseWire(bad)
		checkFrameError(t, err, "wire", "unknown wire")
		if !strings.Contains(err.Error(), "want comfy, b64parts or parts") {
			t.Errorf("ParseWire(%q): %v does not list the valid names", bad, err)
		}
	}
}

// TestMarshalB64PartMatchesEncodingJSON checks the spliced message against
// what encoding/json writes for the same data, with strings that try to fake
// the part_b64 key.
func TestMarshalB64PartMatchesEncodingJSON(t *testing.T) {
	hostile, label := hostileStrings()
	fake := `","part_b64":"","x":"`
	for _, tc := range []struct {
		name  string
		h     PartHeader
		label string
		data  []byte
	}{
		{"plain", validHeader(), "9", []byte("abc")},
		{"empty data", validHeader(), "", nil},
		{"padding", validHeader(), "", []byte("abcd")},
		{"hostile", hostile, label, testImage(1000, 1)},
		{"fake key in label", validHeader(), fake, []byte("xyz")},
		{"fake key in event", PartHeader{Event: fake, PromptID: fake, ImageID: "i"}, fake, []byte("xyz")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &ImagePart{PartHeader: tc.h, Label: tc.label, Data: tc.data}
			got, err := MarshalB64Part(p)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(Message{Type: p.Event, Data: B64PartData{
				NodeLabel: p.Label, ImgIdx: p.Index, PartIdx: p.Part,
				PartB64:   base64.StdEncoding.EncodeToString(p.Data),
				PartCount: p.Parts, Size: p.Size, MIME: p.MIME, SHA256: p.SHA256,
				PromptID: p.PromptID, Node: p.Node, ImageID: p.ImageID, Offset: p.Offset, Batch: p.Batch,
			}})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("MarshalB64Part:\n%s\nencoding/json:\n%s", got, want)
			}
		})
	}
}
