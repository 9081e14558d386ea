package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
)

// Wire is how a sender node's images reach clients.
type Wire string

const (
	// WireComfy sends whole images as type 1 frames, as ComfyUI's
	// SaveImageWebsocket and ETN_SendImageWebSocket do. Clients that negotiated
	// supports_image_parts get PART frames instead.
	WireComfy Wire = "comfy"
	// WireB64Parts sends base64 JSON parts (the ntlb64part shape) to clients
	// without PART support, and PART frames to clients with it.
	WireB64Parts Wire = "b64parts"
	// WireParts sends PART frames, with base64 JSON parts as the fallback for
	// clients that did not negotiate them.
	WireParts Wire = "parts"
)

// ParseWire returns the Wire named s, or an error listing the valid names.
func ParseWire(s string) (Wire, error) {
	switch w := Wire(s); w {
	case WireComfy, WireB64Parts, WireParts:
		return w, nil
	}
	return "", &FrameError{Kind: "wire", Reason: "unknown wire " + strconv.Quote(s) + " (want comfy, b64parts or parts)"}
}

// PartHeader is the JSON of a PART frame. Size and SHA256 describe the whole
// encoded image; Part counts from 0 to Parts-1; Offset is where this part's
// bytes start in the image.
type PartHeader struct {
	Event    string `json:"event"`
	PromptID string `json:"prompt_id"`
	Node     string `json:"node"`
	ImageID  string `json:"image_id"`
	Index    int    `json:"index"` // position of the image in its batch
	Batch    int    `json:"batch"` // images in the batch
	Part     int    `json:"part"`
	Parts    int    `json:"parts"`
	Offset   int64  `json:"offset"`
	Size     int64  `json:"size"`
	MIME     string `json:"mime"`
	SHA256   string `json:"sha256"` // lowercase hex of the whole image
	// Seq is the frame's position in a resume client's stream (see
	// FlagResume); 0 and absent for everyone else.
	Seq uint64 `json:"seq,omitempty"`
}

// ImagePart is one part of one encoded image, as a sender node emits it and the
// host's hub receives it. Data holds this part's bytes only.
type ImagePart struct {
	PartHeader
	Label string // nodelabel of base64 JSON parts (the NTL nodes' input; the node id otherwise)
	Wire  Wire
	Data  []byte
}

// AppendPartFrame appends a PART frame: [u32be "PART"][u32be len(json)][json][data].
func AppendPartFrame(dst []byte, h *PartHeader, data []byte) ([]byte, error) {
	j, err := json.Marshal(h)
	if err != nil {
		return dst, err
	}
	return appendJSONFrame(dst, BinaryPart, j, data), nil
}

// ParsePartFrame splits a PART frame and checks that its header is consistent
// with itself and with the payload; data aliases b.
func ParsePartFrame(b []byte) (PartHeader, []byte, error) {
	h, data, err := decodePartFrame(b)
	if err != nil {
		return h, nil, err
	}
	if err := h.Check(len(data)); err != nil {
		return h, nil, err
	}
	return h, data, nil
}

// decodePartFrame splits a PART frame and decodes its header without checking
// it, so that the Reassembler can tell which image a bad part belongs to.
func decodePartFrame(b []byte) (PartHeader, []byte, error) {
	var h PartHeader
	j, data, err := splitJSONFrame(b, BinaryPart, "PART")
	if err != nil {
		return h, nil, err
	}
	if err := json.Unmarshal(j, &h); err != nil {
		return h, nil, &FrameError{Kind: "PART", Reason: "header: " + err.Error()}
	}
	return h, data, nil
}

// Check validates the fields of a header that carries n bytes of payload,
// as every receiver must before trusting it: a *FrameError says what is wrong.
func (h *PartHeader) Check(n int) error {
	bad := func(reason string) error { return &FrameError{Kind: "PART", Reason: reason} }
	switch {
	case h.ImageID == "":
		return bad("empty image_id")
	case h.Parts < 1:
		return bad("parts " + strconv.Itoa(h.Parts) + " is less than 1")
	case h.Part < 0 || h.Part >= h.Parts:
		return bad("part " + strconv.Itoa(h.Part) + " is outside 0.." + strconv.Itoa(h.Parts-1))
	case h.Size < 0:
		return bad("negative size")
	case h.Offset < 0 || h.Offset > h.Size || int64(n) > h.Size-h.Offset:
		return bad("offset " + strconv.FormatInt(h.Offset, 10) + " + " + strconv.Itoa(n) +
			" bytes is outside the image's " + strconv.FormatInt(h.Size, 10))
	case h.Batch < 0:
		return bad("negative batch " + strconv.Itoa(h.Batch))
	case h.Index < 0 || (h.Batch > 0 && h.Index >= h.Batch):
		return bad("index " + strconv.Itoa(h.Index) + " is outside the batch of " + strconv.Itoa(h.Batch))
	case !isLowerHex(h.SHA256, 64):
		return bad("sha256 is not 64 lowercase hex digits")
	}
	return nil
}

