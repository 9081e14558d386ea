// Command embed shows a Go service embedding the nodecast host: it starts the
// host with the built-in pack (served by this same binary as a subprocess),
// serves ComfyUI's API on an address, and pushes a synthetic batch of large
// images to every connected client once one has connected.
//
//	go run ./examples/embed -listen 127.0.0.1:8189 -n 4 -size 2048
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/plugins/builtin"
	"github.com/nodecast/nodecast/protocol"
)

func main() {
	// The host starts this binary again as the built-in pack's plugin process.
	if plugins.ServeSelfPack(builtin.Pack()) {
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:8189", "address to serve on")
	n := flag.Int("n", 4, "images in the batch")
	size := flag.Int("size", 2048, "side of each image in pixels")
	event := flag.String("event", "embed.batch", "event name the images carry")
	once := flag.Bool("once", false, "exit after sending one batch")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	h, err := host.New(ctx, host.Options{
		Packs:    []host.PackSource{host.SelfPack("builtin")},
		InputDir: os.TempDir(),
	})
	if err != nil {
		return err
	}
	defer h.Close()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	slog.Info("serving", "url", "http://"+ln.Addr().String(), "ws", "ws://"+ln.Addr().String()+"/ws?clientId=ID")

	// Send a batch every time at least one client is connected.
	for {
		for len(h.Hub().Clients()) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
		}
		start := time.Now()
		_, err := h.RunNode(ctx, host.NodeCall{
			Class: "SendImageOnWebSocket",
			// No ClientID: the batch goes to every client, as ComfyUI does for
			// prompts without a client_id.
			Inputs: map[string]any{"images": gradients(*n, *size), "event": *event, "wire": "parts"},
		})
		if errors.Is(err, context.Canceled) {
			return nil
		}
		if err != nil {
			return err
		}
		slog.Info("batch sent", "images", *n, "size", *size, "took", time.Since(start).Round(time.Millisecond))
		if *once {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}

// gradients makes a float32 IMAGE batch [n,size,size,3] of smooth colour
// fields with a little texture, so each PNG is large but not noise.
func gradients(n, size int) *protocol.Tensor {
	t := protocol.NewFloat32(n, size, size, 3)
	v := t.Float32s()
	i := 0
	for b := 0; b < n; b++ {
		for y := 0; y < size; y++ {
			for x := 0; x < size; x++ {
				fx, fy := float64(x)/float64(size), float64(y)/float64(size)
				tex := 0.04 * math.Sin(float64(x*y+b*977)*0.37)
				v[i] = float32(fx + tex)
				v[i+1] = float32(fy - tex)
				v[i+2] = float32(0.5 + 0.5*math.Sin(6*fx+float64(b)) + tex)
				i += 3
			}
		}
	}
	return t
}
