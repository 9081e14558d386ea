package sendimage

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

var encodeTable = flag.Bool("encode-table", false, "print README's encoder speed and size table (2048² photo and flat image)")

// TestEncodeTable prints, in one run, the CPU time and size of each encoder
// on the 2048² photo-like image and on a flat one, as ratios to the PNG
// default, with the wall time beside: the table in README's "Outputs"
// section. CPU time is the ratio's base because the machine is shared: it
// is what an encode costs whatever else runs, where wall time moves with
// the load (and is lower than CPU time for the parallel PNG writer). It only runs when asked:
//
//	go test ./sendimage -run TestEncodeTable -count=1 -args -encode-table
func TestEncodeTable(t *testing.T) {
	if !*encodeTable {
		t.Skip("pass -args -encode-table to print the table")
	}
	images := []struct {
		name string
		p    *Pixels
	}{{"photo", photoLike(2048, 2048, 3, 1)}, {"flat", flatImage(2048, 2048)}}
	rows := []struct {
		label, enc string
		opts       EncoderOptions
	}{
		{"png default (level 1 or Huffman-only by sample; senders, PreviewImage)", "png", EncoderOptions{}},
		{"png Huffman-only", "png", EncoderOptions{Level: LevelHuffmanOnly}},
		{"png level 3", "png", EncoderOptions{Level: 3}},
		{"png compact: level 3, or 7 for flat images (SaveImage)", "png", EncoderOptions{Level: LevelCompact}},
		{"png level 7", "png", EncoderOptions{Level: 7}},
		{"png level 9", "png", EncoderOptions{Level: LevelBest}},
		{"png default, one core", "png", EncoderOptions{Workers: 1}},
		{"jpeg q95 (image/jpeg)", "jpeg", EncoderOptions{}},
		{"jpeg q90", "jpeg", EncoderOptions{Quality: 90}},
		{"webp lossy q90 (gen2brain/webp)", "webp", EncoderOptions{}},
		{"webp-lossless (nativewebp)", "webp-lossless", EncoderOptions{}},
		{"raw (netpbm)", "raw", EncoderOptions{}},
	}
	const runs = 5
	type cell struct {
		d    time.Duration // CPU time (user+system) of the process: what the encode costs, whatever else runs
		wall time.Duration
		size int
	}
	cells := make([][]cell, len(rows), len(rows)+2)
	for i, r := range rows {
		e := mustEncoder(t, r.enc, r.opts)
		for _, im := range images {
			var buf bytes.Buffer
			if err := e.Encode(&buf, im.p); err != nil { // warm up: pools, WebAssembly compile
				t.Fatal(err)
			}
			var ds, walls []time.Duration
			for range runs {
				buf.Reset()
				start, cpu := time.Now(), cpuTime()
				if err := e.Encode(&buf, im.p); err != nil {
					t.Fatal(err)
				}
				ds, walls = append(ds, cpuTime()-cpu), append(walls, time.Since(start))
			}
			slices.Sort(ds)
			slices.Sort(walls)
			cells[i] = append(cells[i], cell{ds[runs/2], walls[runs/2], buf.Len()})
		}
	}
	// Pillow, as ComfyUI calls it, on the same pixels in the same run, when
	// /usr/bin/python3 has it: compress_level 4 (SaveImage), 1 (previews).
	labels := make([]string, len(rows))
	for i, r := range rows {
		labels[i] = r.label
	}
	for _, level := range []int{4, 1} {
		var row []cell
		for _, im := range images {
			d, wall, size, err := pillowPNG(t, im.p, level, runs)
			if err != nil {
				t.Logf("Pillow not measured: %v", err)
				break
			}
			row = append(row, cell{d, wall, size})
		}
		if len(row) == len(images) {
			cells = append(cells, row)
			labels = append(labels, fmt.Sprintf("Pillow PNG compress_level %d (ComfyUI %s)", level, map[int]string{4: "SaveImage", 1: "previews"}[level]))
		}
	}
	out := os.Stdout
	fmt.Fprintf(out, "| encoder | photo CPU time (wall) | photo size | flat CPU time (wall) | flat size |\n|---|---|---|---|---|\n")
	for i, label := range labels {
		fmt.Fprintf(out, "| %s |", label)
		for j := range images {
			c, base := cells[i][j], cells[0][j]
			fmt.Fprintf(out, " %.2f× (%d ms, %d ms) | %.2f× (%s) |", float64(c.d)/float64(base.d), c.d.Milliseconds(), c.wall.Milliseconds(),
				float64(c.size)/float64(base.size), humanBytes(c.size))
		}
		fmt.Fprintln(out)
	}
}

func humanBytes(n int) string {
	if n >= 1e6 {
		return fmt.Sprintf("%.2f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f kB", float64(n)/1e3)
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pillowPNG times Pillow's PNG encoder at level on p (medians of runs of
// CPU and wall time, in the Python process, without its start-up) and
// returns the file size.
func pillowPNG(t *testing.T, p *Pixels, level, runs int) (cpu, wall time.Duration, size int, err error) {
	raw := filepath.Join(t.TempDir(), "pixels.rgb")
	if err := os.WriteFile(raw, p.Pix, 0o644); err != nil {
		return 0, 0, 0, err
	}
	script := `
import io, sys, time
from PIL import Image
path, w, h, level, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
im = Image.frombytes("RGB", (w, h), open(path, "rb").read())
cpus, walls = [], []
for _ in range(runs + 1):
    b = io.BytesIO(); c, w = time.process_time(), time.perf_counter()
    im.save(b, format="PNG", compress_level=level)
    cpus.append(time.process_time() - c); walls.append(time.perf_counter() - w)
cpus, walls = sorted(cpus[1:]), sorted(walls[1:])
print(int(cpus[len(cpus)//2] * 1e9), int(walls[len(walls)//2] * 1e9), len(b.getvalue()))
`
	out, err := exec.Command("/usr/bin/python3", "-c", script, raw, strconv.Itoa(p.W), strconv.Itoa(p.H), strconv.Itoa(level), strconv.Itoa(runs)).CombinedOutput()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("%v: %s", err, out)
	}
	var cpuNS, wallNS int64
	if _, err := fmt.Sscan(string(out), &cpuNS, &wallNS, &size); err != nil {
		return 0, 0, 0, fmt.Errorf("%v: %s", err, out)
	}
	return time.Duration(cpuNS), time.Duration(wallNS), size, nil
}
