package executor_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/host/hub"
	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/host/supervisor"
	"github.com/nodecast/nodecast/internal/testbin"
	"github.com/nodecast/nodecast/internal/wait"
	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// TestMain lets this test binary serve the "crashy" pack when the supervisor
// starts it as a plugin subprocess.
func TestMain(m *testing.M) {
	testbin.Main(m, plugins.Pack{Name: "crashy", Nodes: []plugins.Node{loadNode{}, repeatNode{}, crashSendNode{}}})
}

// loadNode makes a float32 IMAGE [1,side,side,3] of 0.5: LoadImage's place.
type loadNode struct{}

func (loadNode) Spec() plugins.Spec {
	return plugins.Spec{ClassType: "crashy.Load", Inputs: []plugins.Input{{Name: "side", Type: plugins.TypeInt}},
		Outputs: []plugins.Output{{Name: "IMAGE", Type: plugins.TypeImage}}}
}

func (loadNode) Run(_ context.Context, c *plugins.Call) (plugins.Result, error) {
	side, err := c.Int("side", 8)
	if err != nil {
		return plugins.Result{}, err
	}
	t := protocol.NewFloat32(1, int(side), int(side), 3)
	for i, f := 0, t.Float32s(); i < len(f); i++ {
		f[i] = 0.5
	}
	return plugins.Result{Outputs: []any{t}}, nil
}

// repeatNode is RepeatImageBatch.
type repeatNode struct{}

func (repeatNode) Spec() plugins.Spec {
	return plugins.Spec{ClassType: "crashy.Repeat", Inputs: []plugins.Input{
		{Name: "image", Type: plugins.TypeImage}, {Name: "amount", Type: plugins.TypeInt},
	}, Outputs: []plugins.Output{{Name: "IMAGE", Type: plugins.TypeImage}}}
}

func (repeatNode) Run(_ context.Context, c *plugins.Call) (plugins.Result, error) {
	img, err := c.Tensor("image")
	if err != nil {
		return plugins.Result{}, err
	}
	amount, err := c.Int("amount", 1)
	if err != nil {
		return plugins.Result{}, err
	}
	shape := append([]int(nil), img.Shape...)
	shape[0] *= int(amount)
	out := &protocol.Tensor{DType: img.DType, Shape: shape, Data: bytes.Repeat(img.Data, int(amount))}
	return plugins.Result{Outputs: []any{out}}, nil
}

// crashSendNode sends each image of its batch as a PNG in two parts. The
// first time (marker file absent) it dies after image 0 and the first part
// of image 1, once the host has that part (seen file present).
type crashSendNode struct{}

func (crashSendNode) Spec() plugins.Spec {
	return plugins.Spec{ClassType: "crashy.Send", OutputNode: true, Inputs: []plugins.Input{
		{Name: "images", Type: plugins.TypeImage}, {Name: "marker", Type: plugins.TypeString}, {Name: "seen", Type: plugins.TypeString},
	}}
}

func (crashSendNode) Run(ctx context.Context, c *plugins.Call) (plugins.Result, error) {
	images, err := c.Tensor("images")
	if err != nil {
		return plugins.Result{}, err
	}
	marker, _ := c.String("marker", "")
	seen, _ := c.String("seen", "")
	_, statErr := os.Stat(marker)
	crash := errors.Is(statErr, os.ErrNotExist)
	b, h, w := images.Shape[0], images.Shape[1], images.Shape[2]
	px := images.Float32s()
	try := time.Now().UnixNano() // image ids differ between tries, as sendimage's random ones do
	for i := range b {
		m := image.NewNRGBA(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				o := ((i*h+y)*w + x) * 3
				m.SetNRGBA(x, y, color.NRGBA{uint8(255 * px[o]), uint8(255 * px[o+1]), uint8(255 * px[o+2]), 255})
			}
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, m); err != nil {
			return plugins.Result{}, err
		}
		data := buf.Bytes()
		sum := sha256.Sum256(data)
		half := len(data) / 2
		for part, chunk := range [][]byte{data[:half], data[half:]} {
			p := &protocol.ImagePart{PartHeader: protocol.PartHeader{
				Event: "crashy", PromptID: c.PromptID, Node: c.NodeID, ImageID: fmt.Sprintf("%d-%d", try, i),
				Index: i, Batch: b, Part: part, Parts: 2, Offset: int64(part * half), Size: int64(len(data)),
				MIME: "image/png", SHA256: hex.EncodeToString(sum[:]),
			}, Wire: protocol.WireParts, Data: chunk}
			if err := c.Emitter.EmitPart(ctx, p); err != nil {
				return plugins.Result{}, err
			}
			if crash && i == 1 && part == 0 {
				os.WriteFile(marker, nil, 0o644)
				wait.Until(30*time.Second, func() bool { _, err := os.Stat(seen); return err == nil })
				os.Exit(3)
			}
		}
	}
	return plugins.Result{}, nil
}

