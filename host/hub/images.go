package hub

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/nodecast/nodecast/host/stream"
	"github.com/nodecast/nodecast/protocol"
)

// maxPartsPerImage bounds the part count a header may announce, so a bad
// header cannot make the hub track millions of tiny parts.
const maxPartsPerImage = 1 << 16

// pendingImage holds the parts of an image until the last one arrives.
type pendingImage struct {
	clientID string
	first    protocol.ImagePart // header of the first part seen; Data is nil
	parts    map[int]*protocol.ImagePart
	held     int64
}

// shape is the way one client receives an image.
type shape int

const (
	shapePART    shape = iota // binary PART frames
	shapeWhole                // one type 1 frame
	shapeBase64               // base64 JSON text messages
	shapePreview              // one type 4 frame: metadata JSON, then the image
	numShapes
)

// Publish hands over one part of an encoded image for clientID ("" = every
// client connected when the image completes). Parts may come in any order;
// the image is framed and queued when the last one arrives. Publish keeps
// p.Data until then: the caller must not modify it after the call. An empty
// p.Wire means protocol.WireComfy.
//
// A bad part (inconsistent with the image's other parts, a duplicate, out of
// range, or a complete image whose bytes do not match its sha256) returns a
// *PartError; holding more than MaxPendingImageBytes returns a
// *protocol.LimitError. Either way the whole image is dropped.
func (h *Hub) Publish(clientID string, p *protocol.ImagePart) error {
	if p == nil {
		return &PartError{Reason: "nil part"}
	}
	if err := checkPart(p); err != nil {
		if p.ImageID != "" {
			h.mu.Lock()
			h.dropLocked(h.pending[p.ImageID], p)
			h.mu.Unlock()
		} else {
			h.droppedImages.Add(1)
		}
		return err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	if dropped, _ := h.dropped.Lookup(protocol.ImageKey{PromptID: p.PromptID, ImageID: p.ImageID}); dropped {
		h.mu.Unlock()
		return &PartError{ImageID: p.ImageID, Part: p.Part, Reason: "the image was dropped after an earlier error"}
	}
	img := h.pending[p.ImageID]
	if img == nil {
		if p.Size > h.opts.MaxPendingImageBytes {
			h.dropLocked(nil, p)
			h.mu.Unlock()
			return &protocol.LimitError{What: "image size", Value: p.Size, Limit: h.opts.MaxPendingImageBytes}
		}
		first := *p
		first.Data = nil
		img = &pendingImage{clientID: clientID, first: first, parts: make(map[int]*protocol.ImagePart, min(p.Parts, 64))}
		h.pending[p.ImageID] = img
	} else if reason := img.mismatch(clientID, p); reason != "" {
		h.dropLocked(img, p)
		h.mu.Unlock()
		return &PartError{ImageID: p.ImageID, Part: p.Part, Reason: reason}
	}
	if _, dup := img.parts[p.Part]; dup {
		h.dropLocked(img, p)
		h.mu.Unlock()
		return &PartError{ImageID: p.ImageID, Part: p.Part, Reason: "duplicate part"}
	}
	if n := h.pendingBytes + int64(len(p.Data)); n > h.opts.MaxPendingImageBytes {
		h.dropLocked(img, p)
		h.mu.Unlock()
		return &protocol.LimitError{What: "pending image bytes", Value: n, Limit: h.opts.MaxPendingImageBytes}
	}
	part := *p
	img.parts[p.Part] = &part
	img.held += int64(len(p.Data))
	h.pendingBytes += int64(len(p.Data))
	if len(img.parts) < p.Parts {
		h.mu.Unlock()
		return nil
	}
	delete(h.pending, p.ImageID)
	h.pendingBytes -= img.held
	h.mu.Unlock()

	if err := h.commitImage(img); err != nil {
		h.mu.Lock()
		h.dropLocked(nil, p)
		h.mu.Unlock()
		return err
	}
	h.committed.Add(1)
	return nil
}

// AbortImages drops the incomplete images of promptID, and forgets that any
// of its images were dropped, so that a retry of the prompt can send them.
func (h *Hub) AbortImages(promptID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, img := range h.pending {
		if img.first.PromptID == promptID {
			delete(h.pending, id)
			h.pendingBytes -= img.held
			h.droppedImages.Add(1)
		}
	}
	h.dropped.ForgetPrompt(promptID)
}

// dropLocked discards img (nil when it is not pending) and remembers p's
// image id so that its later parts are refused instead of piling up.
func (h *Hub) dropLocked(img *pendingImage, p *protocol.ImagePart) {
	if img != nil && h.pending[p.ImageID] == img {
		delete(h.pending, p.ImageID)
		h.pendingBytes -= img.held
	}
	h.droppedImages.Add(1)
	h.dropped.Mark(protocol.ImageKey{PromptID: p.PromptID, ImageID: p.ImageID}, true)
	h.log.Debug("hub: image dropped", "image", p.ImageID, "prompt", p.PromptID)
}

// checkPart validates a part on its own: the header checks every receiver
// makes (protocol's), then what the hub needs besides.
func checkPart(p *protocol.ImagePart) error {
	bad := func(reason string) error { return &PartError{ImageID: p.ImageID, Part: p.Part, Reason: reason} }
	if p.Parts > maxPartsPerImage {
		return &protocol.LimitError{What: "image parts", Value: int64(p.Parts), Limit: maxPartsPerImage}
	}
	if err := p.PartHeader.CheckPart(len(p.Data)); err != nil {
		var fe *protocol.FrameError
		if errors.As(err, &fe) {
			return bad(fe.Reason)
		}
		return bad(err.Error())
	}
	if len(p.ImageID) > 256 {
		return bad("image_id longer than 256 bytes")
	}
	switch p.Wire {
	case "", protocol.WireComfy, protocol.WireB64Parts, protocol.WireParts:
	default:
		return bad("unknown wire " + strconv.Quote(string(p.Wire)))
	}
	if err := protocol.ValidateEventName(p.Event); err != nil {
		return bad(err.Error())
	}
	return nil
}

// mismatch says how p disagrees with the image's first part, or "": the
// header fields every receiver compares (protocol's), then what only the
// hub knows (the client, the node label and the wire).
func (img *pendingImage) mismatch(clientID string, p *protocol.ImagePart) string {
	f := &img.first
	switch {
	case clientID != img.clientID:
		return "client " + strconv.Quote(clientID) + " differs from " + strconv.Quote(img.clientID)
	case p.Mismatch(&f.PartHeader) != "":
		return p.Mismatch(&f.PartHeader)
	case p.Label != f.Label:
		return "nodelabel " + strconv.Quote(p.Label) + " differs from " + strconv.Quote(f.Label)
	case p.Wire != f.Wire:
		return "wire " + strconv.Quote(string(p.Wire)) + " differs from " + strconv.Quote(string(f.Wire))
	}
	return ""
}

// commitImage checks a complete image, frames it once per shape its clients
// need and queues the same bytes to each of them.
func (h *Hub) commitImage(img *pendingImage) error {
	parts := make([]*protocol.ImagePart, img.first.Parts)
	var off int64
	for i := range parts {
		p := img.parts[i]
		if p.Offset != off {
			return &PartError{ImageID: p.ImageID, Part: i, Reason: "offset " + strconv.FormatInt(p.Offset, 10) +
				" does not follow the previous part, which ends at " + strconv.FormatInt(off, 10)}
		}
		off += int64(len(p.Data))
		parts[i] = p
	}
	if off != img.first.Size {
		return &PartError{ImageID: img.first.ImageID, Part: len(parts) - 1,
			Reason: "parts hold " + strconv.FormatInt(off, 10) + " bytes, size is " + strconv.FormatInt(img.first.Size, 10)}
	}
	// Kept although it costs 4-5 ms per 7 MB image on the commit path
	// (15-40 ms of a 4x2048² prompt, measured): the plugin connection's TLS
	// guards the bytes in transit, not a pack that announces a sum its bytes
	// do not have, and type 1 clients get no sum to check for themselves.
	if !h.opts.SkipHashCheck {
		d := sha256.New()
		for _, p := range parts {
			d.Write(p.Data)
		}
		if got := hex.EncodeToString(d.Sum(nil)); got != img.first.SHA256 {
			return &PartError{ImageID: img.first.ImageID, Part: len(parts) - 1,
				Reason: "sha256 of the complete image is " + got + ", parts say " + img.first.SHA256}
		}
	}

	f := framer{limit: h.limit(), first: &img.first, parts: parts}
	h.commitMu.Lock()
	defer h.commitMu.Unlock()
	return h.deliverLocked(img.clientID, func(t target) shape { return shapeFor(t.parts, t.preview, &img.first) }, f.frame)
}

// shapeFor picks how a client receives an image. A client that sent
// supports_preview_metadata gets type 4 where others get type 1, as
// ComfyUI sends it; its image_type names any format, so it also carries
// the ones type 1 has no code for.
func shapeFor(clientParts, clientPreview bool, p *protocol.ImagePart) shape {
	if clientParts {
		return shapePART
	}
	switch p.Wire {
	case protocol.WireB64Parts, protocol.WireParts:
		return shapeBase64
	}
	if clientPreview {
		return shapePreview
	}
	if _, ok := protocol.ImageFormatFor(p.MIME); ok {
		return shapeWhole
	}
	return shapeBase64 // type 1 has no code for this format
}

// framer turns one complete image into the messages of each shape.
type framer struct {
	limit int
	first *protocol.ImagePart
	parts []*protocol.ImagePart
	whole []byte // the image's bytes, once assembled
}

func (f *framer) frame(s shape) (*batch, error) {
	switch s {
	case shapeWhole:
		format, _ := protocol.ImageFormatFor(f.first.MIME)
		head := protocol.AppendImageFrame(make([]byte, 0, 8), format, nil)
		m := stream.Message{Binary: true, Head: head, Body: f.wholeBytes()}
		return &batch{frames: []stream.Message{m}, size: int64(m.Len())}, nil
	case shapePreview:
		j, err := json.Marshal(previewHeader{
			NodeID: f.first.Node, PromptID: f.first.PromptID, DisplayNodeID: f.first.Node,
			RealNodeID: f.first.Node, ImageType: f.first.MIME,
		})
		if err != nil {
			return nil, err
		}
		head := make([]byte, 8, 8+len(j))
		binary.BigEndian.PutUint32(head, protocol.BinaryPreviewImageWithMetadata)
		binary.BigEndian.PutUint32(head[4:], uint32(len(j)))
		head = append(head, j...)
		m := stream.Message{Binary: true, Head: head, Body: f.wholeBytes()}
		return &batch{frames: []stream.Message{m}, size: int64(m.Len())}, nil
	case shapePART:
		if b, over, err := f.frameParts(f.parts, appendPART); over == 0 || err != nil {
			return b, err
		}
		return f.resplit(true, appendPART)
	default:
		if b, over, err := f.frameParts(f.parts, appendBase64); over == 0 || err != nil {
			return b, err
		}
		return f.resplit(false, appendBase64)
	}
}

// previewHeader is the JSON of a type 4 frame, in ComfyUI's key order;
// parent_node_id is null, as ComfyUI sends it for a node outside a subgraph.
type previewHeader struct {
	NodeID        string  `json:"node_id"`
	PromptID      string  `json:"prompt_id"`
	DisplayNodeID string  `json:"display_node_id"`
	ParentNodeID  *string `json:"parent_node_id"`
	RealNodeID    string  `json:"real_node_id"`
	ImageType     string  `json:"image_type"`
}

// wholeBytes returns the image's bytes, joined once (or the only part's).
func (f *framer) wholeBytes() []byte {
	if f.whole == nil {
		if len(f.parts) == 1 {
			f.whole = f.parts[0].Data
		} else {
			w := make([]byte, 0, f.first.Size)
			for _, p := range f.parts {
				w = append(w, p.Data...)
			}
			f.whole = w
		}
	}
	return f.whole
}

// appendFunc frames one part as a message.
type appendFunc func(p *protocol.ImagePart) (stream.Message, error)

// appendPART frames a PART message: the header as Head, the part's bytes,
// shared and not copied, as Body.
func appendPART(p *protocol.ImagePart) (stream.Message, error) {
	head, err := protocol.AppendPartFrame(make([]byte, 0, 8+512), &p.PartHeader, nil)
	return stream.Message{Binary: true, Head: head, Body: p.Data}, err
}

func appendBase64(p *protocol.ImagePart) (stream.Message, error) {
	b, err := protocol.MarshalB64Part(p)
	return stream.Message{Body: b}, err
}

// frameParts frames each part. over is the size of the first message that is
// not smaller than the limit (0 when all fit); the image must then be split
// again.
func (f *framer) frameParts(parts []*protocol.ImagePart, appendMsg appendFunc) (b *batch, over int, err error) {
	b = &batch{frames: make([]stream.Message, 0, len(parts))}
	for _, p := range parts {
		msg, err := appendMsg(p)
		if err != nil {
			return nil, 0, err
		}
		if msg.Len() >= f.limit {
			return nil, msg.Len(), nil
		}
		b.frames = append(b.frames, msg)
		b.size += int64(msg.Len())
	}
	return b, 0, nil
}

// resplit cuts the whole image into parts whose messages fit the limit. The
// sender's parts did not (a part sized for PART frames grows by a third as
// base64), so clients of this shape see more, smaller parts.
func (f *framer) resplit(binary bool, appendMsg appendFunc) (*batch, error) {
	f.wholeBytes()
	// Measure the message around an empty payload, with every number at its
	// widest, to learn how many payload bytes fit.
	probe := *f.first
	probe.Part, probe.Parts, probe.Offset, probe.Data = int(f.first.Size), int(f.first.Size), f.first.Size, nil
	empty, err := appendMsg(&probe)
	if err != nil {
		return nil, err
	}
	room := f.limit - 1 - empty.Len()
	if !binary {
		room = room / 4 * 3 // base64: 4 characters per 3 bytes
	}
	if room < 1 {
		return nil, &PartError{ImageID: f.first.ImageID, Reason: "message limit " + strconv.Itoa(f.limit) +
			" leaves no room for part data after a " + strconv.Itoa(empty.Len()) + "-byte header"}
	}
	size := len(f.whole)
	n := max(1, (size+room-1)/room)
	parts := make([]*protocol.ImagePart, n)
	for i := range parts {
		p := *f.first
		lo, hi := i*room, min(size, (i+1)*room)
		p.Part, p.Parts, p.Offset, p.Data = i, n, int64(lo), f.whole[lo:hi]
		parts[i] = &p
	}
	b, over, err := f.frameParts(parts, appendMsg)
	if err != nil {
		return nil, err
	}
	if over != 0 {
		return nil, &protocol.LimitError{What: "image part message size", Value: int64(over), Limit: int64(f.limit - 1)}
	}
	return b, nil
}
