package api_test

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/host/api"
	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/sendimage"
)

// TestModelRoutes checks the shapes of ComfyUI's model routes (server.py
// list_model_types, get_models, get_embeddings): JSON lists, and a bare 404
// for a folder the server does not have. nodecast has no model folders.
func TestModelRoutes(t *testing.T) {
	e := newEnv(t, api.Options{}, executor.Options{})
	for _, prefix := range []string{"", "/api"} {
		for _, p := range []string{"/models", "/embeddings"} {
			resp, err := e.srv.Client().Get(e.srv.URL + prefix + p)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			err = json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if resp.StatusCode != 200 || err != nil || got == nil || len(got) != 0 {
				t.Errorf("%s%s: %d %v %v, want 200 and an empty list", prefix, p, resp.StatusCode, got, err)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("%s%s: Content-Type %q", prefix, p, ct)
			}
		}
		for _, folder := range []string{"checkpoints", "loras", "embeddings", "nope"} {
			code, raw := e.do(t, "GET", prefix+"/models/"+folder, "", nil, nil)
			if code != http.StatusNotFound || len(raw) != 0 {
				t.Errorf("%s/models/%s: %d %q, want 404 without a body", prefix, folder, code, raw)
			}
		}
	}
}

// writePNG writes an RGB image whose pixel (x, y) is (x*16, y*16, 100+x),
// with a tEXt and an iTXt chunk, as SaveImage stores prompt and workflow.
func writePNG(t *testing.T, path string, w, h int) *sendimage.Pixels {
	t.Helper()
	p := sendimage.NewPixels(w, h, 3)
	for y := range h {
		for x := range w {
			i := (y*w + x) * 3
			p.Pix[i], p.Pix[i+1], p.Pix[i+2] = byte(x*16), byte(y*16), byte(100+x)
		}
	}
	enc, err := sendimage.NewEncoder("png", sendimage.EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	text := []sendimage.TextChunk{{Keyword: "prompt", Text: `{"1":{}}`}, {Keyword: "workflow", Text: "ünïcödé ✓"}}
	if err := enc.(sendimage.TextEncoder).EncodeText(&b, p, text); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// maskPNG is a w×h NRGBA mask whose alpha at (x, y) is x*30+y.
func maskPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.SetNRGBA(x, y, color.NRGBA{0, 0, 0, uint8(x*30 + y)})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestUploadMask: ComfyUI's server.py upload_mask: the original named by
// original_ref, converted to RGBA, gets the mask's alpha channel and is
// saved as PNG (with the original's text chunks) under the upload's name;
// the answer is image_upload's {"name","subfolder","type"}.
func TestUploadMask(t *testing.T) {
	e := newEnv(t, api.Options{Limits: protocol.ImageLimits{MaxPixels: 1000}, MaxUploadBytes: 64 << 10}, executor.Options{})
	orig := writePNG(t, filepath.Join(e.output, "orig.png"), 8, 6)
	writePNG(t, filepath.Join(e.input, "pets", "cat.png"), 8, 6)
	writePNG(t, filepath.Join(e.output, "huge.png"), 40, 40) // over the 1000-pixel limit

	check := func(t *testing.T, file string, wantAlpha func(x, y int) uint8) {
		t.Helper()
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		m, err := png.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		n, ok := m.(*image.NRGBA)
		if !ok || m.Bounds().Dx() != 8 || m.Bounds().Dy() != 6 {
			t.Fatalf("stored %T %v, want an 8x6 RGBA PNG", m, m.Bounds())
		}
		for y := range 6 {
			for x := range 8 {
				got := n.NRGBAAt(x, y)
				i := (y*8 + x) * 3
				want := color.NRGBA{orig.Pix[i], orig.Pix[i+1], orig.Pix[i+2], wantAlpha(x, y)}
				if got != want {
					t.Fatalf("pixel (%d,%d) = %v, want %v", x, y, got, want)
				}
			}
		}
		// The original's text chunks, as Pillow's PngInfo copies them.
		for _, chunk := range []string{"tEXtprompt\x00{\"1\":{}}", "iTXtworkflow\x00\x00\x00\x00\x00ünïcödé ✓"} {
			if !bytes.Contains(raw, []byte(chunk)) {
				t.Errorf("stored file lacks the chunk %q", chunk)
			}
		}
	}

	ref := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	code, body, raw := e.upload(t, "/upload/mask", "clipspace-mask.png", maskPNG(t, 8, 6),
		map[string]string{"original_ref": ref(map[string]string{"filename": "orig.png", "subfolder": "", "type": "output"}), "type": "input", "subfolder": "clipspace"})
	if code != 200 || !reflect.DeepEqual(body, obj{"name": "clipspace-mask.png", "subfolder": "clipspace", "type": "input"}) {
		t.Fatalf("upload/mask: %d %s", code, raw)
	}
	check(t, filepath.Join(e.input, "clipspace", "clipspace-mask.png"), func(x, y int) uint8 { return uint8(x*30 + y) })

	// A mask without alpha makes the result opaque (Pillow's convert("RGBA")
	// gives it alpha 255); an annotated name picks the original's folder,
	// and the original_ref type defaults to output.
	code, body, raw = e.upload(t, "/api/upload/mask", "opaque.png", grayPNG(t, 8, 6),
		map[string]string{"original_ref": ref(map[string]string{"filename": "cat.png [input]", "subfolder": "pets"})})
	if code != 200 || !reflect.DeepEqual(body, obj{"name": "opaque.png", "subfolder": "", "type": "input"}) {
		t.Fatalf("upload/mask opaque: %d %s", code, raw)
	}
	check(t, filepath.Join(e.input, "opaque.png"), func(x, y int) uint8 { return 255 })

	mask := maskPNG(t, 8, 6)
	bad := []struct {
		name     string
		data     []byte
		ref      *string
		wantCode int
		wantType string
	}{
		{"no original_ref", mask, nil, 400, "bad_original_ref"},
		{"original_ref not JSON", mask, ptr("orig.png"), 400, "bad_original_ref"},
		{"original_ref without filename", mask, ptr(`{"type":"output"}`), 400, "bad_original_ref"},
		{"dot-dot", mask, ptr(`{"filename":"../orig.png"}`), 400, "bad_original_ref"},
		{"absolute", mask, ptr(`{"filename":"/etc/passwd"}`), 400, "bad_original_ref"},
		{"unknown type", mask, ptr(`{"filename":"orig.png","type":"models"}`), 400, "bad_original_ref"},
		{"subfolder escape", mask, ptr(`{"filename":"passwd","subfolder":"../../etc"}`), 403, "bad_path"},
		{"missing original", mask, ptr(`{"filename":"nope.png"}`), 404, "original_not_found"},
		{"size mismatch", maskPNG(t, 4, 4), ptr(`{"filename":"orig.png"}`), 400, "mask_size_mismatch"},
		{"original over the pixel limit", mask, ptr(`{"filename":"huge.png"}`), 413, "image_too_large"},
		{"mask over the pixel limit", maskPNG(t, 40, 40), ptr(`{"filename":"orig.png"}`), 413, "image_too_large"},
		{"not an image", []byte("text"), ptr(`{"filename":"orig.png"}`), 400, "not_an_image"},
		{"body over the upload limit", bytes.Repeat([]byte{1}, 80<<10), ptr(`{"filename":"orig.png"}`), 413, "request_too_large"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			fields := map[string]string{}
			if tc.ref != nil {
				fields["original_ref"] = *tc.ref
			}
			code, body, raw := e.upload(t, "/upload/mask", "refused.png", tc.data, fields)
			if code != tc.wantCode {
				t.Fatalf("status %d (%s), want %d", code, raw, tc.wantCode)
			}
			checkErrorShape(t, body, tc.wantType)
		})
	}
	if _, err := os.Stat(filepath.Join(e.input, "refused.png")); err == nil {
		t.Error("a refused mask was stored")
	}
}

func ptr(s string) *string { return &s }

// grayPNG is a w×h gray PNG: a mask without an alpha channel.
func grayPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	m := image.NewGray(image.Rect(0, 0, w, h))
	for i := range m.Pix {
		m.Pix[i] = uint8(i)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// writeTextBomb copies the PNG src to dst with a zTXt chunk after IHDR whose
// text inflates to 256 MiB of zeros from a few hundred kilobytes: a request
// built to make the host hold memory through the original's text.
func writeTextBomb(t *testing.T, dst, src string) {
	t.Helper()
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestSpeed)
	zeros := make([]byte, 1<<20)
	for range 256 {
		_, _ = zw.Write(zeros)
	}
	_ = zw.Close()
	data := append([]byte("comment\x00\x00"), z.Bytes()...)
	chunk := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	chunk = append(chunk, "zTXt"...)
	chunk = append(chunk, data...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	const afterIHDR = 8 + 25
	out := append(append(append([]byte{}, raw[:afterIHDR]...), chunk...), raw[afterIHDR:]...)
	if _, err := png.Decode(bytes.NewReader(out)); err != nil {
		t.Fatalf("the bomb is not a valid PNG: %v", err)
	}
	if err := os.WriteFile(dst, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUploadMaskTextBomb: an original whose zTXt inflates to 256 MiB is
// refused with 413 naming the 16 MiB bound on the text copied into the
// composite, and the server allocates a bounded amount doing so (measured
// with runtime/metrics: the whole request, both sides in this process).
func TestUploadMaskTextBomb(t *testing.T) {
	e := newEnv(t, api.Options{}, executor.Options{})
	writePNG(t, filepath.Join(e.output, "orig.png"), 8, 6)
	writeTextBomb(t, filepath.Join(e.output, "bomb.png"), filepath.Join(e.output, "orig.png"))
	mask := maskPNG(t, 8, 6)
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	before := sample[0].Value.Uint64()
	code, body, raw := e.upload(t, "/upload/mask", "m.png", mask, map[string]string{"original_ref": `{"filename":"bomb.png"}`})
	metrics.Read(sample)
	allocated := sample[0].Value.Uint64() - before
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d (%s), want 413", code, raw)
	}
	checkErrorShape(t, body, "original_text_too_large")
	if msg := body["error"].(obj)["message"].(string); !strings.Contains(msg, "16777216") {
		t.Errorf("message %q does not name the limit", msg)
	}
	t.Logf("allocated %d bytes (%.1f MiB) refusing a 256 MiB text bomb", allocated, float64(allocated)/(1<<20))
	if allocated > 96<<20 {
		t.Errorf("allocated %d bytes refusing the bomb, want at most 96 MiB (the 16 MiB bound, grown by ReadAll)", allocated)
	}
}

// TestUploadMaskMemory measures what one /upload/mask request of a 1024²
// mask onto a 1024² original allocates through the whole route (multipart
// upload, two decodes, PNG encode, store; both sides in this process) with
// runtime/metrics: the pixels are 3 + 4 + 4 MiB, so the bound is a few
// times that, not a copy per row or per stage.
func TestUploadMaskMemory(t *testing.T) {
	e := newEnv(t, api.Options{}, executor.Options{})
	writePNG(t, filepath.Join(e.output, "orig.png"), 1024, 1024)
	mask := maskPNG(t, 1024, 1024)
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	before := sample[0].Value.Uint64()
	code, _, raw := e.upload(t, "/upload/mask", "m.png", mask, map[string]string{"original_ref": `{"filename":"orig.png"}`})
	metrics.Read(sample)
	allocated := sample[0].Value.Uint64() - before
	if code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	t.Logf("allocated %d bytes (%.1f MiB) for a 1024² mask", allocated, float64(allocated)/(1<<20))
	if allocated > 64<<20 {
		t.Errorf("allocated %d bytes, want at most 64 MiB", allocated)
	}
}
