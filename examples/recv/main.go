// Command recv is a nodecast client built on the client package: it
// connects to a host, optionally queues a prompt, and writes every image it
// receives (whole, size and sha256 checked) to a folder, showing progress as
// it goes. A dropped connection is resumed without losing an image.
//
//	go run ./examples/recv -url http://127.0.0.1:8188 -out ./received [-prompt workflow.json | -workflow NAME]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/nodecast/nodecast/client"
	"github.com/nodecast/nodecast/protocol"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "recv:", err)
		os.Exit(1)
	}
}

type options struct {
	url, out, promptFile, workflow, clientID string
	count                                    int
	timeout                                  time.Duration
}

func run() error {
	var o options
	flag.StringVar(&o.url, "url", "http://127.0.0.1:8188", "host address")
	flag.StringVar(&o.out, "out", "received", "folder for the images")
	flag.StringVar(&o.promptFile, "prompt", "", "ComfyUI API-format workflow JSON to queue")
	flag.StringVar(&o.workflow, "workflow", "", "name of a workflow configured on the host to queue")
	flag.StringVar(&o.clientID, "client-id", "", "clientId (default: a new one)")
	flag.IntVar(&o.count, "n", 0, "stop after this many images (0: when the queued prompt ends, or never)")
	flag.DurationVar(&o.timeout, "timeout", 0, "give up after this long (0: never)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	return receive(ctx, o, os.Stdout)
}

func receive(ctx context.Context, o options, log io.Writer) error {
	c, err := client.Dial(ctx, o.url, client.Options{ClientID: o.clientID,
		Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		return err
	}
	defer c.Close()

	var promptID string
	switch {
	case o.workflow != "":
		promptID, err = c.QueueWorkflow(ctx, o.workflow)
	case o.promptFile != "":
		raw, rerr := os.ReadFile(o.promptFile)
		if rerr != nil {
			return rerr
		}
		promptID, err = c.QueuePrompt(ctx, json.RawMessage(raw))
	}
	if err != nil {
		return err
	}
	if promptID != "" {
		fmt.Fprintf(log, "queued prompt %s\n", promptID)
	}

	saved := 0
	for {
		var ev client.Event
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok = <-c.Events():
		}
		if !ok {
			return fmt.Errorf("connection ended: %v", c.Err())
		}
		switch ev.Kind {
		case client.KindImage:
			img := ev.Image
			name := fmt.Sprintf("%s-%s-%03d%s", img.Event, img.Node, img.Index, extension(img.MIME))
			if img.Event == "" { // a whole type 1 image carries no name
				name = fmt.Sprintf("whole-%03d%s", saved, extension(img.MIME))
			}
			if err := save(o.out, name, img.Data, log); err != nil {
				return err
			}
			saved++
			if o.count > 0 && saved >= o.count {
				return nil
			}
		case client.KindResumeLost:
			fmt.Fprintf(log, "reconnected without resuming (%s): see /history for what was missed\n", ev.Reason)
		case client.KindMessage:
			switch ev.Type {
			case protocol.TypeProgress:
				var p protocol.ProgressData
				if json.Unmarshal(ev.Data, &p) == nil {
					fmt.Fprintf(log, "progress node %s: %d/%d\n", p.Node, p.Value, p.Max)
				}
			case protocol.TypeExecutionError:
				var e protocol.ExecutionErrorData
				if json.Unmarshal(ev.Data, &e) == nil && (promptID == "" || e.PromptID == promptID) {
					return fmt.Errorf("prompt %s failed in node %s (%s): %s", e.PromptID, e.NodeID, e.NodeType, e.ExceptionMessage)
				}
			}
			if promptID != "" && ev.IsPromptDone(promptID) {
				fmt.Fprintf(log, "prompt %s done: %d images\n", promptID, saved)
				return nil
			}
		}
	}
}

func save(dir, name string, data []byte, log io.Writer) error {
	path := filepath.Join(dir, filepath.Base(name))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(log, "wrote %s (%d bytes)\n", path, len(data))
	return nil
}

func extension(mime string) string {
	switch mime {
	case "image/png":
		return ".png"
	case "image/jpeg":
		return ".jpg"
	case "image/bmp":
		return ".bmp"
	case "image/tiff":
		return ".tiff"
	case "image/qoi":
		return ".qoi"
	}
	return ".bin"
}
