package protocol

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Reassembler limits.
const (
	DefaultMaxPending   = 512 << 20 // bytes held for incomplete images
	DefaultMaxImageSize = 256 << 20 // bytes of one encoded image
)

// ErrImageDropped marks a part refused because its image was already dropped
// after an earlier error, which the caller has already been given; callers
// can skip these with errors.Is.
var ErrImageDropped = errors.New("protocol: part of a dropped image")

// ReassemblerOptions bounds the memory of a Reassembler. The zero value
// applies the defaults; memory limits cannot be disabled.
type ReassemblerOptions struct {
	// MaxPending bounds the bytes held for incomplete images (their buffers
	// and 16 bytes per part of bookkeeping); <= 0 means DefaultMaxPending (512 MiB).
	MaxPending int64
	// MaxImageSize bounds the size of one image; <= 0 means DefaultMaxImageSize (256 MiB).
	MaxImageSize int64
}

// Image is an image reassembled from its parts, its sha256 checked.
type Image struct {
	Event    string
	PromptID string
	Node     string
	ImageID  string
	Index    int // position of the image in its batch
	Batch    int // images in the batch
	MIME     string
	SHA256   string // lowercase hex of Data
	Size     int64  // len(Data)
	Label    string // nodelabel of base64 JSON parts; empty for PART frames
	Data     []byte
}

// PendingImage describes an image whose parts have not all arrived.
type PendingImage struct {
	Event         string
	PromptID      string
	Node          string
	ImageID       string
	Index         int
	Batch         int
	Size          int64
	Parts         int
	Received      int   // parts received
	ReceivedBytes int64 // bytes received
	Missing       []int // the first missing part numbers, ascending, at most 16
}

const maxMissingListed = 16

// Err returns a *PartError that names the first missing part and counts what
// arrived.
func (p PendingImage) Err() error {
	first := -1
	if len(p.Missing) > 0 {
		first = p.Missing[0]
	}
	missing := make([]string, len(p.Missing))
	for i, m := range p.Missing {
		missing[i] = strconv.Itoa(m)
	}
	list := strings.Join(missing, ", ")
	if p.Parts-p.Received > len(p.Missing) {
		list += ", ..."
	}
	return &PartError{PromptID: p.PromptID, ImageID: p.ImageID, Part: first,
		Reason: fmt.Sprintf("incomplete: missing %d of %d parts (%s); received %d of %d bytes",
			p.Parts-p.Received, p.Parts, list, p.ReceivedBytes, p.Size)}
}

// PartError says why a part was refused or an image is unusable. The image
// is dropped and its memory freed; other images are unaffected.
type PartError struct {
	PromptID string
	ImageID  string
	Part     int    // the part refused, or the first missing part
	Reason   string // what was wrong, with the values seen
	// Err is the cause when there is a typed one: a *LimitError (image size,
	// pending bytes), a *FrameError (a header that contradicts itself) or
	// ErrImageDropped.
	Err error
}

func (e *PartError) Error() string {
	return fmt.Sprintf("protocol: image %q of prompt %q, part %d: %s", e.ImageID, e.PromptID, e.Part, e.Reason)
}

// Unwrap lets errors.Is match ErrPart and the cause's sentinel, and errors.As
// reach the cause.
func (e *PartError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrPart}
	}
	return []error{ErrPart, e.Err}
}

// Reassembler joins the parts of images, which may arrive interleaved and in
// any order, into whole images whose sha256 it checks. It is what a client
// that receives PART frames or base64 JSON parts uses.
//
// An image is keyed by prompt_id and image_id, which must be unique within a
// prompt. After an error that concerns an image, the image is dropped and its
// memory freed, and its later parts are refused with ErrImageDropped. The
// zero value is ready to use with the default options. A Reassembler is safe
// for concurrent use.
type Reassembler struct {
	opts ReassemblerOptions

	mu           sync.Mutex
	pending      map[imageKey]*pendingImage
	pendingBytes int64
	// finished remembers the most recent completed and dropped images, so
	// that their late parts are refused instead of starting a new image
	// that would never complete.
	finished FinishedImages
}

const spanBytes = 16 // bookkeeping per part, counted against MaxPending

type imageKey = ImageKey

type pendingImage struct {
	head     PartHeader // Part and Offset are those of the first part received
	label    string
	sum      [sha256.Size]byte
	data     []byte
	spans    []span
	received int
	bytes    int64
	cost     int64 // counted in pendingBytes
}

// span is where a received part lies; start1 is offset+1, so 0 means absent.
type span struct{ start1, end int64 }

// NewReassembler returns a Reassembler with the given limits.
func NewReassembler(opts ReassemblerOptions) *Reassembler {
	return &Reassembler{opts: opts}
}

// init makes the maps of a zero Reassembler; callers hold r.mu.
func (r *Reassembler) init() {
	if r.pending == nil {
		r.pending = make(map[imageKey]*pendingImage)
	}
}

