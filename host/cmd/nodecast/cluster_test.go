package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/internal/wait"
	"github.com/nodecast/nodecast/protocol"
)

// A NATS server that cannot be reached is a clear error and exit code 1.
func TestClusterNATSUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, stderr, code := runNodecast(t, "serve", "--listen", "127.0.0.1:0", "--nats", "nats://"+addr)
	if code != 1 || !strings.Contains(stderr, "cannot connect to NATS at nats://"+addr) {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 and %q", code, stderr, "cannot connect to NATS at nats://"+addr)
	}
}

// clusterHost is a `nodecast serve` subprocess in its own process group
// (nodecastCommand), so that SIGKILL takes its plugin processes too.
type clusterHost struct {
	cmd    *exec.Cmd
	url    string
	stderr *outputBuffer
	exited chan struct{}
}

func startClusterHost(t *testing.T, natsURL, inputDir, config string) *clusterHost {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "nodecast.yaml")
	writeFile(t, cfg, config)
	cmd := nodecastCommand(context.Background(), t, "serve", "--listen", "127.0.0.1:0", "--nats", natsURL,
		"--input-dir", inputDir, "--config", cfg, "--plugins", filepath.Join(dir, "none"))
	h := &clusterHost{cmd: cmd, stderr: newOutputBuffer(), exited: make(chan struct{})}
	stdout := newOutputBuffer()
	cmd.Stdout, cmd.Stderr = stdout, h.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(h.exited) }()
	t.Cleanup(func() {
		h.kill()
		if t.Failed() {
			t.Logf("stderr of %s:\n%s", h.url, h.stderr.String())
		}
	})
	h.url = "http://" + stdout.waitFor(t, servingLine, hangGuard, h.exited)
	return h
}

// kill sends SIGKILL to the host and its plugins and waits for it.
func (h *clusterHost) kill() {
	_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
	<-h.exited
}

// writeNoise writes n incompressible size² PNGs to dir and returns a prompt
// that loads each and sends it over the WebSocket.
func writeNoise(t *testing.T, dir string, n, size int) map[string]any {
	t.Helper()
	prompt := map[string]any{}
	for i := range n {
		r := rand.New(rand.NewPCG(uint64(i), 7))
		img := image.NewNRGBA(image.Rect(0, 0, size, size))
		for j := range img.Pix {
			img.Pix[j] = byte(r.Uint32())
			if j%4 == 3 {
				img.Pix[j] = 255
			}
		}
		var b bytes.Buffer
		if err := (&png.Encoder{CompressionLevel: png.NoCompression}).Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("noise%d.png", i)
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		prompt[fmt.Sprint(100+i)] = map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": name}}
		prompt[fmt.Sprint(200+i)] = map[string]any{"class_type": "SendImageOnWebSocket",
			"inputs": map[string]any{"images": []any{fmt.Sprint(100 + i), 0}, "event": "cluster"}}
	}
	return prompt
}

func post(t *testing.T, url, clientID string, prompt map[string]any) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"client_id": clientID, "prompt": prompt})
	resp, err := http.Post(url+"/prompt", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var acc struct {
		PromptID string `json:"prompt_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&acc); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /prompt on %s: %d %v", url, resp.StatusCode, err)
	}
	return acc.PromptID
}

func isTerminal(promptID string) func(json.RawMessage) bool {
	return func(d json.RawMessage) bool {
		var e struct {
			Node     *string `json:"node"`
			PromptID string  `json:"prompt_id"`
		}
		return json.Unmarshal(d, &e) == nil && e.Node == nil && e.PromptID == promptID
	}
}

// checkDelivery asserts n images, each once and whole, and no terminal
// message for promptID besides the one WaitMessageWhere took.
func checkDelivery(t *testing.T, c *testclient.Client, promptID string, n int) {
	t.Helper()
	seen := map[string]bool{}
	for _, im := range c.Images() {
		k := im.Node + "/" + fmt.Sprint(im.Index)
		if seen[k] {
			t.Errorf("image %s arrived twice", k)
		}
		seen[k] = true
		if _, err := png.Decode(bytes.NewReader(im.Data)); err != nil {
			t.Errorf("image %s: %v", k, err)
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct images, want %d", len(seen), n)
	}
	terminal := 0
	for _, m := range c.Messages() {
		if m.Type == protocol.TypeExecuting && isTerminal(promptID)(m.Data) {
			terminal++
		}
	}
	if terminal != 0 {
		t.Errorf("%d terminal messages for the prompt, want 1", terminal+1)
	}
}

// SIGKILL of the host running a prompt: JetStream gives the prompt to
// another host after the ack deadline; the client on a third host gets every
// image whole and once, and one terminal message.
func TestClusterSIGKILLReruns(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	defer ns.Shutdown()
	input := t.TempDir()
	const images = 6
	prompt := writeNoise(t, input, images, 1600) // ≈7.7 MB each
	a := startClusterHost(t, ns.ClientURL(), input, "cluster:\n  workers: -1\n")
	worker := "cluster:\n  workers: 1\n  ack_wait: 3s\n"
	c1 := startClusterHost(t, ns.ClientURL(), input, worker)

	client, err := testclient.Dial(a.url, "sigkill", testclient.Parts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	id := post(t, a.url, "sigkill", prompt)
	if err := client.WaitImages(1, hangGuard); err != nil {
		t.Fatal(err)
	}
	for _, m := range client.Messages() {
		if m.Type == protocol.TypeExecuting && isTerminal(id)(m.Data) {
			t.Fatal("the prompt ended before the kill: make it longer")
		}
	}
	before := len(client.Images())
	c1.kill()
	killed := time.Now()
	c2 := startClusterHost(t, ns.ClientURL(), input, worker)
	_ = c2
	if err := client.WaitImages(before+1, 2*hangGuard); err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGKILL to the rerun's first new image: %v (ack_wait 3s, includes starting the second host)", time.Since(killed))
	if _, err := client.WaitMessageWhere(protocol.TypeExecuting, 2*hangGuard, isTerminal(id)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // a duplicate would come right after
	checkDelivery(t, client, id, images)
}

// Two `nodecast serve` processes on the standalone nats-server binary (the
// one Debian ships, 2.9): a client on one host gets the images of a prompt
// posted to the other.
func TestClusterStandaloneNATS(t *testing.T) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nats-server is not installed (.ci/run installs Debian's): ", err)
		}
		t.Skip("nats-server binary not found (apt-get install nats-server): the standalone-server test is skipped")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ns := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-sd", t.TempDir())
	var nsOut bytes.Buffer
	ns.Stdout, ns.Stderr = &nsOut, &nsOut
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { ns.Process.Kill(); ns.Wait() }()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	if !wait.Until(time.Minute, func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("nats-server did not listen:\n%s", nsOut.String())
	}
	out, _ := exec.Command(bin, "--version").Output()
	t.Logf("standalone %s", strings.TrimSpace(string(out)))
	input := t.TempDir()
	prompt := writeNoise(t, input, 2, 1300) // ≈5 MB each, over the 1 MiB max_payload
	a := startClusterHost(t, url, input, "cluster:\n  workers: -1\n")
	b := startClusterHost(t, url, input, "cluster:\n  workers: 1\n")
	client, err := testclient.Dial(a.url, "standalone", testclient.Parts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	id := post(t, b.url, "standalone", prompt)
	if _, err := client.WaitMessageWhere(protocol.TypeExecuting, 2*hangGuard, isTerminal(id)); err != nil {
		t.Fatal(err)
	}
	checkDelivery(t, client, id, 2)
}
