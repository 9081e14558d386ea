// Command recv is a nodecast client: it connects to a host's WebSocket,
// negotiates PART frames, optionally queues a prompt, reassembles every image
// it receives (checking size and sha256), writes them to a folder and shows
// progress as it goes.
//
//	go run ./examples/recv -url http://127.0.0.1:8188 -out ./received [-prompt workflow.json | -workflow NAME]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/gorilla/websocket"

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
	if o.clientID == "" {
		o.clientID = fmt.Sprintf("recv-%d", time.Now().UnixNano())
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	return receive(ctx, o, os.Stdout)
}

func receive(ctx context.Context, o options, log io.Writer) error {
	base, err := url.Parse(o.url)
	if err != nil {
		return err
	}
	ws := *base
	ws.Scheme = strings.Replace(base.Scheme, "http", "ws", 1)
	ws.Path = strings.TrimSuffix(base.Path, "/") + "/ws"
	ws.RawQuery = url.Values{"clientId": {o.clientID}}.Encode()
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, ws.String(), nil)
	if err != nil {
		return fmt.Errorf("connect %s: %w", ws.String(), err)
	}
	defer conn.Close()
	go func() { <-ctx.Done(); conn.Close() }()

	// Opt in to PART frames: every message then stays under the limit, and
	// every image is checked end to end.
	if err := conn.WriteJSON(protocol.Message{Type: protocol.TypeFeatureFlags, Data: protocol.FeatureFlags{
		protocol.FlagImageParts: true, protocol.FlagPreviewMetadata: true,
	}}); err != nil {
		return err
	}

	var promptID string
	if o.promptFile != "" || o.workflow != "" {
		if promptID, err = queue(ctx, base, o); err != nil {
			return err
		}
		fmt.Fprintf(log, "queued prompt %s\n", promptID)
	}

	r := protocol.NewReassembler(protocol.ReassemblerOptions{})
	saved := 0
	for {
		typ, msg, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read: %w", err)
		}
		var img *protocol.Image
		switch typ {
		case websocket.BinaryMessage:
			ft, err := protocol.FrameType(msg)
			if err != nil {
				return err
			}
			switch ft {
			case protocol.BinaryPart:
				if img, err = r.AddFrame(msg); err != nil {
					return err
				}
			case protocol.BinaryPreviewImage:
				format, data, err := protocol.ParseImageFrame(msg)
				if err != nil {
					return err
				}
				ext := ".png"
				if format == protocol.ImageFormatJPEG {
					ext = ".jpg"
				}
				if err := save(o.out, fmt.Sprintf("whole-%03d%s", saved, ext), data, log); err != nil {
					return err
				}
				saved++
			}
		case websocket.TextMessage:
			var m protocol.RawMessage
			if err := json.Unmarshal(msg, &m); err != nil {
				return fmt.Errorf("bad JSON message: %w", err)
			}
			switch m.Type {
			case protocol.TypeProgress:
				var p protocol.ProgressData
				if json.Unmarshal(m.Data, &p) == nil {
					fmt.Fprintf(log, "progress node %s: %d/%d\n", p.Node, p.Value, p.Max)
				}
			case protocol.TypeExecutionError:
				var e protocol.ExecutionErrorData
				if json.Unmarshal(m.Data, &e) == nil && (promptID == "" || e.PromptID == promptID) {
					return fmt.Errorf("prompt %s failed in node %s (%s): %s", e.PromptID, e.NodeID, e.NodeType, e.ExceptionMessage)
				}
			case protocol.TypeExecuting:
				var e protocol.ExecutingData
				if json.Unmarshal(m.Data, &e) == nil && e.Node == nil && promptID != "" && e.PromptID == promptID {
					if pending := r.Pending(); len(pending) > 0 {
						return fmt.Errorf("prompt ended with %d incomplete images", len(pending))
					}
					fmt.Fprintf(log, "prompt %s done: %d images\n", promptID, saved)
					return nil
				}
			default:
				// A base64 JSON part (the fallback shape) carries part_b64.
				if bytes.Contains(m.Data, []byte(`"part_b64"`)) {
					if img, err = r.AddB64(m.Type, m.Data); err != nil {
						return err
					}
				}
			}
		}
		if img != nil {
			name := fmt.Sprintf("%s-%s-%03d%s", img.Event, img.Node, img.Index, extension(img.MIME))
			if err := save(o.out, name, img.Data, log); err != nil {
				return err
			}
			saved++
		}
		if o.count > 0 && saved >= o.count {
			return nil
		}
	}
}

func queue(ctx context.Context, base *url.URL, o options) (string, error) {
	body := map[string]any{"client_id": o.clientID}
	if o.workflow != "" {
		body["workflow"] = o.workflow
	} else {
		raw, err := os.ReadFile(o.promptFile)
		if err != nil {
			return "", err
		}
		body["prompt"] = json.RawMessage(raw)
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base.String(), "/")+"/prompt", bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("POST /prompt: %s: %s", resp.Status, reply)
	}
	var ok struct {
		PromptID string `json:"prompt_id"`
	}
	if err := json.Unmarshal(reply, &ok); err != nil || ok.PromptID == "" {
		return "", errors.New("POST /prompt: no prompt_id in " + string(reply))
	}
	return ok.PromptID, nil
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
