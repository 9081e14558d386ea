package protocol

import (
	"encoding/binary"
	"encoding/json"
	"strconv"
)

// Binary message types: the first big-endian uint32 of a binary WebSocket message.
const (
	BinaryPreviewImage             uint32 = 1          // [1][format][image]
	BinaryPreviewImageWithMetadata uint32 = 4          // [4][len(json)][json][image]
	BinaryPart                     uint32 = 0x50415254 // "PART": [PART][len(json)][json][part bytes]
)

// Image formats of a type 1 frame.
const (
	ImageFormatJPEG uint32 = 1
	ImageFormatPNG  uint32 = 2
)

// ImageFormatFor returns the type 1 format code for a MIME type, and false when
// type 1 cannot carry it (only JPEG and PNG have codes).
func ImageFormatFor(mime string) (uint32, bool) {
	switch mime {
	case "image/png":
		return ImageFormatPNG, true
	case "image/jpeg":
		return ImageFormatJPEG, true
	}
	return 0, false
}

// FrameType returns the type of a binary message.
func FrameType(b []byte) (uint32, error) {
	if len(b) < 4 {
		return 0, &FrameError{Kind: "binary", Reason: "shorter than its 4-byte type"}
	}
	return binary.BigEndian.Uint32(b), nil
}

// AppendImageFrame appends a type 1 frame: [u32be 1][u32be format][image].
func AppendImageFrame(dst []byte, format uint32, image []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, BinaryPreviewImage)
	dst = binary.BigEndian.AppendUint32(dst, format)
	return append(dst, image...)
}

// ParseImageFrame splits a type 1 frame; image aliases b.
func ParseImageFrame(b []byte) (format uint32, image []byte, err error) {
	if len(b) < 8 {
		return 0, nil, &FrameError{Kind: "type 1", Reason: "shorter than its 8-byte header"}
	}
	if t := binary.BigEndian.Uint32(b); t != BinaryPreviewImage {
		return 0, nil, &FrameError{Kind: "type 1", Reason: "type is " + strconv.FormatUint(uint64(t), 10)}
	}
	return binary.BigEndian.Uint32(b[4:]), b[8:], nil
}

// PreviewMetadata is the JSON of a type 4 frame, as ComfyUI sends it.
type PreviewMetadata struct {
	NodeID        string `json:"node_id"`
	DisplayNodeID string `json:"display_node_id"`
	ParentNodeID  string `json:"parent_node_id"`
	RealNodeID    string `json:"real_node_id"`
	PromptID      string `json:"prompt_id"`
	ImageType     string `json:"image_type"`
}

// AppendPreviewFrame appends a type 4 frame: [u32be 4][u32be len(json)][json][image].
func AppendPreviewFrame(dst []byte, meta PreviewMetadata, image []byte) ([]byte, error) {
	j, err := json.Marshal(meta)
	if err != nil {
		return dst, err
	}
	return appendJSONFrame(dst, BinaryPreviewImageWithMetadata, j, image), nil
}

// ParsePreviewFrame splits a type 4 frame; image aliases b.
func ParsePreviewFrame(b []byte) (PreviewMetadata, []byte, error) {
	var meta PreviewMetadata
	j, image, err := splitJSONFrame(b, BinaryPreviewImageWithMetadata, "type 4")
	if err != nil {
		return meta, nil, err
	}
	if err := json.Unmarshal(j, &meta); err != nil {
		return meta, nil, &FrameError{Kind: "type 4", Reason: "metadata: " + err.Error()}
	}
	return meta, image, nil
}

func appendJSONFrame(dst []byte, typ uint32, j, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, typ)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(j)))
	dst = append(dst, j...)
	return append(dst, payload...)
}

func splitJSONFrame(b []byte, typ uint32, kind string) (j, payload []byte, err error) {
	if len(b) < 8 {
		return nil, nil, &FrameError{Kind: kind, Reason: "shorter than its 8-byte header"}
	}
	if t := binary.BigEndian.Uint32(b); t != typ {
		return nil, nil, &FrameError{Kind: kind, Reason: "type is " + strconv.FormatUint(uint64(t), 10)}
	}
	n := binary.BigEndian.Uint32(b[4:])
	if uint64(n) > uint64(len(b)-8) {
		return nil, nil, &FrameError{Kind: kind, Reason: "json length " + strconv.FormatUint(uint64(n), 10) +
			" exceeds the " + strconv.Itoa(len(b)-8) + " bytes that follow the header"}
	}
	return b[8 : 8+n], b[8+n:], nil
}
