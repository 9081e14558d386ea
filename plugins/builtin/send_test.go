package builtin

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/sendimage"
)

// pixelTensor returns a [b,h,w,c] IMAGE whose element i converts to byte
// px(i) under ComfyUI's truncating conversion, and those bytes.
func pixelTensor(b, h, w, c int) (*protocol.Tensor, []byte) {
	n := b * h * w * c
	want := make([]byte, n)
	f := make([]float32, n)
	for i := range f {
		want[i] = uint8((i*37 + i/7) % 256)
		f[i] = (float32(want[i]) + 0.5) / 255 // in the middle of the byte's interval
	}
	return protocol.FromFloat32(f, b, h, w, c), want
}

// reassemble puts the emitted parts through the wire shapes a client sees
// (PART frames or base64 JSON messages) and protocol.Reassembler, and returns
// the images in batch order.
func reassemble(t *testing.T, parts []protocol.ImagePart) []*protocol.Image {
	t.Helper()
	var r protocol.Reassembler
	var out []*protocol.Image
	for i := range parts {
		p := &parts[i]
		var img *protocol.Image
		var err error
		if p.Wire == protocol.WireB64Parts {
			msg, merr := protocol.MarshalB64Part(p)
			if merr != nil {
				t.Fatal(merr)
			}
			var raw protocol.RawMessage
			if err := json.Unmarshal(msg, &raw); err != nil {
				t.Fatal(err)
			}
			img, err = r.AddB64(raw.Type, raw.Data)
		} else {
			frame, ferr := protocol.AppendPartFrame(nil, &p.PartHeader, p.Data)
			if ferr != nil {
				t.Fatal(ferr)
			}
			img, err = r.AddFrame(frame)
		}
		if err != nil {
			t.Fatalf("part %d of image %d: %v", p.Part, p.Index, err)
		}
		if img != nil {
			out = append(out, img)
		}
	}
	slices.SortFunc(out, func(a, b *protocol.Image) int { return a.Index - b.Index })
	return out
}

// decodedPixels decodes an encoded image into c interleaved 8-bit channels.
func decodedPixels(t *testing.T, data []byte, c int) (w, h int, pix []byte) {
	t.Helper()
	m, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b := m.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			n := color.NRGBAModel.Convert(m.At(x, y)).(color.NRGBA)
			pix = append(pix, []byte{n.R, n.G, n.B, n.A}[:c]...)
		}
	}
	return b.Dx(), b.Dy(), pix
}

func wantUI(t *testing.T, res plugins.Result, mimes ...string) {
	t.Helper()
	var want []any
	for _, m := range mimes {
		want = append(want, map[string]any{"source": "websocket", "content-type": m, "type": "output"})
	}
	got, _ := json.Marshal(res.UI)
	exp, _ := json.Marshal(map[string]any{"images": want})
	if !bytes.Equal(got, exp) {
		t.Fatalf("ui %s, want %s", got, exp)
	}
}