// isLowerHex reports whether s is n lowercase hex digits.
func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// B64PartData is the data of a base64 JSON part message, {"type":EVENT,"data":...}.
// The first four fields are what the ntlb64part client reads; the rest let a
// client detect a missing or corrupt part.
type B64PartData struct {
	NodeLabel string `json:"nodelabel"`
	ImgIdx    int    `json:"img_idx"`
	PartIdx   int    `json:"part_idx"`
	PartB64   string `json:"part_b64"`
	PartCount int    `json:"part_count"`
	Size      int64  `json:"size"`
	MIME      string `json:"mime"`
	SHA256    string `json:"sha256"`
	PromptID  string `json:"prompt_id"`
	Node      string `json:"node"`
	ImageID   string `json:"image_id"`
	Offset    int64  `json:"offset"`
	Batch     int    `json:"batch"`
}

// MarshalB64Part returns the JSON text message that carries p as a base64 part.
func MarshalB64Part(p *ImagePart) ([]byte, error) {
	j, err := json.Marshal(Message{Type: p.Event, Data: B64PartData{
		NodeLabel: p.Label, ImgIdx: p.Index, PartIdx: p.Part,
		PartCount: p.Parts, Size: p.Size, MIME: p.MIME, SHA256: p.SHA256,
		PromptID: p.PromptID, Node: p.Node, ImageID: p.ImageID, Offset: p.Offset, Batch: p.Batch,
	}})
	if err != nil {
		return nil, err
	}
	// Splice the base64 in rather than have encoding/json escape megabytes
	// that never need escaping. Inside a JSON string every '"' is escaped, so
	// the first `"part_b64":""` is the key and its empty value.
	i := bytes.Index(j, emptyPartB64)
	if i < 0 {
		return nil, &FrameError{Kind: "base64 part", Reason: "part_b64 missing from the marshalled message"}
	}
	i += len(emptyPartB64) - 1 // at the closing quote
	out := make([]byte, len(j)+base64.StdEncoding.EncodedLen(len(p.Data)))
	n := copy(out, j[:i])
	base64.StdEncoding.Encode(out[n:], p.Data)
	copy(out[n+base64.StdEncoding.EncodedLen(len(p.Data)):], j[i:])
	return out, nil
}

var emptyPartB64 = []byte(`"part_b64":""`)

// ParseB64Part decodes the data of a base64 part message of type event back
// into an ImagePart, checking it like ParsePartFrame.
func ParseB64Part(event string, data []byte) (ImagePart, error) {
	p, err := decodeB64Part(event, data)
	if err != nil {
		return ImagePart{}, err
	}
	if err := p.Check(len(p.Data)); err != nil {
		return ImagePart{}, &FrameError{Kind: "base64 part", Reason: frameReason(err)}
	}
	return p, nil
}

// decodeB64Part decodes a base64 part message's data without checking the
// header, so that the Reassembler can tell which image a bad part belongs to.
func decodeB64Part(event string, data []byte) (ImagePart, error) {
	var d B64PartData
	if err := json.Unmarshal(data, &d); err != nil {
		return ImagePart{}, &FrameError{Kind: "base64 part", Reason: err.Error()}
	}
	p := ImagePart{
		PartHeader: PartHeader{
			Event: event, PromptID: d.PromptID, Node: d.Node, ImageID: d.ImageID,
			Index: d.ImgIdx, Batch: d.Batch, Part: d.PartIdx, Parts: d.PartCount,
			Offset: d.Offset, Size: d.Size, MIME: d.MIME, SHA256: d.SHA256,
		},
		Label: d.NodeLabel, Wire: WireB64Parts,
	}
	raw, err := base64.StdEncoding.DecodeString(d.PartB64)
	if err != nil {
		// The header is returned so that the caller knows which image is hurt.
		return p, &FrameError{Kind: "base64 part", Reason: "part_b64: " + err.Error()}
	}
	p.Data = raw
	return p, nil
}
