package sendimage

import (
	"bytes"
	"errors"
	"image"
	"io"
	"slices"
	"strings"
	"testing"
)

// bareEncoder is a custom encoder: the bare pixels.
type bareEncoder struct{}

func (bareEncoder) Name() string      { return "raw" }
func (bareEncoder) MIME() string      { return "application/octet-stream" }
func (bareEncoder) Extension() string { return ".raw" }
func (bareEncoder) Encode(w io.Writer, m image.Image) error {
	p := FromImage(m)
	if err := p.Validate(); err != nil {
		return err
	}
	_, err := w.Write(p.Pix)
	return err
}

func newRaw(EncoderOptions) (Encoder, error) { return bareEncoder{}, nil }

func TestRegistryPanicsOnBadRegistration(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    EncoderFactory
		want string
	}{
		{"", newRaw, "bad encoder name"},
		{"has space", newRaw, "bad encoder name"},
		{strings.Repeat("x", 33), newRaw, "bad encoder name"},
		{"raw", nil, "nil factory"},
		{"png", newRaw, "registered twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Registry{}
			r.Register("png", newPNGEncoder)
			defer func() {
				msg, _ := recover().(string)
				if !strings.Contains(msg, tc.want) {
					t.Fatalf("panic %q, want one containing %q", msg, tc.want)
				}
			}()
			r.Register(tc.name, tc.f)
		})
	}
}

func TestRegistryLookup(t *testing.T) {
	var r Registry // the zero value works
	if names := r.Names(); len(names) != 0 {
		t.Fatalf("empty registry lists %v", names)
	}
	for _, n := range []string{"zeta", "raw", "alpha"} {
		r.Register(n, newRaw)
	}
	if got := r.Names(); !slices.Equal(got, []string{"alpha", "raw", "zeta"}) {
		t.Errorf("Names() = %v", got)
	}
	_, err := r.Lookup("webp")
	var u *UnknownEncoderError
	if !errors.As(err, &u) || !errors.Is(err, ErrUnknownEncoder) || u.Name != "webp" ||
		!slices.Equal(u.Known, []string{"alpha", "raw", "zeta"}) || !strings.Contains(err.Error(), "alpha, raw, zeta") {
		t.Fatalf("Lookup(webp): %v", err)
	}
	e, err := r.New("raw", EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := e.Encode(&buf, &Pixels{W: 2, H: 1, C: 1, Pix: []byte{7, 9}}); err != nil || buf.String() != "\x07\x09" {
		t.Fatalf("raw encode: %q %v", buf.String(), err)
	}
	if _, err := r.New("", EncoderOptions{}); !errors.Is(err, ErrUnknownEncoder) {
		t.Errorf(`New("") without png: %v`, err)
	}
}

func TestDefaultRegistry(t *testing.T) {
	if got := Names(); !slices.Equal(got, []string{"bmp", "jpeg", "png", "raw", "tiff", "webp", "webp-lossless"}) {
		t.Errorf("Names() = %v", got)
	}
	if f, err := Lookup("png"); err != nil || f == nil {
		t.Fatal(err)
	}
	e, err := NewEncoder("", EncoderOptions{})
	if err != nil || e.Name() != DefaultEncoder {
		t.Fatalf("default encoder %v %v", e, err)
	}
	c := Default.Clone()
	c.Register("bare", newRaw)
	if _, err := Lookup("bare"); err == nil {
		t.Error("registering in a clone changed Default")
	}
	if _, err := c.Lookup("png"); err != nil {
		t.Error("clone lost png")
	}
}