func TestSendImageOnWebSocket(t *testing.T) {
	images, want := pixelTensor(2, 5, 7, 3)
	res, em, err := run(t, "SendImageOnWebSocket", map[string]any{
		"images": images, "event": "my.images", "encoder": "png", "wire": "parts", "part_size": int64(31),
	})
	if err != nil {
		t.Fatal(err)
	}
	wantUI(t, res, "image/png", "image/png")
	if len(res.Outputs) != 0 {
		t.Fatalf("%d outputs, want none", len(res.Outputs))
	}
	for _, p := range em.parts {
		if p.Event != "my.images" || p.Wire != protocol.WireParts || p.PromptID != "prompt-1" || p.Node != "7" || p.Batch != 2 {
			t.Fatalf("part header %+v, wire %q", p.PartHeader, p.Wire)
		}
		if len(p.Data) > 30 { // part_size rounds down to a multiple of 3
			t.Fatalf("part %d holds %d bytes, over the part size 30", p.Part, len(p.Data))
		}
	}
	if len(em.parts) <= 2 {
		t.Fatalf("%d parts: the small part size did not split the images", len(em.parts))
	}
	imgs := reassemble(t, em.parts)
	if len(imgs) != 2 {
		t.Fatalf("%d images reassembled, want 2", len(imgs))
	}
	per := len(want) / 2
	for i, img := range imgs {
		if img.MIME != "image/png" {
			t.Fatalf("mime %q", img.MIME)
		}
		w, h, pix := decodedPixels(t, img.Data, 3)
		if w != 7 || h != 5 || !bytes.Equal(pix, want[i*per:(i+1)*per]) {
			t.Fatalf("image %d: %dx%d, pixels differ from the tensor's", i, w, h)
		}
	}
	if !slices.Equal(em.progress, [][2]int{{1, 2}, {2, 2}}) {
		t.Fatalf("progress %v, want 1/2 then 2/2", em.progress)
	}

	t.Run("defaults", func(t *testing.T) {
		images, _ := pixelTensor(1, 2, 2, 3)
		_, em, err := run(t, "SendImageOnWebSocket", map[string]any{"images": images})
		if err != nil {
			t.Fatal(err)
		}
		if len(em.parts) != 1 || em.parts[0].Event != DefaultEvent || em.parts[0].Wire != protocol.WireParts || em.parts[0].MIME != "image/png" {
			t.Fatalf("parts %+v", em.parts)
		}
	})
	t.Run("RGBA", func(t *testing.T) {
		images, want := pixelTensor(1, 3, 4, 4)
		_, em, err := run(t, "SendImageOnWebSocket", map[string]any{"images": images, "wire": "b64parts"})
		if err != nil {
			t.Fatal(err)
		}
		imgs := reassemble(t, em.parts)
		if _, _, pix := decodedPixels(t, imgs[0].Data, 4); !bytes.Equal(pix, want) {
			t.Fatal("RGBA pixels differ from the tensor's")
		}
		if imgs[0].Label != "7" {
			t.Fatalf("label %q, want the node id", imgs[0].Label)
		}
	})
	t.Run("jpeg", func(t *testing.T) {
		images, _ := pixelTensor(1, 8, 8, 3)
		res, em, err := run(t, "SendImageOnWebSocket", map[string]any{"images": images, "encoder": "jpeg", "quality": int64(50), "wire": "comfy"})
		if err != nil {
			t.Fatal(err)
		}
		wantUI(t, res, "image/jpeg")
		imgs := reassemble(t, em.parts)
		if _, err := jpeg.Decode(bytes.NewReader(imgs[0].Data)); err != nil || em.parts[0].Wire != protocol.WireComfy {
			t.Fatalf("not a JPEG on the comfy wire: %v", err)
		}
	})
	t.Run("custom registry", func(t *testing.T) {
		reg := sendimage.Default.Clone()
		reg.Register("png-copy", func(o sendimage.EncoderOptions) (sendimage.Encoder, error) {
			return sendimage.NewEncoder("png", o)
		})
		n := nodeOf(t, NewPack(Options{Registry: reg}), "SendImageOnWebSocket")
		enc := n.Spec().Inputs[2]
		if enc.Name != "encoder" || !slices.Contains(enc.Choices, "png-copy") {
			t.Fatalf("encoder choices %v lack the registered encoder", enc.Choices)
		}
		images, _ := pixelTensor(1, 2, 2, 3)
		if _, _, err := runWith(t, n, map[string]any{"images": images, "encoder": "png-copy"}, plugins.Limits{}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestETNSendImageWebSocket(t *testing.T) {
	images, want := pixelTensor(3, 4, 5, 3)
	res, em, err := run(t, "ETN_SendImageWebSocket", map[string]any{"images": images, "format": "PNG"})
	if err != nil {
		t.Fatal(err)
	}
	wantUI(t, res, "image/png", "image/png", "image/png")
	if len(em.parts) != 3 {
		t.Fatalf("%d parts, want one whole image each", len(em.parts))
	}
	for _, p := range em.parts {
		if p.Wire != protocol.WireComfy || p.Event != EventETN || p.Parts != 1 {
			t.Fatalf("part %+v on wire %q", p.PartHeader, p.Wire)
		}
	}
	per := len(want) / 3
	for i, img := range reassemble(t, em.parts) {
		if _, _, pix := decodedPixels(t, img.Data, 3); !bytes.Equal(pix, want[i*per:(i+1)*per]) {
			t.Fatalf("image %d pixels differ from the tensor's", i)
		}
	}
	if len(em.progress) != 3 {
		t.Fatalf("progress %v, want one report per image", em.progress)
	}

	t.Run("JPEG", func(t *testing.T) {
		res, em, err := run(t, "ETN_SendImageWebSocket", map[string]any{"images": images, "format": "JPEG"})
		if err != nil {
			t.Fatal(err)
		}
		wantUI(t, res, "image/jpeg", "image/jpeg", "image/jpeg")
		if em.parts[0].MIME != "image/jpeg" {
			t.Fatalf("mime %q", em.parts[0].MIME)
		}
	})
	t.Run("webp and raw", func(t *testing.T) {
		for format, mime := range map[string]string{"WEBP": "image/webp", "RAW": "image/x-portable-anymap"} {
			res, em, err := run(t, "ETN_SendImageWebSocket", map[string]any{"images": images, "format": format})
			if err != nil {
				t.Fatal(err)
			}
			wantUI(t, res, mime, mime, mime)
			if em.parts[0].MIME != mime {
				t.Fatalf("%s: mime %q", format, em.parts[0].MIME)
			}
		}
	})
	t.Run("bad format", func(t *testing.T) {
		_, _, err := run(t, "ETN_SendImageWebSocket", map[string]any{"images": images, "format": "GIF"})
		if !errors.Is(err, plugins.ErrInput) {
			t.Fatalf("err = %v, want ErrInput", err)
		}
	})
}

func TestSaveImageWebsocket(t *testing.T) {
	images, want := pixelTensor(1, 6, 3, 3)
	res, em, err := run(t, "SaveImageWebsocket", map[string]any{"images": images})
	if err != nil {
		t.Fatal(err)
	}
	if res.UI != nil || len(res.Outputs) != 0 {
		t.Fatalf("result %+v, want no outputs and no ui", res)
	}
	if len(em.parts) != 1 || em.parts[0].Wire != protocol.WireComfy || em.parts[0].MIME != "image/png" {
		t.Fatalf("parts %+v", em.parts)
	}
	if _, err := png.Decode(bytes.NewReader(em.parts[0].Data)); err != nil {
		t.Fatal(err)
	}
	if _, _, pix := decodedPixels(t, reassemble(t, em.parts)[0].Data, 3); !bytes.Equal(pix, want) {
		t.Fatal("pixels differ from the tensor's")
	}
}

func TestNTLSendImagesWebSocket(t *testing.T) {
	images, want := pixelTensor(2, 9, 11, 3)
	for _, class := range []string{"NTL_SendImageWebSocket", "NTL_SendImagesWebSocket"} {
		for _, partlen := range []int64{40, 43} {
			t.Run(class, func(t *testing.T) {
				res, em, err := run(t, class, map[string]any{"images": images, "nodelabel": "left", "partlen": partlen})
				if err != nil {
					t.Fatal(err)
				}
				wantUI(t, res, "image/png", "image/png")
				// Do what the ntlb64part client does: group part_b64 by
				// nodelabel, img_idx and part_idx, join, decode once.
				joined := map[int]map[int]string{}
				for _, p := range em.parts {
					msg, err := protocol.MarshalB64Part(&p)
					if err != nil {
						t.Fatal(err)
					}
					var m struct {
						Type string               `json:"type"`
						Data protocol.B64PartData `json:"data"`
					}
					if err := json.Unmarshal(msg, &m); err != nil {
						t.Fatal(err)
					}
					if m.Type != EventNTL || m.Data.NodeLabel != "left" || p.Wire != protocol.WireB64Parts {
						t.Fatalf("message type %q label %q wire %q", m.Type, m.Data.NodeLabel, p.Wire)
					}
					n := len(m.Data.PartB64)
					if int64(n) > partlen {
						t.Fatalf("part_b64 of %d characters, over partlen %d", n, partlen)
					}
					if m.Data.PartIdx < m.Data.PartCount-1 && n != int(partlen/4*4) {
						t.Fatalf("part %d of %d has %d characters, want %d", m.Data.PartIdx, m.Data.PartCount, n, partlen/4*4)
					}
					if joined[m.Data.ImgIdx] == nil {
						joined[m.Data.ImgIdx] = map[int]string{}
					}
					joined[m.Data.ImgIdx][m.Data.PartIdx] = m.Data.PartB64
				}
				per := len(want) / 2
				for i := range 2 {
					var b strings.Builder
					for k := range len(joined[i]) {
						b.WriteString(joined[i][k])
					}
					data, err := base64.StdEncoding.DecodeString(b.String())
					if err != nil {
						t.Fatalf("image %d: joined parts are not base64: %v", i, err)
					}
					if _, _, pix := decodedPixels(t, data, 3); !bytes.Equal(pix, want[i*per:(i+1)*per]) {
						t.Fatalf("image %d pixels differ from the tensor's", i)
					}
				}
				if len(reassemble(t, em.parts)) != 2 {
					t.Fatal("the Reassembler did not get both images")
				}
			})
		}
	}

	t.Run("default partlen and label", func(t *testing.T) {
		_, em, err := run(t, "NTL_SendImageWebSocket", map[string]any{"images": images})
		if err != nil {
			t.Fatal(err)
		}
		if len(em.parts) != 2 || em.parts[0].Label != "7" || em.parts[0].Event != EventNTL {
			t.Fatalf("parts %+v", em.parts)
		}
	})
	t.Run("partlen below 4", func(t *testing.T) {
		_, em, err := run(t, "NTL_SendImagesWebSocket", map[string]any{"images": images, "partlen": int64(3)})
		var pe *PartLenError
		if !errors.As(err, &pe) || pe.PartLen != 3 || len(em.parts) != 0 {
			t.Fatalf("err = %v, want a PartLenError and no parts", err)
		}
	})
	t.Run("partlen over the message limit", func(t *testing.T) {
		_, em, err := runWith(t, node(t, "NTL_SendImagesWebSocket"),
			map[string]any{"images": images, "nodelabel": "x", "partlen": int64(4000)},
			plugins.Limits{MessageLimit: 2000})
		var pe *PartLenError
		var le *protocol.LimitError
		if !errors.As(err, &pe) || !errors.As(err, &le) || len(em.parts) != 0 {
			t.Fatalf("err = %v, want a PartLenError wrapping a LimitError, and no parts", err)
		}
		if !strings.Contains(err.Error(), "2000") || pe.ExceptionType() != "ValueError" {
			t.Fatalf("message %q does not name the message limit", err)
		}
		// The partlen it suggests must work.
		fits, err := suggestedPartLen(err.Error())
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := runWith(t, node(t, "NTL_SendImagesWebSocket"),
			map[string]any{"images": images, "nodelabel": "x", "partlen": fits},
			plugins.Limits{MessageLimit: 2000}); err != nil {
			t.Fatalf("the suggested partlen %d fails: %v", fits, err)
		}
	})
}

// suggestedPartLen reads the number after "the largest partlen that fits is ".
func suggestedPartLen(msg string) (int64, error) {
	const key = "the largest partlen that fits is "
	i := strings.Index(msg, key)
	if i < 0 {
		return 0, errors.New("no suggestion in " + msg)
	}
	var n int64
	_, err := fmt.Sscanf(msg[i+len(key):], "%d", &n)
	return n, err
}

func TestSendersRefuse(t *testing.T) {
	good, _ := pixelTensor(1, 4, 4, 3)
	nan := imageTensor(1, 2, 2, 3, func(i int) float32 {
		if i == 5 {
			return float32(math.NaN())
		}
		return 0.5
	})
	big := &protocol.Tensor{DType: protocol.Float32, Shape: []int{1, 16385, 1, 3}, Data: make([]byte, 16385*3*4)}
	type row struct {
		name   string
		class  string
		inputs map[string]any
		limits plugins.Limits
		check  func(*testing.T, error)
	}
	is := func(target error) func(*testing.T, error) {
		return func(t *testing.T, err error) {
			t.Helper()
			if !errors.Is(err, target) {
				t.Fatalf("err = %v, want %v", err, target)
			}
		}
	}
	rows := []row{
		{"event with a space", "SendImageOnWebSocket", map[string]any{"images": good, "event": "my images"}, plugins.Limits{}, func(t *testing.T, err error) {
			var ee *protocol.EventNameError
			if !errors.As(err, &ee) || ee.Name != "my images" {
				t.Fatalf("err = %v, want an EventNameError", err)
			}
		}},
		{"event is a ComfyUI type", "SendImageOnWebSocket", map[string]any{"images": good, "event": "executing"}, plugins.Limits{}, is(protocol.ErrEventName)},
		{"empty event", "SendImageOnWebSocket", map[string]any{"images": good, "event": ""}, plugins.Limits{}, is(protocol.ErrEventName)},
		{"unknown encoder", "SendImageOnWebSocket", map[string]any{"images": good, "encoder": "gif"}, plugins.Limits{}, func(t *testing.T, err error) {
			var ue *sendimage.UnknownEncoderError
			if !errors.As(err, &ue) || ue.Name != "gif" {
				t.Fatalf("err = %v, want an UnknownEncoderError", err)
			}
		}},
		{"unknown wire", "SendImageOnWebSocket", map[string]any{"images": good, "wire": "smoke"}, plugins.Limits{}, is(plugins.ErrInput)},
		{"negative part size", "SendImageOnWebSocket", map[string]any{"images": good, "part_size": int64(-1)}, plugins.Limits{}, is(plugins.ErrInput)},
		{"part size over the message limit", "SendImageOnWebSocket", map[string]any{"images": good, "part_size": int64(5000)}, plugins.Limits{MessageLimit: 4096}, is(protocol.ErrLimit)},
		{"message limit too small for any part", "SendImageOnWebSocket", map[string]any{"images": good}, plugins.Limits{MessageLimit: 100}, is(protocol.ErrLimit)},
		{"quality out of range", "SendImageOnWebSocket", map[string]any{"images": good, "encoder": "jpeg", "quality": int64(0)}, plugins.Limits{}, is(plugins.ErrInput)},
	}
	for _, class := range []string{"SendImageOnWebSocket", "ETN_SendImageWebSocket", "SaveImageWebsocket", "NTL_SendImageWebSocket", "NTL_SendImagesWebSocket"} {
		rows = append(rows,
			row{"NaN/" + class, class, map[string]any{"images": nan}, plugins.Limits{}, func(t *testing.T, err error) {
				var ne *protocol.NonFiniteError
				if !errors.As(err, &ne) || ne.Index != 5 {
					t.Fatalf("err = %v, want a NonFiniteError at 5", err)
				}
			}},
			row{"missing images/" + class, class, map[string]any{}, plugins.Limits{}, is(plugins.ErrInput)},
			row{"images not a tensor/" + class, class, map[string]any{"images": "x"}, plugins.Limits{}, is(plugins.ErrInput)},
			row{"over the image limit/" + class, class, map[string]any{"images": big}, plugins.Limits{}, is(protocol.ErrLimit)},
			row{"lying shape/" + class, class, map[string]any{"images": &protocol.Tensor{DType: protocol.Float32, Shape: []int{1, 4, 4, 3}, Data: make([]byte, 12)}}, plugins.Limits{}, is(protocol.ErrShape)},
			row{"two channels/" + class, class, map[string]any{"images": protocol.NewFloat32(1, 2, 2, 2)}, plugins.Limits{}, is(protocol.ErrShape)},
		)
	}
	for _, c := range rows {
		t.Run(c.name, func(t *testing.T) {
			_, em, err := runWith(t, node(t, c.class), c.inputs, c.limits)
			if err == nil {
				t.Fatal("no error")
			}
			c.check(t, err)
			if len(em.parts) != 0 {
				t.Fatalf("%d parts emitted before the error", len(em.parts))
			}
		})
	}
}

func TestSpecs(t *testing.T) {
	p := Pack()
	if p.Name != "builtin" {
		t.Fatalf("pack name %q", p.Name)
	}
	want := []string{
		"LoadImage", "EmptyImage", "RepeatImageBatch", "ImageBatch",
		"ETN_LoadImageBase64", "ETN_LoadMaskBase64", "NTL_LoadImageBase64", "NTL_LoadMaskBase64", "NTL_LoadImagesBase64",
		"SendImageOnWebSocket", "ETN_SendImageWebSocket", "SaveImageWebsocket", "NTL_SendImageWebSocket", "NTL_SendImagesWebSocket",
		"SaveImage", "PreviewImage",
	}
	var got []string
	for _, n := range p.Nodes {
		s := n.Spec()
		got = append(got, s.ClassType)
		sender := strings.Contains(s.ClassType, "Send") || strings.HasPrefix(s.ClassType, "Save") || s.ClassType == "PreviewImage"
		if s.OutputNode != sender {
			t.Errorf("%s: OutputNode %v", s.ClassType, s.OutputNode)
		}
		if s.DisplayName == "" || s.Category == "" || s.Description == "" {
			t.Errorf("%s: display name, category or description missing", s.ClassType)
		}
		if !sender && len(s.Outputs) == 0 {
			t.Errorf("%s: no outputs", s.ClassType)
		}
		for _, in := range s.Inputs {
			if in.Type == plugins.TypeCombo && s.ClassType != "LoadImage" {
				if def, _ := in.Options["default"].(string); !slices.Contains(in.Choices, def) {
					t.Errorf("%s.%s: default %q not among %v", s.ClassType, in.Name, def, in.Choices)
				}
			}
			if in.Type == plugins.TypeInt {
				def, lo, hi := in.Options["default"].(int64), in.Options["min"].(int64), in.Options["max"].(int64)
				if def < lo || def > hi {
					t.Errorf("%s.%s: default %d outside %d..%d", s.ClassType, in.Name, def, lo, hi)
				}
			}
			if in.Options["tooltip"] == nil && !plugins.IsHidden(in) {
				t.Errorf("%s.%s: no tooltip", s.ClassType, in.Name)
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("classes %v, want %v", got, want)
	}
	enc := node(t, "SendImageOnWebSocket").Spec().Inputs[2]
	if !slices.Equal(enc.Choices, sendimage.Names()) {
		t.Fatalf("encoder choices %v, want the registry's %v", enc.Choices, sendimage.Names())
	}
}
