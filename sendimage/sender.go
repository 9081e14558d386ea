package sendimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"

	"github.com/nodecast/nodecast/protocol"
)

// Emitter is what Send hands encoded images to; plugins.Emitter satisfies it.
// EmitPart must not modify p.Data: the parts of images that a batch repeats
// share the bytes of one encoding.
type Emitter interface {
	EmitPart(ctx context.Context, p *protocol.ImagePart) error
	Progress(ctx context.Context, value, max int) error
}

// SendOptions configure one Send. The zero value is not enough only because
// Event must be set.
type SendOptions struct {
	Event          string         // validated with protocol.ValidateEventName
	Encoder        string         // registry name; "" means "png"
	EncoderOptions EncoderOptions // zero value: the encoder's defaults
	Registry       *Registry      // nil means Default
	Wire           protocol.Wire  // "" means protocol.WireParts
	PartSize       int            // raw bytes per part; 0 means the largest that fits MessageLimit
	MessageLimit   int            // every message strictly smaller; 0 means protocol.DefaultMessageLimit
	Label          string         // nodelabel of base64 parts; "" means Node
	PromptID, Node string
	Limits         protocol.ImageLimits // zero value: protocol's default limits
	AllowNonFinite bool                 // false: NaN/±Inf refused; true: converted as ComfyUI does
}

// SentImage describes one image that Send emitted completely.
type SentImage struct {
	ImageID, MIME string
	Size          int64  // bytes of the encoded image
	SHA256        string // lowercase hex of the encoded image
	Width, Height int
}

// sendJob is everything Send checked before emitting.
type sendJob struct {
	opts     SendOptions
	enc      Encoder
	wire     protocol.Wire
	label    string
	images   *Images
	splitter protocol.Splitter
}

// Send converts each image of an IMAGE tensor, encodes it, and emits it in
// parts through emit, then reports progress (i+1 of the batch). Everything
// that can be checked is checked before the first part is emitted: the event
// name, the encoder and its options, the wire, the tensor (shape, limits,
// NaN/±Inf) and whether the part size fits the message limit. The errors are
// typed: *protocol.EventNameError, *UnknownEncoderError, *OptionError,
// *protocol.FrameError (wire), *protocol.ShapeError, *protocol.DTypeError,
// *protocol.LimitError, *protocol.NonFiniteError.
//
// Encoding image i+1 overlaps emitting image i. On an error after emitting
// has begun, Send returns the images emitted completely so far with it.
func Send(ctx context.Context, images *protocol.Tensor, opts SendOptions, emit Emitter) ([]SentImage, error) {
	job, err := prepareSend(images, opts)
	if err != nil {
		return nil, err
	}
	if emit == nil {
		return nil, &OptionError{Owner: "send", Option: "emit", Value: nil, Reason: "nil Emitter"}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return job.run(ctx, emit)
}

// prepareSend checks everything that can be checked without encoding.
func prepareSend(t *protocol.Tensor, opts SendOptions) (*sendJob, error) {
	if err := protocol.ValidateEventName(opts.Event); err != nil {
		return nil, err
	}
	reg := opts.Registry
	if reg == nil {
		reg = Default
	}
	enc, err := reg.New(opts.Encoder, opts.EncoderOptions)
	if err != nil {
		return nil, err
	}
	wire := protocol.WireParts
	if opts.Wire != "" {
		if wire, err = protocol.ParseWire(string(opts.Wire)); err != nil {
			return nil, err
		}
	}
	if opts.PartSize < 0 {
		return nil, &OptionError{Owner: "send", Option: "PartSize", Value: opts.PartSize, Reason: "want 0 (largest that fits) or more"}
	}
	if opts.MessageLimit < 0 {
		return nil, &OptionError{Owner: "send", Option: "MessageLimit", Value: opts.MessageLimit, Reason: "want 0 (protocol.DefaultMessageLimit) or more"}
	}
	images, err := NewImages(t, ConvertOptions{Limits: opts.Limits, AllowNonFinite: opts.AllowNonFinite})
	if err != nil {
		return nil, err
	}
	job := &sendJob{opts: opts, enc: enc, wire: wire, label: opts.Label, images: images,
		splitter: protocol.Splitter{Limit: opts.MessageLimit, PartSize: opts.PartSize}}
	if job.label == "" {
		job.label = opts.Node
	}
	// Check the part size against the limit with the longest header any part
	// of this batch can have: the last index, a 64-digit sha256 and a size
	// bound no encoder reaches, so that the numbers are as long as they get.
	raw := int64(images.Width) * int64(images.Height) * int64(images.Channels)
	h := job.header(images.Batch-1, "00000000000000000000000000000000")
	if _, err := job.splitter.Plan(h, job.label, 2*raw+1<<20); err != nil {
		return nil, err
	}
	return job, nil
}

// header is the part header shared by all parts of image i.
func (j *sendJob) header(i int, imageID string) protocol.PartHeader {
	return protocol.PartHeader{
		Event: j.opts.Event, PromptID: j.opts.PromptID, Node: j.opts.Node,
		ImageID: imageID, Index: i, Batch: j.images.Batch, MIME: j.enc.MIME(),
	}
}

// encoded is one image of the batch, encoded, ready to be split and emitted.
type encoded struct {
	index int
	img   *encodedImage // shared by the images of the batch that are the same memory
	err   error
}

// encodedImage is the encoded bytes of one image and their sha256, which
// the emitting goroutine (the only one that reads sum) computes once,
// overlapping the next encode, for every image that shares them.
type encodedImage struct {
	data []byte
	sum  string // lowercase hex sha256 of data; "" until computed
}

func (e *encodedImage) sha256() string {
	if e.sum == "" {
		sum := sha256.Sum256(e.data)
		e.sum = hex.EncodeToString(sum[:])
	}
	return e.sum
}

// run encodes on one goroutine and emits on the caller's, one image ahead.
func (j *sendJob) run(ctx context.Context, emit Emitter) ([]SentImage, error) {
	n := j.images.Batch
	sent := make([]SentImage, 0, n)
	if n == 1 { // nothing to overlap
		e, px := j.encodeReuse(0, j.pixelBuffer())
		j.releasePixels(px)
		if e.err != nil {
			return sent, e.err
		}
		return j.emitImage(ctx, emit, e.index, e.img, sent)
	}

	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan encoded) // the encoder runs one image ahead, no more
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ready)
		px := j.pixelBuffer()
		defer func() { j.releasePixels(px) }()
		// The images of the batch that are the same memory as an earlier
		// one (RepeatImageBatch's views) reuse its encoding: kept here from
		// its first image to its last repeat, then dropped.
		last := make(map[int]int)
		for i := range n {
			last[j.images.SameAs(i)] = i
		}
		kept := make(map[int]*encodedImage)
		for i := range n {
			if ctx.Err() != nil {
				return
			}
			var e encoded
			first := j.images.SameAs(i)
			if img, ok := kept[first]; ok {
				e = encoded{index: i, img: img}
			} else {
				e, px = j.encodeReuse(i, px)
				if e.err == nil && last[first] > i {
					kept[first] = e.img
				}
			}
			if last[first] == i {
				delete(kept, first)
			}
			select {
			case ready <- e:
			case <-ctx.Done():
				return
			}
			if e.err != nil {
				return
			}
		}
	}()
	defer func() {
		cancel()
		<-done
	}()
	for e := range ready {
		if e.err != nil {
			return sent, e.err
		}
		var err error
		if sent, err = j.emitImage(ctx, emit, e.index, e.img, sent); err != nil {
			return sent, err
		}
	}
	if len(sent) < n { // the encoder stopped because ctx ended
		return sent, context.Cause(ctx)
	}
	return sent, nil
}