func (r *Reassembler) maxPending() int64 {
	if r.opts.MaxPending <= 0 {
		return DefaultMaxPending
	}
	return r.opts.MaxPending
}

func (r *Reassembler) maxImageSize() int64 {
	if r.opts.MaxImageSize <= 0 {
		return DefaultMaxImageSize
	}
	return min(r.opts.MaxImageSize, math.MaxInt)
}

// AddFrame adds the part carried by a PART binary message. b may be reused
// once AddFrame returns.
func (r *Reassembler) AddFrame(b []byte) (*Image, error) {
	h, data, err := decodePartFrame(b)
	if err != nil {
		return nil, err
	}
	return r.Add(&ImagePart{PartHeader: h, Wire: WireParts, Data: data})
}

// AddB64 adds the part carried by a base64 JSON part message
// {"type":event,"data":data}.
func (r *Reassembler) AddB64(event string, data json.RawMessage) (*Image, error) {
	p, err := decodeB64Part(event, data)
	if err != nil {
		if p.ImageID == "" { // the JSON itself is unreadable: no image to blame
			return nil, err
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		return nil, r.refuse(&p.PartHeader, frameReason(err), err)
	}
	return r.Add(&p)
}

// Add adds one part, copying its data, and returns the image when this part
// was the last one missing, or nil while parts are still missing.
func (r *Reassembler) Add(p *ImagePart) (*Image, error) {
	if p == nil {
		return nil, &PartError{Part: -1, Reason: "nil part"}
	}
	r.mu.Lock()
	pi, err := r.add(p)
	r.mu.Unlock()
	if pi == nil {
		return nil, err
	}
	if got := sha256.Sum256(pi.data); got != pi.sum {
		r.mu.Lock()
		r.markFinished(imageKey{p.PromptID, p.ImageID}, true)
		r.mu.Unlock()
		return nil, &PartError{PromptID: p.PromptID, ImageID: p.ImageID, Part: p.Part,
			Reason: "sha256 of the reassembled image is " + hex.EncodeToString(got[:]) + ", the header says " + pi.head.SHA256}
	}
	h := &pi.head
	return &Image{Event: h.Event, PromptID: h.PromptID, Node: h.Node, ImageID: h.ImageID,
		Index: h.Index, Batch: h.Batch, MIME: h.MIME, SHA256: h.SHA256, Size: h.Size,
		Label: pi.label, Data: pi.data}, nil
}

// add files p under r.mu and returns its image once every part is in.
func (r *Reassembler) add(p *ImagePart) (*pendingImage, error) {
	r.init()
	key := imageKey{p.PromptID, p.ImageID}
	h := &p.PartHeader
	if dropped, ok := r.finished.Lookup(key); ok {
		if dropped {
			return nil, &PartError{PromptID: p.PromptID, ImageID: p.ImageID, Part: p.Part,
				Reason: "the image was dropped after an earlier error", Err: ErrImageDropped}
		}
		return nil, &PartError{PromptID: p.PromptID, ImageID: p.ImageID, Part: p.Part,
			Reason: "duplicate part: the image is already complete"}
	}
	n := int64(len(p.Data))
	if err := h.CheckPart(len(p.Data)); err != nil {
		return nil, r.refuse(h, frameReason(err), err)
	}

	pi := r.pending[key]
	if pi == nil {
		// The first part of an image: check the limits before allocating.
		if limit := r.maxImageSize(); h.Size > limit {
			return nil, r.refuseLimit(h, &LimitError{What: "image size", Value: h.Size, Limit: limit})
		}
		cost := saturatingAdd(h.Size, saturatingMul(int64(h.Parts), spanBytes))
		if limit := r.maxPending(); cost > limit-r.pendingBytes {
			return nil, r.refuseLimit(h, &LimitError{What: "pending image bytes", Value: saturatingAdd(r.pendingBytes, cost), Limit: limit})
		}
		pi = &pendingImage{head: *h, label: p.Label, data: make([]byte, h.Size), spans: make([]span, h.Parts), cost: cost}
		_, _ = hex.Decode(pi.sum[:], []byte(h.SHA256)) // check accepted 64 hex digits
		r.pending[key] = pi
		r.pendingBytes += cost
	} else if reason := pi.differs(h, p.Label); reason != "" {
		return nil, r.refuse(h, reason, nil)
	}

	i, last, off, end := h.Part, h.Parts-1, h.Offset, h.Offset+n
	switch {
	case pi.spans[i].start1 != 0:
		return nil, r.refuse(h, "duplicate part", nil)
	case i == 0 && off != 0:
		return nil, r.refuse(h, "part 0 starts at offset "+strconv.FormatInt(off, 10)+", not 0", nil)
	case i == last && end != h.Size:
		return nil, r.refuse(h, "the last part ends at offset "+strconv.FormatInt(end, 10)+
			" but the image's size is "+strconv.FormatInt(h.Size, 10), nil)
	case i > 0 && pi.spans[i-1].start1 != 0 && pi.spans[i-1].end != off:
		return nil, r.refuse(h, seam(i-1, pi.spans[i-1].end, i, off), nil)
	case i < last && pi.spans[i+1].start1 != 0 && pi.spans[i+1].start1-1 != end:
		return nil, r.refuse(h, seam(i, end, i+1, pi.spans[i+1].start1-1), nil)
	}
	copy(pi.data[off:end], p.Data)
	pi.spans[i] = span{start1: off + 1, end: end}
	pi.received++
	pi.bytes += n
	if pi.received < h.Parts {
		return nil, nil
	}
	// Parts 0..last all arrived and each seam was checked when the later of
	// its two parts arrived, so they tile [0, Size) exactly.
	r.release(key, pi)
	r.markFinished(key, false)
	return pi, nil
}

// seam explains why part a, which ends at aEnd, and part b=a+1, which starts
// at bStart, do not meet.
func seam(a int, aEnd int64, b int, bStart int64) string {
	what := "gap"
	if aEnd > bStart {
		what = "overlap"
	}
	return fmt.Sprintf("%s: part %d ends at offset %d but part %d starts at offset %d", what, a, aEnd, b, bStart)
}

// differs names the first field of h that disagrees with the image's earlier
// parts, or returns "".
func (pi *pendingImage) differs(h *PartHeader, label string) string {
	if reason := h.Mismatch(&pi.head); reason != "" {
		return "inconsistent header: " + reason + " in earlier parts"
	}
	if label != pi.label {
		return "inconsistent header: nodelabel " + strconv.Quote(label) + " differs from " + strconv.Quote(pi.label) + " in earlier parts"
	}
	return ""
}

// refuse drops the image h belongs to, remembers it as dropped and returns a
// *PartError. A part without an image_id names no image, so nothing is dropped.
func (r *Reassembler) refuse(h *PartHeader, reason string, cause error) error {
	if h.ImageID != "" {
		key := imageKey{h.PromptID, h.ImageID}
		r.init()
		if pi := r.pending[key]; pi != nil {
			r.release(key, pi)
		}
		r.markFinished(key, true)
	}
	return &PartError{PromptID: h.PromptID, ImageID: h.ImageID, Part: h.Part, Reason: reason, Err: cause}
}

func (r *Reassembler) refuseLimit(h *PartHeader, l *LimitError) error {
	return r.refuse(h, fmt.Sprintf("%s %d exceeds limit %d", l.What, l.Value, l.Limit), l)
}

func (r *Reassembler) release(key imageKey, pi *pendingImage) {
	delete(r.pending, key)
	r.pendingBytes -= pi.cost
}

// markFinished remembers key as dropped or completed.
func (r *Reassembler) markFinished(key imageKey, dropped bool) { r.finished.Mark(key, dropped) }

// Pending lists the images still waiting for parts, sorted by prompt, batch
// index and image id.
func (r *Reassembler) Pending() []PendingImage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.collect(func(imageKey) bool { return true }, false)
}

