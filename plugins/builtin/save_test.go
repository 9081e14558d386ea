package builtin

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// saveNode is SaveImage or PreviewImage writing into the given folders.
func saveNode(t *testing.T, class, out, temp string) plugins.Node {
	t.Helper()
	return nodeOf(t, NewPack(Options{OutputDir: out, TempDir: temp}), class)
}

// savedImages returns the "images" list of a SaveImage result.
func savedImages(t *testing.T, res plugins.Result) []map[string]any {
	t.Helper()
	list, ok := res.UI["images"].([]any)
	if !ok {
		t.Fatalf("ui %v has no images list", res.UI)
	}
	var out []map[string]any
	for _, v := range list {
		out = append(out, v.(map[string]any))
	}
	return out
}

// textChunks returns a PNG file's tEXt chunks by keyword.
func textChunks(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	for b = b[8:]; len(b) >= 12; {
		n := int(binary.BigEndian.Uint32(b))
		typ, data := string(b[4:8]), b[8:8+n]
		if binary.BigEndian.Uint32(b[8+n:]) != crc32.ChecksumIEEE(b[4:8+n]) {
			t.Fatalf("chunk %s: bad CRC", typ)
		}
		if typ == "tEXt" {
			k, v, _ := bytes.Cut(data, []byte{0})
			out[string(k)] = string(v)
		}
		b = b[12+n:]
	}
	return out
}

