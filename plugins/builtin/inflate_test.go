package builtin

import (
	"bytes"
	stdflate "compress/flate"
	"encoding/binary"
	"fmt"
	"image/png"
	"io"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	kflate "github.com/klauspost/compress/flate"
	"github.com/nodecast/nodecast/internal/testimage"
)

// inflateInputs are byte patterns that make every kind of deflate block and
// symbol: noise (literals, stored blocks), runs (distance 1), short repeats
// (copies that overlap their source), text-like data (long codes, far
// distances) and a mix, large enough for many blocks.
func inflateInputs() map[string][]byte {
	rng := rand.New(rand.NewPCG(5, 9))
	noise := make([]byte, 200<<10)
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	runs := bytes.Repeat([]byte{7}, 70<<10)
	short := bytes.Repeat([]byte("abcabd"), 20<<10)
	words := []string{"pixel", "tensor", "deflate", "huffman", "window", "stride", "row", "a", "the", "of"}
	var text bytes.Buffer
	for text.Len() < 300<<10 {
		text.WriteString(words[rng.IntN(len(words))])
		text.WriteByte(" \n,."[rng.IntN(4)])
		if rng.IntN(50) == 0 {
			text.Write(noise[rng.IntN(1000) : rng.IntN(1000)+rng.IntN(300)+1000])
		}
	}
	skewed := make([]byte, 100<<10) // many symbols, very unequal counts: codes of 12-15 bits
	for i := range skewed {
		v := rng.ExpFloat64() * 3
		skewed[i] = byte(min(v, 255))
	}
	return map[string][]byte{
		"empty": {}, "one": {42}, "noise": noise, "runs": runs, "short": short,
		"text": text.Bytes(), "skewed": skewed,
		"mix": append(append(append([]byte(nil), text.Bytes()[:50<<10]...), noise[:30<<10]...), runs[:40<<10]...),
	}
}

// TestInflateMatchesFlate decodes what compress/flate and klauspost's flate
// write at every level, and checks the bytes and the length consumed.
func TestInflateMatchesFlate(t *testing.T) {
	for name, in := range inflateInputs() {
		for _, level := range []int{-2, 0, 1, 2, 5, 9} {
			for _, lib := range []string{"compress/flate", "klauspost"} {
				var z bytes.Buffer
				var w io.WriteCloser
				if lib == "klauspost" {
					w, _ = kflate.NewWriter(&z, level)
				} else {
					w, _ = stdflate.NewWriter(&z, level)
				}
				w.Write(in)
				w.Close()
				stream := append(z.Bytes(), "trailing"...)
				out := make([]byte, len(in))
				var reports []int
				used, err := inflateInto(out, stream, func(n int) bool { reports = append(reports, n); return true })
				label := fmt.Sprintf("%s, %s level %d", name, lib, level)
				if err != nil {
					t.Fatalf("%s: %v", label, err)
				}
				if used != z.Len() || !bytes.Equal(out, in) {
					t.Fatalf("%s: used %d of %d, bytes equal %v", label, used, z.Len(), bytes.Equal(out, in))
				}
				for i := 1; i < len(reports); i++ {
					if reports[i] < reports[i-1] {
						t.Fatalf("%s: progress went back: %v", label, reports)
					}
				}
				if len(reports) == 0 || reports[len(reports)-1] != len(in) {
					t.Fatalf("%s: last report %v, want %d", label, reports, len(in))
				}
				// Too small or too large an output is refused.
				if len(in) > 0 {
					if _, err := inflateInto(make([]byte, len(in)-1), stream, nil); err == nil {
						t.Fatalf("%s: one byte too many accepted", label)
					}
				}
				if _, err := inflateInto(make([]byte, len(in)+1), stream, nil); err == nil {
					t.Fatalf("%s: one byte too few accepted", label)
				}
			}
		}
	}
}

