package builtin

import (
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/nodecast/nodecast/internal/testimage"
	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// BenchmarkLoadImageBase64 measures base64 decoding, PNG decoding and the
// conversion to IMAGE and MASK tensors; SetBytes counts the pixels' RGBA bytes.
func BenchmarkLoadImageBase64(b *testing.B) {
	const side = 1024
	input := b64(encodePNG(b, testimage.PhotoLike(side, side)))
	n := node(b, "ETN_LoadImageBase64")
	b.SetBytes(side * side * 4)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := runWith(b, n, map[string]any{"image": input}, plugins.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkImageBatchResize measures ImageBatch resizing a 2048² RGB image
// to 1024²; SetBytes counts the float32 bytes read.
func BenchmarkImageBatchResize(b *testing.B) {
	small := protocol.NewFloat32(1, 1024, 1024, 3)
	big := imageTensor(1, 2048, 2048, 3, func(i int) float32 { return float32(i%255) / 255 })
	n := node(b, "ImageBatch")
	b.SetBytes(int64(len(big.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := runWith(b, n, map[string]any{"image1": small, "image2": big}, plugins.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRepeatImageBatch measures RepeatImageBatch(4) of a 2048² 8-bit
// image: a view, so the figure is per batch and SetBytes counts the batch's
// bytes as a copy would have moved them.
func BenchmarkRepeatImageBatch(b *testing.B) {
	img := protocol.FromUnorm8(make([]byte, 2048*2048*3), 1, 2048, 2048, 3)
	n := node(b, "RepeatImageBatch")
	b.SetBytes(4 * int64(len(img.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := runWith(b, n, map[string]any{"image": img, "amount": int64(4)}, plugins.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPromptInProcess runs the prompt, LoadImage(photo) ->
// RepeatImageBatch(n) -> sender, in process for each sender, at 4×2048² and
// 8×1024² (NODECAST_PHOTO_1024/2048 name real photos; otherwise photo-like
// ones are made). SetBytes counts the batch's RGB bytes.
func BenchmarkPromptInProcess(b *testing.B) {
	for _, size := range []struct{ side, n int }{{2048, 4}, {1024, 8}} {
		dir := b.TempDir()
		b.Setenv(plugins.InputDirEnv, dir)
		p := filepath.Join(dir, "photo.png")
		if err := os.WriteFile(p, testimage.PhotoPNG(b, size.side, png.DefaultCompression), 0o644); err != nil {
			b.Fatal(err)
		}
		load, repeat := node(b, "LoadImage"), node(b, "RepeatImageBatch")
		for _, class := range []string{"ETN_SendImageWebSocket", "SaveImageWebsocket", "SendImageOnWebSocket", "NTL_SendImagesWebSocket"} {
			send := node(b, class)
			b.Run(fmt.Sprintf("%s/%dx%d", class, size.n, size.side), func(b *testing.B) {
				b.SetBytes(int64(size.n * size.side * size.side * 3))
				b.ReportAllocs()
				for b.Loop() {
					res, _, err := runWith(b, load, map[string]any{"image": "photo.png"}, plugins.Limits{})
					if err != nil {
						b.Fatal(err)
					}
					res, _, err = runWith(b, repeat, map[string]any{"image": res.Outputs[0], "amount": int64(size.n)}, plugins.Limits{})
					if err != nil {
						b.Fatal(err)
					}
					if _, _, err := runWith(b, send, map[string]any{"images": res.Outputs[0], "event": "bench"}, plugins.Limits{}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSendDistinct measures the ETN sender alone on batches of the
// photo: "repeated" is RepeatImageBatch's view (the image encoded once,
// sent n times), "distinct" the same batch made Writable, so each image is
// its own memory and is encoded on its own: the general encode speed.
// SetBytes counts the batch's RGB bytes.
func BenchmarkSendDistinct(b *testing.B) {
	for _, size := range []struct{ side, n int }{{2048, 4}, {1024, 8}} {
		dir := b.TempDir()
		b.Setenv(plugins.InputDirEnv, dir)
		if err := os.WriteFile(filepath.Join(dir, "photo.png"), testimage.PhotoPNG(b, size.side, png.DefaultCompression), 0o644); err != nil {
			b.Fatal(err)
		}
		res, _, err := runWith(b, node(b, "LoadImage"), map[string]any{"image": "photo.png"}, plugins.Limits{})
		if err != nil {
			b.Fatal(err)
		}
		res, _, err = runWith(b, node(b, "RepeatImageBatch"), map[string]any{"image": res.Outputs[0], "amount": int64(size.n)}, plugins.Limits{})
		if err != nil {
			b.Fatal(err)
		}
		repeated := res.Outputs[0].(*protocol.Tensor)
		distinct := &protocol.Tensor{DType: repeated.DType, Shape: repeated.Shape, Items: repeated.Items}
		distinct.Writable()
		send := node(b, "ETN_SendImageWebSocket")
		for _, c := range []struct {
			name string
			t    *protocol.Tensor
		}{{"repeated", repeated}, {"distinct", distinct}} {
			b.Run(fmt.Sprintf("%s/%dx%d", c.name, size.n, size.side), func(b *testing.B) {
				b.SetBytes(int64(size.n * size.side * size.side * 3))
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := runWith(b, send, map[string]any{"images": c.t}, plugins.Limits{}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
