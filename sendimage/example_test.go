package sendimage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"

	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/sendimage"
)

// ppmEncoder is a custom encoder: binary PPM, the simplest RGB format.
type ppmEncoder struct{}

func (ppmEncoder) Name() string      { return "ppm" }
func (ppmEncoder) MIME() string      { return "image/x-portable-pixmap" }
func (ppmEncoder) Extension() string { return ".ppm" }

func (ppmEncoder) Encode(w io.Writer, m image.Image) error {
	p := sendimage.FromImage(m)
	if err := p.Validate(); err != nil {
		return err // checked before the first byte
	}
	if p.C != 3 {
		return fmt.Errorf("ppm: want RGB, got %d channels", p.C)
	}
	if _, err := fmt.Fprintf(w, "P6 %d %d 255\n", p.W, p.H); err != nil {
		return err
	}
	_, err := w.Write(p.Pix)
	return err
}

// A host adds its own encoder to a copy of the default registry, and looks
// encoders up by the name a node input gives.
func Example_registry() {
	reg := sendimage.Default.Clone()
	reg.Register("ppm", func(sendimage.EncoderOptions) (sendimage.Encoder, error) { return ppmEncoder{}, nil })
	fmt.Println(reg.Names())

	enc, err := reg.New("ppm", sendimage.EncoderOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	var buf bytes.Buffer
	px := &sendimage.Pixels{W: 2, H: 1, C: 3, Pix: []byte{255, 0, 0, 0, 0, 255}}
	if err := enc.Encode(&buf, px); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s %q\n", enc.MIME(), buf.String())

	_, err = reg.New("avif", sendimage.EncoderOptions{})
	fmt.Println(errors.Is(err, sendimage.ErrUnknownEncoder))
	fmt.Println(err)
	// Output:
	// [bmp jpeg png ppm raw tiff webp webp-lossless]
	// image/x-portable-pixmap "P6 2 1 255\n\xff\x00\x00\x00\x00\xff"
	// true
	// sendimage: unknown encoder "avif" (known: bmp, jpeg, png, ppm, raw, tiff, webp, webp-lossless)
}

// printer is an Emitter that prints what a sender node would hand the host.
type printer struct{}

func (printer) EmitPart(_ context.Context, p *protocol.ImagePart) error {
	fmt.Printf("part %d/%d of image %d: %d bytes of %s, %d in all\n", p.Part+1, p.Parts, p.Index, len(p.Data), p.MIME, p.Size)
	return nil
}

func (printer) Progress(_ context.Context, value, max int) error {
	fmt.Printf("progress %d/%d\n", value, max)
	return nil
}

// Send converts, encodes and emits a batch; here one 64×64 gray image cut
// into parts of at most 1500 bytes, stored without compression.
func ExampleSend() {
	images := protocol.NewFloat32(1, 64, 64, 1) // black
	sent, err := sendimage.Send(context.Background(), images, sendimage.SendOptions{
		Event: "my_images", PartSize: 1500, Node: "12", PromptID: "p1",
		EncoderOptions: sendimage.EncoderOptions{Level: sendimage.LevelNone},
	}, printer{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sent[0].Width, sent[0].Height, sent[0].Size)
	// Output:
	// part 1/3 of image 0: 1500 bytes of image/png, 4230 in all
	// part 2/3 of image 0: 1500 bytes of image/png, 4230 in all
	// part 3/3 of image 0: 1230 bytes of image/png, 4230 in all
	// progress 1/1
	// 64 64 4230
}

// ImageToTensor and the PNG encoder are inverse: a loaded image sends back
// unchanged.
func ExampleImageToTensor() {
	src := image.NewNRGBA(image.Rect(0, 0, 2, 1))
	copy(src.Pix, []byte{10, 20, 30, 255, 200, 100, 0, 128})
	t, _ := sendimage.ImageToTensor(src, true)
	px, _ := sendimage.ToPixels(t, 0, sendimage.ConvertOptions{})
	var buf bytes.Buffer
	enc, _ := sendimage.NewEncoder("png", sendimage.EncoderOptions{})
	_ = enc.Encode(&buf, px)
	m, _ := png.Decode(&buf)
	fmt.Println(t.Shape, m.(*image.NRGBA).Pix)
	fmt.Println(sendimage.AlphaMask(src).Float32s())
	// Output:
	// [1 1 2 4] [10 20 30 255 200 100 0 128]
	// [0 0.4980392]
}