// PendingBytes returns the bytes held for incomplete images, as counted
// against MaxPending.
func (r *Reassembler) PendingBytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pendingBytes
}

// Flush drops the incomplete images of a prompt and returns them, sorted as
// Pending does; nil means every image of the prompt was complete. Call it when
// the prompt is over (an "executing" message with node null); each returned
// PendingImage's Err says what is missing. Later parts of the flushed images
// are refused with ErrImageDropped.
func (r *Reassembler) Flush(promptID string) []PendingImage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.collect(func(k imageKey) bool { return k.PromptID == promptID }, true)
}

// FlushAll drops every incomplete image, of every prompt, and returns them.
func (r *Reassembler) FlushAll() []PendingImage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.collect(func(imageKey) bool { return true }, true)
}

func (r *Reassembler) collect(match func(imageKey) bool, drop bool) []PendingImage {
	var out []PendingImage
	for key, pi := range r.pending {
		if !match(key) {
			continue
		}
		out = append(out, pi.describe())
		if drop {
			r.release(key, pi)
			r.markFinished(key, true)
		}
	}
	slices.SortFunc(out, func(a, b PendingImage) int {
		return cmp.Or(cmp.Compare(a.PromptID, b.PromptID), cmp.Compare(a.Index, b.Index), cmp.Compare(a.ImageID, b.ImageID))
	})
	return out
}

func (pi *pendingImage) describe() PendingImage {
	h := &pi.head
	d := PendingImage{Event: h.Event, PromptID: h.PromptID, Node: h.Node, ImageID: h.ImageID,
		Index: h.Index, Batch: h.Batch, Size: h.Size, Parts: h.Parts,
		Received: pi.received, ReceivedBytes: pi.bytes}
	for i := 0; i < len(pi.spans) && len(d.Missing) < maxMissingListed; i++ {
		if pi.spans[i].start1 == 0 {
			d.Missing = append(d.Missing, i)
		}
	}
	return d
}

func saturatingAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func saturatingMul(a, b int64) int64 {
	if a != 0 && b > math.MaxInt64/a {
		return math.MaxInt64
	}
	return a * b
}
