package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/internal/testbin"
	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/plugins/builtin"
	"github.com/nodecast/nodecast/protocol"
)

// TestMain lets this test binary serve the built-in pack when the host starts
// it as a plugin subprocess (host.SelfPack), as the nodecast binary does.
func TestMain(m *testing.M) { testbin.Main(m, builtin.Pack()) }

// pluginDir builds this example with `go build`, as its README says, once
// per test run (without the race detector, like a user's build), and returns
// a fresh plugin folder holding it as "customnode".
func pluginDir(t *testing.T) string {
	t.Helper()
	return testbin.PluginDir(t, "github.com/nodecast/nodecast/examples/customnode", PackName)
}

// newHost starts a host with the built-in pack (this test binary) and the
// plugin folder dir.
func newHost(t *testing.T, dir string) (*host.Host, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := host.New(ctx, host.Options{
		Packs:     []host.PackSource{host.SelfPack(builtin.PackName)},
		PluginDir: dir,
		InputDir:  t.TempDir(),
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err == nil {
		t.Cleanup(func() { h.Close() })
	}
	return h, err
}

// TestHostLoadsPlugin checks that the host lists the plugin's class next to
// the built-in ones, each served by its own pack.
func TestHostLoadsPlugin(t *testing.T) {
	dir := pluginDir(t)
	h, err := newHost(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	packOf := map[string]string{}
	for _, c := range h.Classes() {
		packOf[c.Spec.ClassType] = c.Pack
		if c.Spec.ClassType == ClassType {
			s := c.Spec
			if !s.OutputNode || s.DisplayName != "Send Image as QOI (WebSocket)" || s.Category != "image/websocket" || len(s.Inputs) != 3 {
				t.Errorf("spec as the host sees it: %+v", s)
			}
		}
	}
	for class, want := range map[string]string{ClassType: PackName, "SendImageOnWebSocket": "builtin", "EmptyImage": "builtin"} {
		if packOf[class] != want {
			t.Errorf("class %s served by %q, want %q", class, packOf[class], want)
		}
	}
	var paths []string
	for _, p := range h.Packs() {
		paths = append(paths, p.Name+"="+p.Path)
	}
	if want := PackName + "=" + filepath.Join(dir, PackName); !strings.Contains(strings.Join(paths, " "), want) {
		t.Errorf("packs %v, want one %s", paths, want)
	}
}

// wsClient is a ComfyUI client that opted into PART frames.
type wsClient struct {
	conn *websocket.Conn
}

func dialParts(t *testing.T, serverURL, clientID string) *wsClient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(serverURL, "http") + "/ws?clientId=" + clientID
	conn, _, err := (&websocket.Dialer{HandshakeTimeout: 10 * time.Second}).Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &wsClient{conn: conn}
	if m := c.readJSON(t); m.Type != protocol.TypeStatus {
		t.Fatalf("first message %s, want status", m.Type)
	}
	flags := protocol.Message{Type: protocol.TypeFeatureFlags, Data: protocol.FeatureFlags{protocol.FlagImageParts: true}}
	if err := conn.WriteJSON(flags); err != nil {
		t.Fatal(err)
	}
	// The server's answer says the flags are in place for what follows.
	if m := c.readJSON(t); m.Type != protocol.TypeFeatureFlags {
		t.Fatalf("answer to feature_flags: %s", m.Type)
	}
	return c
}

func (c *wsClient) read(t *testing.T) (int, []byte) {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a hang guard, not a speed check
	typ, msg, err := c.conn.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return typ, msg
}

func (c *wsClient) readJSON(t *testing.T) protocol.RawMessage {
	t.Helper()
	typ, msg := c.read(t)
	var m protocol.RawMessage
	if typ != websocket.TextMessage || json.Unmarshal(msg, &m) != nil {
		t.Fatalf("want a JSON message, got type %d: %.100q", typ, msg)
	}
	return m
}

// TestCustomSenderToWebSocket runs the plugin's node in its own process,
// through the host, to a real WebSocket client on 127.0.0.1, and decodes
// what arrives.
func TestCustomSenderToWebSocket(t *testing.T) {
	h, err := newHost(t, pluginDir(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(srv.Close)

	tests := []struct {
		name     string
		images   *protocol.Tensor
		partSize int64
		channels int
	}{
		{"rgb batch in small parts", gradientBatch(2, 12, 16, 3), 100, 3},
		{"rgba one part", gradientBatch(1, 9, 5, 4), 0, 4},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clientID := fmt.Sprintf("qoi-client-%d", i)
			c := dialParts(t, srv.URL, clientID)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := h.RunNode(ctx, host.NodeCall{
				Class: ClassType, NodeID: "5", ClientID: clientID,
				Inputs: map[string]any{"images": tt.images, "event": "qoi.preview", "part_size": tt.partSize},
			})
			if err != nil {
				t.Fatal(err)
			}

			batch := tt.images.Shape[0]
			r := protocol.NewReassembler(protocol.ReassemblerOptions{})
			var got []*protocol.Image
			frames, progress := 0, 0
			for len(got) < batch || progress < batch {
				typ, msg := c.read(t)
				if typ == websocket.TextMessage {
					var m protocol.RawMessage
					if err := json.Unmarshal(msg, &m); err != nil {
						t.Fatal(err)
					}
					if m.Type != protocol.TypeProgress {
						t.Fatalf("unexpected message %s: %s", m.Type, m.Data)
					}
					progress++
					continue
				}
				if ft, err := protocol.FrameType(msg); err != nil || ft != protocol.BinaryPart {
					t.Fatalf("binary frame type %#x (%v), want PART", ft, err)
				}
				frames++
				img, err := r.AddFrame(msg)
				if err != nil {
					t.Fatal(err)
				}
				if img != nil {
					got = append(got, img)
				}
			}
			if tt.partSize > 0 && frames <= batch {
				t.Errorf("%d PART frames for %d images with part_size %d, want more", frames, batch, tt.partSize)
			}
			ui, _ := res.UI["images"].([]any)
			if len(ui) != batch {
				t.Fatalf("ui %v", res.UI)
			}
			for _, img := range got {
				if img.Event != "qoi.preview" || img.MIME != "image/qoi" || img.Node != "5" || img.PromptID != res.PromptID || img.Batch != batch {
					t.Fatalf("image %+v", img)
				}
				entry := ui[img.Index].(map[string]any)
				if entry["sha256"] != img.SHA256 || entry["content-type"] != "image/qoi" {
					t.Errorf("ui entry %v does not match image %d (sha256 %s)", entry, img.Index, img.SHA256)
				}
				w, hgt, ch, rgba, err := decodeQOI(img.Data)
				if err != nil {
					t.Fatal(err)
				}
				if w != tt.images.Shape[2] || hgt != tt.images.Shape[1] || ch != tt.channels {
					t.Fatalf("image %d: %dx%d channels %d", img.Index, w, hgt, ch)
				}
				if string(rgba) != string(expectedRGBA(tt.images, img.Index)) {
					t.Fatalf("image %d: pixels differ from the tensor's", img.Index)
				}
			}
		})
	}
}

// TestChecksumFile checks SHA256SUMS in the plugin folder: a wrong sum stops
// the host from starting the plugin, and so from starting at all.
func TestChecksumFile(t *testing.T) {
	tests := []struct {
		name    string
		sum     func(right string) string
		sep     string // between sum and file name: "  ", or " *" as sha256sum -b writes
		wantErr bool
	}{
		{"right sum", func(right string) string { return right }, "  ", false},
		{"right sum, binary mode", func(right string) string { return right }, " *", false},
		{"wrong sum", func(string) string { return strings.Repeat("ab", 32) }, "  ", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := pluginDir(t)
			bin, err := os.ReadFile(filepath.Join(dir, PackName))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(bin)
			line := "# sha256sum plugins.d/*\n" + tt.sum(hex.EncodeToString(sum[:])) + tt.sep + PackName + "\n"
			if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(line), 0o644); err != nil {
				t.Fatal(err)
			}
			h, err := newHost(t, dir)
			if !tt.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range h.Classes() {
					if c.Spec.ClassType == ClassType {
						return
					}
				}
				t.Fatalf("%s not loaded", ClassType)
			}
			if err == nil {
				t.Fatal("host started with a plugin whose checksum is wrong")
			}
			if !errors.Is(err, plugins.ErrChecksum) {
				t.Errorf("err = %v, want plugins.ErrChecksum", err)
			}
			var ce *plugins.ChecksumError
			if !errors.As(err, &ce) || hex.EncodeToString(ce.Got) != hex.EncodeToString(sum[:]) {
				t.Errorf("err = %#v, want a *plugins.ChecksumError with the binary's sum", err)
			}
			for _, want := range []string{PackName, "sha256", strings.Repeat("ab", 32)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
		})
	}
}