// pixelPool recycles the pixel buffers of converted images between Sends:
// a 2048² RGB image is 12 MiB that the garbage collector need not see again.
var pixelPool sync.Pool

// pixelBuffer returns Pixels whose buffer may be reused, or nil for a uint8
// tensor, which converts to views of its own data.
func (j *sendJob) pixelBuffer() *Pixels {
	if !j.images.copies() {
		return nil
	}
	if px, ok := pixelPool.Get().(*Pixels); ok {
		return px
	}
	return &Pixels{}
}

func (j *sendJob) releasePixels(px *Pixels) {
	if px != nil && j.images.copies() {
		pixelPool.Put(px)
	}
}

// encodeReuse converts and encodes image i, reusing px's buffer, and returns
// the pixels for the next call to reuse. The encoded bytes are never reused:
// emitted parts alias them.
func (j *sendJob) encodeReuse(i int, px *Pixels) (encoded, *Pixels) {
	px, err := j.images.Pixels(i, px)
	if err != nil {
		return encoded{index: i, err: err}, px
	}
	var buf bytes.Buffer
	if _, ok := j.enc.(*pngEncoder); !ok || j.opts.EncoderOptions.Level != LevelDefault {
		buf.Grow(len(px.Pix)/2 + 1024) // the default PNG level sizes buf itself from its sample
	}
	if err := j.enc.Encode(&buf, px); err != nil {
		return encoded{index: i, err: err}, px
	}
	return encoded{index: i, img: &encodedImage{data: buf.Bytes()}}, px
}

// emitImage splits one encoded image, emits its parts and reports progress.
// Parts of images that share an encoding alias the same bytes, which no
// emitter modifies.
func (j *sendJob) emitImage(ctx context.Context, emit Emitter, i int, img *encodedImage, sent []SentImage) ([]SentImage, error) {
	data := img.data
	h := j.header(i, protocol.RandomHex(16))
	h.SHA256 = img.sha256()
	parts, err := j.splitter.Split(h, j.label, data, j.wire)
	if err != nil {
		return sent, err
	}
	for k := range parts {
		if err := ctx.Err(); err != nil {
			return sent, context.Cause(ctx)
		}
		if err := emit.EmitPart(ctx, &parts[k]); err != nil {
			return sent, err
		}
	}
	sent = append(sent, SentImage{ImageID: h.ImageID, MIME: h.MIME, Size: int64(len(data)),
		SHA256: h.SHA256, Width: j.images.Width, Height: j.images.Height})
	if err := emit.Progress(ctx, i+1, j.images.Batch); err != nil {
		return sent, err
	}
	return sent, nil
}
