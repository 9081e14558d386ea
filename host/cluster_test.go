package host_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/host/cluster"
	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/protocol"
)

// runNATS runs an embedded nats-server with JetStream, its store in a temp
// folder and its port chosen by the OS, as nats-server's test.RunServer does.
func runNATS(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// writeNoisePNG writes a size² RGB noise PNG (incompressible: about
// 3·size² bytes) to dir/name and returns its pixels as sendimage makes them.
func writeNoisePNG(t *testing.T, dir, name string, size int, seed uint64) []byte {
	t.Helper()
	px := expectedPixels(noiseBatch(1, size, seed), 0)
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	for i := 0; i < size*size; i++ {
		copy(img.Pix[4*i:4*i+3], px[3*i:3*i+3])
		img.Pix[4*i+3] = 255
	}
	var b bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.NoCompression}).Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return px
}

func postPrompt(t *testing.T, url string, body any) (int, map[string]any) {
	t.Helper()
	j, _ := json.Marshal(body)
	resp, err := http.Post(url+"/prompt", "application/json", bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// Three hosts on one NATS JetStream: the client's socket is on A, the
// prompt is posted to B, and only C runs prompts. Every image arrives on A
// whole, once, with the pixels of the files loaded; the prompt ends with one
// terminal message; the message sequence is the one a single host sends.
func TestClusterThreeHosts(t *testing.T) {
	ns := runNATS(t)
	input := t.TempDir() // the hosts share their input folder (as with NFS)
	sizes := []int{1250, 2048} // ≈4.7 MB and ≈12.6 MB PNGs: parts are split to NATS's 1 MiB max_payload
	prompt := map[string]any{}
	for i, s := range sizes {
		writeNoisePNG(t, input, fmt.Sprintf("noise%d.png", i), s, uint64(i+1))
		prompt[fmt.Sprint(10+i)] = map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": fmt.Sprintf("noise%d.png", i)}}
		prompt[fmt.Sprint(20+i)] = map[string]any{"class_type": "SendImageOnWebSocket", "inputs": map[string]any{"images": []any{fmt.Sprint(10 + i), 0}, "event": "cluster.test"}}
	}
	hostOn := func(workers int) (*host.Host, string) {
		h, srv := startHost(t, host.Options{InputDir: input, Cluster: &cluster.Options{URL: ns.ClientURL(), Workers: workers, AckWait: 5 * time.Second}})
		return h, srv.URL
	}
	_, urlA := hostOn(-1)
	_, urlB := hostOn(-1)
	hC, urlC := hostOn(1)
	single, srvS := startHost(t, host.Options{InputDir: input})
	urlS := srvS.URL
	_ = hC
	_ = single

	run := func(wsURL, postURL, clientID string) *testclient.Client {
		c, err := testclient.Dial(wsURL, clientID, testclient.Parts, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		code, out := postPrompt(t, postURL, map[string]any{"client_id": clientID, "prompt": prompt})
		if code != http.StatusOK {
			t.Fatalf("POST /prompt: %d %v", code, out)
		}
		if _, err := c.WaitMessageWhere(protocol.TypeExecuting, 5*time.Minute, func(d json.RawMessage) bool {
			var e struct{ Node *string `json:"node"` }
			return json.Unmarshal(d, &e) == nil && e.Node == nil
		}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := run(urlA, urlB, "cluster-client")
	one := run(urlS, urlS, "single-client")

	imgs := c.Images()
	if len(imgs) != len(sizes) {
		t.Fatalf("client on A got %d images, want %d (no image twice, none lost)", len(imgs), len(sizes))
	}
	seen, singleSHA := map[string]bool{}, map[string]string{}
	for _, im := range imgs {
		k := im.Node + "/" + fmt.Sprint(im.Index)
		if seen[k] {
			t.Fatalf("image %s arrived twice", k)
		}
		seen[k] = true
		i := int(im.Node[1] - '0')
		cfg, err := png.DecodeConfig(bytes.NewReader(im.Data))
		if err != nil || cfg.Width != sizes[i] {
			t.Fatalf("image %s: %v, width %d, want %d", k, err, cfg.Width, sizes[i])
		}
		if _, err := png.Decode(bytes.NewReader(im.Data)); err != nil {
			t.Fatalf("image %s: %v", k, err)
		}
		singleSHA[k] = ""
		for _, o := range one.Images() {
			if o.Node == im.Node && o.Index == im.Index {
				singleSHA[k] = o.SHA256
			}
		}
		if singleSHA[k] != im.SHA256 || im.SHA256 == "" {
			t.Errorf("image %s: sha256 %s through the cluster, %s through one host", k, im.SHA256, singleSHA[k])
		}
	}
	if got, want := typesOf(c.Messages()), typesOf(one.Messages()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("message sequence through the cluster:\n%v\nthrough one host:\n%v", got, want)
	}
	_ = urlC
}

// typesOf lists the messages' types, leaving out status messages (each host
// reports its own queue) and ones that are not about a prompt.
func typesOf(msgs []protocol.RawMessage) []string {
	var out []string
	for _, m := range msgs {
		if m.Type == protocol.TypeStatus || m.Type == protocol.TypeFeatureFlags {
			continue
		}
		out = append(out, m.Type)
	}
	return out
}
