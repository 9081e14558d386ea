package protocol

import (
	"encoding/json"
	"testing"
)

func BenchmarkSplit(b *testing.B) {
	image := testImage(8<<20, 1)
	for _, tc := range []struct {
		name string
		sha  string
	}{
		{"sha256", ""},                     // Split hashes the image
		{"sha256 given", sha256Hex(image)}, // the encoder hashed while writing
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := testHeader("bench")
			h.SHA256 = tc.sha
			b.SetBytes(int64(len(image)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := (Splitter{}).Split(h, "9", image, WireParts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPlan(b *testing.B) {
	h, label := hostileStrings()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := (Splitter{}).Plan(h, label, 20<<20); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReassemble(b *testing.B) {
	image := testImage(8<<20, 2)
	parts := mustSplit(b, Splitter{}, testHeader("bench"), "9", image)
	var frames, b64s [][]byte
	for i := range parts {
		frame, b64 := messages(b, &parts[i])
		frames, b64s = append(frames, frame), append(b64s, b64)
	}
	b.Run("PART frames", func(b *testing.B) {
		b.SetBytes(int64(len(image)))
		b.ReportAllocs()
		for b.Loop() {
			r := NewReassembler(ReassemblerOptions{})
			for _, f := range frames {
				if _, err := r.AddFrame(f); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("base64 messages", func(b *testing.B) {
		b.SetBytes(int64(len(image)))
		b.ReportAllocs()
		for b.Loop() {
			r := NewReassembler(ReassemblerOptions{})
			for _, m := range b64s {
				var rm RawMessage // what a client does with every text message
				if err := json.Unmarshal(m, &rm); err != nil {
					b.Fatal(err)
				}
				if _, err := r.AddB64(rm.Type, rm.Data); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// benchPart is a part of about 3 MiB, the size the hub frames.
func benchPart(b *testing.B) *ImagePart {
	parts := mustSplit(b, Splitter{}, testHeader("bench"), "9", testImage(4<<20, 3))
	return &parts[0]
}

func BenchmarkAppendPartFrame(b *testing.B) {
	p := benchPart(b)
	var dst []byte
	b.SetBytes(int64(len(p.Data)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = AppendPartFrame(dst[:0], &p.PartHeader, p.Data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalB64Part(b *testing.B) {
	p := benchPart(b)
	b.SetBytes(int64(len(p.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MarshalB64Part(p); err != nil {
			b.Fatal(err)
		}
	}
}