// publishLog forwards to the hub and counts what the executor handed on;
// it writes the seen file once the first part of image 1 has gone through,
// so the crashing node dies after that, not before.
type publishLog struct {
	*hub.Hub
	seen string

	mu    sync.Mutex
	parts map[int]int // parts handed on, by batch index
}

func (l *publishLog) Publish(clientID string, p *protocol.ImagePart) error {
	err := l.Hub.Publish(clientID, p)
	l.mu.Lock()
	l.parts[p.Index]++
	l.mu.Unlock()
	if err == nil && p.Index == 1 && p.Part == 0 {
		os.WriteFile(l.seen, nil, 0o644)
	}
	return err
}

// TestRealPluginDeathMidBatch runs source → repeat → sender in one real
// plugin process whose sender dies after image 0 of 3: the executor starts
// the pack again, makes the lost tensors again, retries the sender, and a
// real WebSocket client gets images 0, 1 and 2 once each, as whole PNGs.
func TestRealPluginDeathMidBatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	sup, err := supervisor.Start(ctx, supervisor.Options{Logger: quiet, Packs: []supervisor.PackSource{{
		Name: "crashy", Command: func() (*exec.Cmd, error) { return plugins.SelfPackCommand("crashy") },
	}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	h := hub.New(hub.Options{Logger: quiet})
	defer h.Close()
	srv := httptest.NewServer(h)
	defer srv.Close()
	dir := t.TempDir()
	log := &publishLog{Hub: h, seen: filepath.Join(dir, "seen"), parts: map[int]int{}}
	e, err := executor.New(executor.Options{Runner: sup, Broadcaster: log})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c, err := testclient.Dial(srv.URL, "c1", testclient.Parts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	prompt := parsePrompt(t, fmt.Sprintf(`{
	  "1": {"class_type": "crashy.Load", "inputs": {"side": 8}},
	  "2": {"class_type": "crashy.Repeat", "inputs": {"image": ["1", 0], "amount": 3}},
	  "3": {"class_type": "crashy.Send", "inputs": {"images": ["2", 0], "marker": %q, "seen": %q}}
	}`, filepath.Join(dir, "crashed"), log.seen))
	acc, verr := e.Submit(ctx, executor.Request{Prompt: prompt, ClientID: "c1"})
	if verr != nil {
		t.Fatal(verr)
	}
	entry, err := e.Wait(ctx, acc.PromptID)
	if err != nil {
		t.Fatal(err)
	}
	if entry.Status.StatusStr != "success" {
		t.Fatalf("status %+v", entry.Status)
	}
	if _, err := c.WaitMessageWhere(protocol.TypeExecuting, time.Minute, func(d json.RawMessage) bool {
		var x protocol.ExecutingData
		return json.Unmarshal(d, &x) == nil && x.Node == nil && x.PromptID == acc.PromptID
	}); err != nil {
		t.Fatal(err)
	}
	if p := sup.Packs()[0]; p.Generation != 2 {
		t.Errorf("pack generation %d, want 2: one death, one restart", p.Generation)
	}
	var got []int
	for _, img := range c.Images() {
		got = append(got, img.Index)
		m, err := png.Decode(bytes.NewReader(img.Data))
		if err != nil {
			t.Fatalf("image %d: %v", img.Index, err)
		}
		if r, _, _, _ := m.At(3, 3).RGBA(); r>>8 != 127 {
			t.Errorf("image %d: red %d, want 127", img.Index, r>>8)
		}
	}
	sort.Ints(got)
	if !reflect.DeepEqual(got, []int{0, 1, 2}) {
		t.Errorf("client got images %v, want [0 1 2]: each once", got)
	}
	// Image 0 went through once; image 1's first part twice (once torn,
	// dropped by the hub), then whole; image 2 once.
	log.mu.Lock()
	parts := fmt.Sprint(log.parts)
	log.mu.Unlock()
	if parts != "map[0:2 1:3 2:2]" {
		t.Errorf("parts handed on by index %s, want map[0:2 1:3 2:2]", parts)
	}
	var executing []string
	for _, m := range c.Messages() {
		var x protocol.ExecutingData
		if m.Type == protocol.TypeExecuting && json.Unmarshal(m.Data, &x) == nil && x.Node != nil {
			executing = append(executing, *x.Node)
		}
	}
	if !reflect.DeepEqual(executing, []string{"1", "2", "3"}) {
		t.Errorf("client saw executing %v, want one per node", executing)
	}
	if err := c.Err(); err != nil {
		t.Error(err)
	}
}