func TestSaveImageNamesTextAndPixels(t *testing.T) {
	out := t.TempDir()
	// ComfyUI's counter continues from the largest "{prefix}_{n}" there;
	// names of other prefixes and non-numbers do not count.
	for _, name := range []string{"ComfyUI_00007_.png", "ComfyUI_foo.png", "ComfyUIx_00099_.png", "Other_00050_.png"} {
		if err := os.WriteFile(filepath.Join(out, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	images := imageTensor(2, 3, 5, 3, func(i int) float32 { return float32(i%7) / 6 })
	prompt := map[string]any{"9": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"filename_prefix": "ComfyUI"}}}
	workflow := map[string]any{"nodes": []any{map[string]any{"id": 9.0, "title": "Caf\u00e9 \u65e5"}}}
	res, em, err := runWith(t, saveNode(t, "SaveImage", out, ""), map[string]any{
		"images": images, "filename_prefix": "ComfyUI", "prompt": prompt,
		"extra_pnginfo": map[string]any{"workflow": workflow},
	}, plugins.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got := savedImages(t, res)
	want := []map[string]any{
		{"filename": "ComfyUI_00008_.png", "subfolder": "", "type": "output"},
		{"filename": "ComfyUI_00009_.png", "subfolder": "", "type": "output"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ui images %v, want %v", got, want)
	}
	if len(em.progress) != 2 {
		t.Errorf("progress %v, want one step per image", em.progress)
	}
	px := images.Float32s()
	for i, g := range got {
		b, err := os.ReadFile(filepath.Join(out, g["filename"].(string)))
		if err != nil {
			t.Fatal(err)
		}
		m, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		for y := range 3 {
			for x := range 5 {
				r, gg, bb, _ := m.At(x, y).RGBA()
				j := ((i*3+y)*5 + x) * 3
				if w := [3]uint32{uint32(255 * px[j]), uint32(255 * px[j+1]), uint32(255 * px[j+2])}; [3]uint32{r >> 8, gg >> 8, bb >> 8} != w {
					t.Fatalf("image %d pixel (%d,%d) = %v, want %v", i, x, y, [3]uint32{r >> 8, gg >> 8, bb >> 8}, w)
				}
			}
		}
		text := textChunks(t, b)
		if strings.ContainsFunc(text["workflow"], func(r rune) bool { return r > 127 }) {
			t.Errorf("workflow chunk is not ASCII: %q", text["workflow"])
		}
		var gotPrompt, gotWorkflow any
		if err := json.Unmarshal([]byte(text["prompt"]), &gotPrompt); err != nil {
			t.Fatalf("prompt chunk %q: %v", text["prompt"], err)
		}
		if err := json.Unmarshal([]byte(text["workflow"]), &gotWorkflow); err != nil {
			t.Fatalf("workflow chunk %q: %v", text["workflow"], err)
		}
		if fmt.Sprint(gotPrompt) != fmt.Sprint(prompt) || fmt.Sprint(gotWorkflow) != fmt.Sprint(workflow) {
			t.Errorf("text chunks %v", text)
		}
	}
	// A second prompt continues the count.
	res, _, err = runWith(t, saveNode(t, "SaveImage", out, ""), map[string]any{"images": images, "filename_prefix": "ComfyUI"}, plugins.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if n := savedImages(t, res)[0]["filename"]; n != "ComfyUI_00010_.png" {
		t.Errorf("second prompt's first file %v, want ComfyUI_00010_.png", n)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "ComfyUI_00010_.png")); len(textChunks(t, b)) != 0 {
		t.Error("text chunks written without a prompt or extra_pnginfo")
	}
}

func TestSaveImageSubfoldersAndVariables(t *testing.T) {
	out := t.TempDir()
	images := imageTensor(2, 4, 6, 4, func(i int) float32 { return 0.5 })
	res, _, err := runWith(t, saveNode(t, "SaveImage", out, ""), map[string]any{
		"images": images, "filename_prefix": "run/%width%x%height%/img_%batch_num%",
	}, plugins.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got := savedImages(t, res)
	for i, g := range got {
		want := fmt.Sprintf("img_%d_%05d_.png", i, i+1)
		if g["subfolder"] != "run/6x4" || g["filename"] != want {
			t.Errorf("image %d saved as %v, want run/6x4/%s", i, g, want)
		}
		if _, err := os.Stat(filepath.Join(out, "run", "6x4", want)); err != nil {
			t.Error(err)
		}
	}
	sub, base, err := savePath("a/%year%-%month%-%day%/b", 1, 1, time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	if err != nil || sub != "a/2026-03-04" || base != "b" {
		t.Errorf("savePath = %q, %q, %v", sub, base, err)
	}
}

func TestSaveImageRefusesEscapes(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "output")
	outside := filepath.Join(parent, "outside")
	for _, d := range []string{out, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(out, "link")); err != nil {
		t.Fatal(err)
	}
	images := imageTensor(1, 2, 2, 3, func(int) float32 { return 1 })
	for _, prefix := range []string{"../x", "a/../../x", "/tmp/x", "..\\x", "", "link/x"} {
		_, _, err := runWith(t, saveNode(t, "SaveImage", out, ""), map[string]any{"images": images, "filename_prefix": prefix}, plugins.Limits{})
		var pe *PrefixError
		if !errors.As(err, &pe) || !errors.Is(err, ErrPath) || pe.Prefix == "" && prefix != "" {
			t.Errorf("prefix %q: error %v, want a *PrefixError", prefix, err)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("files written outside the output folder: %v", entries)
	}
	_, _, err := runWith(t, saveNode(t, "SaveImage", "", ""), map[string]any{"images": images}, plugins.Limits{})
	if !errors.Is(err, ErrOutputDir) || !strings.Contains(err.Error(), plugins.OutputDirEnv) {
		t.Errorf("no output folder: %v", err)
	}
	nan := imageTensor(1, 2, 2, 3, func(int) float32 { return float32(nanValue()) })
	_, _, err = runWith(t, saveNode(t, "SaveImage", out, ""), map[string]any{"images": nan}, plugins.Limits{})
	var nf *protocol.NonFiniteError
	if !errors.As(err, &nf) {
		t.Errorf("NaN image: %v", err)
	}
}

func nanValue() float64 { var z float64; return z / z }

// TestSaveImageConcurrentNamesNeverCollide runs several SaveImage calls at
// once into one folder: each name is taken once, each file is whole, and no
// temporary file is left behind.
func TestSaveImageConcurrentNamesNeverCollide(t *testing.T) {
	out := t.TempDir()
	const writers, batch = 6, 4
	images := imageTensor(batch, 16, 16, 3, func(i int) float32 { return float32(i%255) / 255 })
	names := make(chan string, writers*batch)
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, _, err := runWith(t, saveNode(t, "SaveImage", out, ""), map[string]any{"images": images, "filename_prefix": "race"}, plugins.Limits{})
			if err != nil {
				t.Error(err)
				return
			}
			for _, g := range savedImages(t, res) {
				names <- g["filename"].(string)
			}
		}()
	}
	wg.Wait()
	close(names)
	var all []string
	for n := range names {
		all = append(all, n)
	}
	slices.Sort(all)
	if len(slices.Compact(slices.Clone(all))) != writers*batch {
		t.Fatalf("names %v: want %d distinct", all, writers*batch)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != writers*batch {
		t.Errorf("folder holds %d entries, want %d (temporary files left?)", len(entries), writers*batch)
	}
	for _, n := range all {
		b, err := os.ReadFile(filepath.Join(out, n))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(bytes.NewReader(b)); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

func TestPreviewImageWritesTemp(t *testing.T) {
	out, temp := t.TempDir(), t.TempDir()
	images := imageTensor(2, 8, 8, 3, func(i int) float32 { return 0.25 })
	res, _, err := runWith(t, saveNode(t, "PreviewImage", out, temp), map[string]any{"images": images}, plugins.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got := savedImages(t, res)
	re := regexp.MustCompile(`^ComfyUI_temp_[a-z]{5}_0000([12])_\.png$`)
	for i, g := range got {
		m := re.FindStringSubmatch(g["filename"].(string))
		if m == nil || m[1] != fmt.Sprint(i+1) || g["type"] != "temp" || g["subfolder"] != "" {
			t.Errorf("preview %d: %v", i, g)
			continue
		}
		if _, err := os.Stat(filepath.Join(temp, g["filename"].(string))); err != nil {
			t.Error(err)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("PreviewImage wrote into the output folder: %v", entries)
	}
	spec := saveNode(t, "PreviewImage", out, temp).Spec()
	for _, in := range spec.Inputs {
		if in.Name == "filename_prefix" {
			t.Error("PreviewImage has a filename_prefix input; ComfyUI's has none")
		}
	}
}

func TestNextCounter(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  int
	}{
		{nil, 1},
		{[]string{"a_00001_.png", "a_00003_.png", "a_x.png"}, 4},
		{[]string{"a_x.png"}, 1},                  // matches the prefix, counts as 0
		{[]string{"ab_00009_.png", "a.png"}, 1},   // another prefix
		{[]string{"a_12.png", "a_00002_.png"}, 3}, // "12.png" is not a number
	} {
		if got := nextCounter(tc.names, "a"); got != tc.want {
			t.Errorf("nextCounter(%v) = %d, want %d", tc.names, got, tc.want)
		}
	}
}

// TestSaveImageFaults: a subfolder that is a file, and a cancelled run,
// fail with an error and leave no partial or temporary file.
func TestSaveImageFaults(t *testing.T) {
	out := t.TempDir()
	if err := os.WriteFile(filepath.Join(out, "afile"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	images := imageTensor(3, 8, 8, 3, func(int) float32 { return 0.5 })
	_, _, err := runWith(t, saveNode(t, "SaveImage", out, ""), map[string]any{"images": images, "filename_prefix": "afile/x"}, plugins.Limits{})
	var pe *PrefixError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "subfolder") {
		t.Errorf("subfolder that is a file: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	em := &cancelAfter{n: 1, cancel: cancel}
	call := &plugins.Call{NodeID: "7", PromptID: "p", Inputs: map[string]any{"images": images, "filename_prefix": "cut"}, Emitter: em}
	if _, err := saveNode(t, "SaveImage", out, "").Run(ctx, call); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled after one image: %v", err)
	}
	entries, _ := os.ReadDir(out)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"afile", "cut_00001_.png"}) {
		t.Errorf("folder holds %v, want afile and the one image saved before the cancel", names)
	}
}

// cancelAfter cancels its context after n progress reports.
type cancelAfter struct {
	fakeEmitter
	n      int
	cancel func()
}

func (c *cancelAfter) Progress(ctx context.Context, value, max int) error {
	if value >= c.n {
		c.cancel()
	}
	return nil
}

// TestSaveImageMemoryPerImage measures (runtime.MemStats.TotalAlloc) what
// each further image of a batch allocates: the pixel buffer and the file
// writer are reused, so it stays under one image's raw size, and a batch
// never needs all its pixels converted at once.
func TestSaveImageMemoryPerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("encodes twelve 1024² images")
	}
	out := t.TempDir()
	const side = 1024
	raw := uint64(side * side * 3)
	alloc := func(batch int) uint64 {
		images := imageTensor(batch, side, side, 3, func(i int) float32 { return float32(i%251) / 251 })
		n := saveNode(t, "SaveImage", out, "")
		// Warm the encoder's pools first, as a running plugin has them.
		if _, _, err := runWith(t, n, map[string]any{"images": images, "filename_prefix": "warm"}, plugins.Limits{}); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if _, _, err := runWith(t, n, map[string]any{"images": images, "filename_prefix": "mem"}, plugins.Limits{}); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	one, five := alloc(1), alloc(5)
	per := (max(five, one) - one) / 4
	t.Logf("SaveImage of %d² RGB: %d bytes allocated for one image, %d per further image (raw image %d)", side, one, per, raw)
	// Pools emptied by a GC cycle mid-run refill (flate writers, stripe
	// buffers), so the figure moves between runs (0.8 to 1.7 MB seen); a
	// batch converted all at once would add a whole raw image per image.
	if per >= raw {
		t.Errorf("each further image allocates %d bytes, a raw image's worth (%d) or more", per, raw)
	}
}
