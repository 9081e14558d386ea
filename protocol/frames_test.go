package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func TestImageFrameRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format uint32
		image  []byte
	}{
		{"png", ImageFormatPNG, []byte("\x89PNG\r\n\x1a\nrest")},
		{"jpeg", ImageFormatJPEG, []byte{0xff, 0xd8, 0xff, 0xd9}},
		{"empty", ImageFormatPNG, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("keep")
			b := AppendImageFrame(prefix, tc.format, tc.image)
			if !bytes.HasPrefix(b, []byte("keep")) {
				t.Fatal("AppendImageFrame lost dst")
			}
			b = b[4:]
			if len(b) != 8+len(tc.image) || binary.BigEndian.Uint32(b) != 1 || binary.BigEndian.Uint32(b[4:]) != tc.format {
				t.Fatalf("frame % x", b)
			}
			if typ, err := FrameType(b); err != nil || typ != BinaryPreviewImage {
				t.Fatalf("FrameType = %d, %v", typ, err)
			}
			format, image, err := ParseImageFrame(b)
			if err != nil || format != tc.format || !bytes.Equal(image, tc.image) {
				t.Fatalf("ParseImageFrame = %d, %q, %v", format, image, err)
			}
		})
	}
}

func TestParseImageFrameMalformed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		b      []byte
		reason string
	}{
		{"nil", nil, "shorter than its 8-byte header"},
		{"7 bytes", []byte{0, 0, 0, 1, 0, 0, 0}, "shorter than its 8-byte header"},
		{"type 4", []byte{0, 0, 0, 4, 0, 0, 0, 2}, "type is 4"},
		{"PART", []byte("PART\x00\x00\x00\x02"), "type is 1346458196"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseImageFrame(tc.b)
			checkFrameError(t, err, "type 1", tc.reason)
		})
	}
}

func TestPreviewFrameRoundTrip(t *testing.T) {
	meta := PreviewMetadata{NodeID: "9", DisplayNodeID: "9", ParentNodeID: "", RealNodeID: "9",
		PromptID: `p"<&>`, ImageType: "image/jpeg"}
	b, err := AppendPreviewFrame(nil, meta, []byte("jpegbytes"))
	if err != nil {
		t.Fatal(err)
	}
	if typ, _ := FrameType(b); typ != BinaryPreviewImageWithMetadata {
		t.Fatalf("type %d", typ)
	}
	if n := binary.BigEndian.Uint32(b[4:]); !strings.HasPrefix(string(b[8:8+n]), `{"node_id":"9","display_node_id"`) {
		t.Fatalf("metadata JSON %s", b[8:8+n])
	}
	got, image, err := ParsePreviewFrame(b)
	if err != nil || got != meta || string(image) != "jpegbytes" {
		t.Fatalf("ParsePreviewFrame = %+v, %q, %v", got, image, err)
	}
}

func TestParsePreviewFrameMalformed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		b      []byte
		reason string
	}{
		{"nil", nil, "shorter than its 8-byte header"},
		{"type 1", []byte{0, 0, 0, 1, 0, 0, 0, 0}, "type is 1"},
		{"json length past end", []byte{0, 0, 0, 4, 0, 0, 0, 3, '{', '}'}, "json length 3 exceeds the 2 bytes that follow the header"},
		{"huge json length", []byte{0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff}, "json length 4294967295 exceeds the 0 bytes"},
		{"bad json", []byte{0, 0, 0, 4, 0, 0, 0, 2, '{', ']'}, "metadata: "},
		{"json not an object", []byte{0, 0, 0, 4, 0, 0, 0, 2, '[', ']'}, "metadata: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParsePreviewFrame(tc.b)
			checkFrameError(t, err, "type 4", tc.reason)
		})
	}
}

func TestFrameType(t *testing.T) {
	if _, err := FrameType([]byte{0, 0, 1}); !errors.Is(err, ErrFrame) {
		t.Fatalf("3 bytes: %v", err)
	}
	if typ, err := FrameType([]byte("PART")); err != nil || typ != BinaryPart {
		t.Fatalf("PART: %x, %v", typ, err)
	}
}

func TestImageFormatFor(t *testing.T) {
	for mime, want := range map[string]uint32{"image/png": ImageFormatPNG, "image/jpeg": ImageFormatJPEG, "image/webp": 0, "": 0} {
		got, ok := ImageFormatFor(mime)
		if got != want || ok != (want != 0) {
			t.Errorf("ImageFormatFor(%q) = %d, %v", mime, got, ok)
		}
	}
}

// checkFrameError asserts that err is a *FrameError of kind whose reason
// contains reason.
func checkFrameError(t *testing.T, err error, kind, reason string) {
	t.Helper()
	var fe *FrameError
	if !errors.As(err, &fe) || !errors.Is(err, ErrFrame) {
		t.Fatalf("got %v; want a *FrameError", err)
	}
	if fe.Kind != kind || !strings.Contains(fe.Reason, reason) {
		t.Fatalf("got %s frame error %q; want %s, %q", fe.Kind, fe.Reason, kind, reason)
	}
}
