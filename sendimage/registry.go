package sendimage

import (
	"image"
	"io"
	"slices"
	"strconv"
	"sync"
)

// Encoder turns an image into the bytes of one file format. Encode checks
// its input before it writes the first byte, so a refused image leaves w
// untouched, and does not keep m after it returns (callers reuse pixel
// buffers). Encoders are safe for concurrent use.
type Encoder interface {
	Name() string      // registry name, e.g. "png"
	MIME() string      // e.g. "image/png"
	Extension() string // with the dot, e.g. ".png"
	Encode(w io.Writer, m image.Image) error
}

// EncoderOptions tune an encoder. The zero value gives each encoder's
// defaults; an encoder ignores the fields that do not apply to it.
type EncoderOptions struct {
	// Quality is JPEG and lossy WebP quality, 1..100. 0 means 95 for JPEG,
	// the quality ETN's ETN_SendImageWebSocket uses, and 90 for WebP, what
	// ComfyUI's /view previews use.
	Quality int
	// Level is the PNG compression level. 0 (LevelDefault) picks level 1 or
	// Huffman-only per image, by a sample.
	Level Level
	// Workers is how many goroutines compress one large PNG in parallel
	// stripes. 0 means GOMAXPROCS; 1 compresses serially.
	Workers int
}

// EncoderFactory makes an Encoder from options, or reports an *OptionError.
type EncoderFactory func(opts EncoderOptions) (Encoder, error)

// Registry maps encoder names to factories. The zero value is an empty
// registry ready to use; Default holds the built-in encoders.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]EncoderFactory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// Default is the registry that the package-level functions use, with the
// built-in encoders: png, jpeg, bmp, tiff, webp (lossy), webp-lossless and
// raw (netpbm PPM, PGM or PAM).
var Default = NewRegistry()

// DefaultEncoder is the encoder used when none is named.
const DefaultEncoder = "png"

// Register adds an encoder factory under name. Registration happens at init,
// so mistakes panic: an empty or malformed name (want [A-Za-z0-9_.+-]{1,32}),
// a nil factory, or a name that is already taken.
func (r *Registry) Register(name string, f EncoderFactory) {
	if !validEncoderName(name) {
		panic("sendimage: Register: bad encoder name " + quote(name) + " (want [A-Za-z0-9_.+-]{1,32})")
	}
	if f == nil {
		panic("sendimage: Register: nil factory for encoder " + quote(name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.factories[name]; dup {
		panic("sendimage: Register: encoder " + quote(name) + " registered twice")
	}
	if r.factories == nil {
		r.factories = make(map[string]EncoderFactory)
	}
	r.factories[name] = f
}

// Lookup returns the factory registered under name, or an
// *UnknownEncoderError listing the known names.
func (r *Registry) Lookup(name string) (EncoderFactory, error) {
	r.mu.RLock()
	f, ok := r.factories[name]
	r.mu.RUnlock()
	if !ok {
		return nil, &UnknownEncoderError{Name: name, Known: r.Names()}
	}
	return f, nil
}

// New looks up name ("" means DefaultEncoder) and makes an encoder with opts.
func (r *Registry) New(name string, opts EncoderOptions) (Encoder, error) {
	if name == "" {
		name = DefaultEncoder
	}
	f, err := r.Lookup(name)
	if err != nil {
		return nil, err
	}
	return f(opts)
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.factories))
	for n := range r.factories {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Clone returns a new registry with the same entries, so a host can add its
// own encoders without touching Default.
func (r *Registry) Clone() *Registry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c := &Registry{factories: make(map[string]EncoderFactory, len(r.factories))}
	for n, f := range r.factories {
		c.factories[n] = f
	}
	return c
}

// Register adds an encoder to Default; see Registry.Register.
func Register(name string, f EncoderFactory) { Default.Register(name, f) }

// Lookup finds an encoder in Default; see Registry.Lookup.
func Lookup(name string) (EncoderFactory, error) { return Default.Lookup(name) }

// NewEncoder makes an encoder from Default; see Registry.New.
func NewEncoder(name string, opts EncoderOptions) (Encoder, error) { return Default.New(name, opts) }

// Names lists Default's encoders, sorted.
func Names() []string { return Default.Names() }

func validEncoderName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '+' || c == '-') {
			return false
		}
	}
	return true
}

// quote shortens and quotes a name for a panic message.
func quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)
}

func init() {
	Default.Register("png", newPNGEncoder)
	Default.Register("jpeg", newJPEGEncoder)
	Default.Register("bmp", newBMPEncoder)
	Default.Register("tiff", newTIFFEncoder)
	Default.Register("webp", newWebPEncoder)
	Default.Register("webp-lossless", newWebPLosslessEncoder)
	Default.Register("raw", newRawEncoder)
}