// TestInflateNeverLaxer: on streams cut short or with one bit flipped,
// inflateInto either refuses or agrees with compress/flate byte for byte.
func TestInflateNeverLaxer(t *testing.T) {
	in := inflateInputs()
	for _, name := range []string{"text", "runs", "short", "noise"} {
		for _, level := range []int{0, 1, 9, -2} {
			var z bytes.Buffer
			w, _ := stdflate.NewWriter(&z, level)
			w.Write(in[name][:3000])
			w.Close()
			stream := z.Bytes()
			for cut := 0; cut < len(stream); cut += 1 + len(stream)/200 {
				checkInflateAgrees(t, fmt.Sprintf("%s level %d cut at %d", name, level, cut), stream[:cut], 3000)
			}
			for i := 0; i < len(stream)*8; i += 1 + len(stream)*8/400 {
				bad := bytes.Clone(stream)
				bad[i/8] ^= 1 << (i % 8)
				checkInflateAgrees(t, fmt.Sprintf("%s level %d bit %d flipped", name, level, i), bad, 3000)
			}
		}
	}
}

// checkInflateAgrees: if inflateInto decodes stream into size bytes,
// compress/flate decodes the same bytes, ends there, and used as much input.
func checkInflateAgrees(t *testing.T, label string, stream []byte, size int) {
	t.Helper()
	out := make([]byte, size)
	used, err := inflateInto(out, stream, nil)
	if err != nil {
		return // image/png decodes (or refuses) it instead
	}
	r := bytes.NewReader(stream)
	want, werr := io.ReadAll(stdflate.NewReader(r))
	if werr != nil {
		t.Fatalf("%s: ours decoded, compress/flate says %v", label, werr)
	}
	if !bytes.Equal(want, out) {
		t.Fatalf("%s: ours decoded other bytes (%d, compress/flate %d)", label, len(out), len(want))
	}
	if got := len(stream) - r.Len(); got != used {
		t.Fatalf("%s: ours used %d bytes, compress/flate %d", label, used, got)
	}
}

// FuzzInflate: whatever inflateInto accepts, compress/flate decodes the same.
func FuzzInflate(f *testing.F) {
	for _, level := range []int{0, 1, 9, -2} {
		var z bytes.Buffer
		w, _ := stdflate.NewWriter(&z, level)
		w.Write([]byte("the pixel the tensor the row, the row the pixel; aaaaaaaaaaaaaaaaaaaaaaaaaa"))
		w.Close()
		f.Add(z.Bytes(), uint16(80))
	}
	f.Fuzz(func(t *testing.T, stream []byte, size uint16) {
		checkInflateAgrees(t, "fuzz", stream, int(size))
	})
}

// BenchmarkInflate inflates the IDAT stream of the 2048² photo with
// inflateInto and with klauspost's flate (what the decoder used before),
// on one goroutine; SetBytes counts the inflated bytes. cpu-ns/op is the
// process's CPU time per op, steadier than wall time on a shared machine.
func BenchmarkInflate(b *testing.B) {
	file := testimage.PhotoPNG(b, 2048, png.DefaultCompression)
	var z []byte
	for p := 8; p+12 <= len(file); {
		n := int(binary.BigEndian.Uint32(file[p:]))
		if string(file[p+4:p+8]) == "IDAT" {
			z = append(z, file[p+8:p+8+n]...)
		}
		p += 12 + n
	}
	size := 2048 * (1 + 2048*3)
	out := make([]byte, size)
	run := func(b *testing.B, inflate func() error) {
		b.SetBytes(int64(size))
		var ru0, ru1 syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		for b.Loop() {
			if err := inflate(); err != nil {
				b.Fatal(err)
			}
		}
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
	b.Run("ours", func(b *testing.B) {
		run(b, func() error { _, err := inflateInto(out, z[2:], nil); return err })
	})
	b.Run("klauspost", func(b *testing.B) {
		run(b, func() error {
			_, err := io.ReadFull(kflate.NewReader(bytes.NewReader(z[2:])), out)
			return err
		})
	})
}
