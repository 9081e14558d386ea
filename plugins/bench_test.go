package plugins_test

import (
	"testing"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// benchTransports runs fn against the test pack in this process (over a real
// gRPC connection) and in a real plugin subprocess (AutoMTLS, unix socket).
func benchTransports(b *testing.B, fn func(b *testing.B, c *plugins.PackClient)) {
	b.Run("inprocess", func(b *testing.B) { fn(b, newInProcess(b).client) })
	b.Run("subprocess", func(b *testing.B) { fn(b, startSelf(b, quietLogger(), nil).Client()) })
}

// BenchmarkRunParts moves 8 MiB of image parts per run through the Run stream.
func BenchmarkRunParts(b *testing.B) {
	const parts, size = 8, 1 << 20
	benchTransports(b, func(b *testing.B, c *plugins.PackClient) {
		req := plugins.RunRequest{ClassType: "test.Parts", Inputs: map[string]any{"count": parts, "size": size}}
		n := 0
		h := plugins.RunHandlers{Part: func(p *protocol.ImagePart) error { n += len(p.Data); return nil }}
		b.SetBytes(parts * size)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Run(b.Context(), req, h); err != nil {
				b.Fatal(err)
			}
		}
		if n != b.N*parts*size {
			b.Fatalf("received %d bytes of parts", n)
		}
	})
}

// BenchmarkPutTensor sends a 2048×2048×3 float32 image (48 MiB) to the plugin.
func BenchmarkPutTensor(b *testing.B) {
	in := randomTensor(protocol.Float32, 1, 2048, 2048, 3)
	benchTransports(b, func(b *testing.B, c *plugins.PackClient) {
		b.SetBytes(int64(len(in.Data)))
		b.ReportAllocs()
		for b.Loop() {
			ref, err := c.PutTensor(b.Context(), in)
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Release(b.Context(), ref.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGetTensor fetches a 2048×2048×3 float32 image (48 MiB) from the plugin.
func BenchmarkGetTensor(b *testing.B) {
	in := randomTensor(protocol.Float32, 1, 2048, 2048, 3)
	benchTransports(b, func(b *testing.B, c *plugins.PackClient) {
		ref, err := c.PutTensor(b.Context(), in)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(in.Data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.GetTensor(b.Context(), ref); err != nil {
				b.Fatal(err)
			}
		}
	})
}
