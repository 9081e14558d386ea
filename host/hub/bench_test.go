package hub

import (
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/nodecast/nodecast/protocol"
)

// BenchmarkFanout delivers an 8 MiB image, published in ~3 MiB parts, to 1
// and 8 clients over loopback; the clients read and discard. MB/s counts the
// bytes of image delivered to all clients.
func BenchmarkFanout(b *testing.B) {
	img := make([]byte, 8<<20)
	rand.NewChaCha8([32]byte{3}).Read(img)
	parts := split(img, 3<<20-3072, protocol.WireComfy, "bench")
	for _, shape := range []shape{shapePART, shapeWhole, shapeBase64} {
		for _, clients := range []int{1, 8} {
			b.Run(fmt.Sprintf("%v/%dclients", shape, clients), func(b *testing.B) {
				benchFanout(b, img, parts, shape, clients)
			})
		}
	}
}

func benchFanout(b *testing.B, img []byte, parts []*protocol.ImagePart, shape shape, clients int) {
	h, srv := startHub(b, Options{})
	wire := protocol.WireComfy
	if shape == shapeBase64 {
		wire = protocol.WireParts
	}
	perImage := 1
	if shape != shapeWhole {
		perImage = len(parts)
		if shape == shapeBase64 { // 3 MiB parts grow past 4 MiB as base64 and are split again
			perImage = len(split(img, (protocol.DefaultMessageLimit-1024)/4*3, wire, "x"))
		}
	}
	received := make(chan error, clients)
	for i := range clients {
		o := dialOpts{query: fmt.Sprintf("clientId=c%d", i)}
		if shape == shapePART {
			o.flags = protocol.FeatureFlags{protocol.FlagImageParts: true}
		}
		c := connect(b, srv, o)
		go func() {
			for n := 1; ; n++ {
				_, r, err := c.conn.NextReader()
				if err != nil {
					return
				}
				if _, err := io.Copy(io.Discard, r); err != nil {
					return
				}
				if n%perImage == 0 {
					received <- nil
				}
			}
		}()
	}
	b.SetBytes(int64(len(img) * clients))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		for _, p := range parts {
			q := *p
			q.ImageID = fmt.Sprintf("bench-%d", i)
			q.Wire = wire
			if err := h.Publish("", &q); err != nil {
				b.Fatal(err)
			}
		}
		for range clients {
			<-received
		}
	}
}
