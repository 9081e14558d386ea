package host_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nodecast/nodecast/host"
	"github.com/nodecast/nodecast/host/cluster"
	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/internal/testbin"
	"github.com/nodecast/nodecast/internal/wait"
	"github.com/nodecast/nodecast/protocol"
)

// runNATS runs an embedded nats-server with JetStream, its store in a temp
// folder and its port chosen by the OS, as nats-server's test.RunServer does.
func runNATS(t *testing.T, tune ...func(*server.Options)) *server.Server {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true}
	for _, f := range tune {
		f(o)
	}
	s, err := server.NewServer(o)
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
	input := t.TempDir()             // the hosts share their input folder (as with NFS)
	sizes := []int{1250, 2048, 3200} // ≈4.7, ≈12.6 and ≈30.7 MB PNGs: parts are split to NATS's 1 MiB max_payload
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
			var e struct {
				Node *string `json:"node"`
			}
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

func smallPrompt(event string) map[string]any {
	return map[string]any{
		"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": 8, "height": 8, "batch_size": 1, "color": 0}},
		"2": map[string]any{"class_type": "SendImageOnWebSocket", "inputs": map[string]any{"images": []any{"1", 0}, "event": event}},
	}
}

// NATS lost while the host runs: the client's socket stays, POST /prompt
// answers 503 saying why, and once NATS is back the host has reconnected by
// itself and prompts run again; what was accepted before is not lost.
func TestClusterNATSLost(t *testing.T) {
	ns := runNATS(t)
	port := ns.Addr().(*net.TCPAddr).Port
	h, srv := startHost(t, host.Options{Cluster: &cluster.Options{URL: ns.ClientURL(), AckWait: 5 * time.Second}})
	_ = h
	c, err := testclient.Dial(srv.URL, "lost", testclient.Parts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if code, out := postPrompt(t, srv.URL, map[string]any{"client_id": "lost", "prompt": smallPrompt("before")}); code != http.StatusOK {
		t.Fatalf("POST /prompt: %d %v", code, out)
	}
	if err := c.WaitImages(1, time.Minute); err != nil {
		t.Fatal(err)
	}
	sd := ns.StoreDir()
	ns.Shutdown()
	ns.WaitForShutdown()

	var code int
	var out map[string]any
	wait.Until(time.Minute, func() bool { // until the host noticed
		code, out = postPrompt(t, srv.URL, map[string]any{"client_id": "lost", "prompt": smallPrompt("during")})
		return code != http.StatusOK
	})
	if code != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(out), "NATS connection to "+ns.ClientURL()) {
		t.Fatalf("POST /prompt with NATS down: %d %v, want 503 saying NATS is not connected", code, out)
	}
	t.Logf("503 answer: %v", out)

	ns2, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: sd, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns2.Start()
	if !ns2.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not restart")
	}
	defer ns2.Shutdown()
	if !wait.Until(time.Minute, func() bool { // the host reconnects by itself
		code, out = postPrompt(t, srv.URL, map[string]any{"client_id": "lost", "prompt": smallPrompt("after")})
		return code == http.StatusOK
	}) {
		t.Fatalf("no reconnection: %d %v", code, out)
	}
	if err := c.WaitImages(2, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("the client's socket did not survive: %v", err)
	}
}

// /interrupt on A stops the prompt that runs on C.
func TestClusterInterruptAnyHost(t *testing.T) {
	ns := runNATS(t)
	input := t.TempDir()
	prompt := map[string]any{}
	for i := range 8 {
		writeNoisePNG(t, input, fmt.Sprintf("n%d.png", i), 1024, uint64(i))
		prompt[fmt.Sprint(10+i)] = map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": fmt.Sprintf("n%d.png", i)}}
		prompt[fmt.Sprint(30+i)] = map[string]any{"class_type": "SendImageOnWebSocket", "inputs": map[string]any{"images": []any{fmt.Sprint(10 + i), 0}, "event": "interrupt.test"}}
	}
	_, a := startHost(t, host.Options{InputDir: input, Cluster: &cluster.Options{URL: ns.ClientURL(), Workers: -1}})
	_, _ = startHost(t, host.Options{InputDir: input, Cluster: &cluster.Options{URL: ns.ClientURL(), Workers: 1}})
	c, err := testclient.Dial(a.URL, "intr", testclient.Parts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if code, out := postPrompt(t, a.URL, map[string]any{"client_id": "intr", "prompt": prompt}); code != http.StatusOK {
		t.Fatalf("POST /prompt: %d %v", code, out)
	}
	if err := c.WaitImages(1, time.Minute); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(a.URL+"/interrupt", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := c.WaitMessage(protocol.TypeExecutionInterrupted, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := len(c.Images()); n >= 8 {
		t.Fatalf("%d images: the prompt was not stopped", n)
	}
}

// /queue and /history on any host show the whole cluster; a history delete
// on one host is seen by all.
func TestClusterQueueAndHistoryAnyHost(t *testing.T) {
	ns := runNATS(t)
	_, a := startHost(t, host.Options{Cluster: &cluster.Options{URL: ns.ClientURL(), Workers: -1}})
	_, b := startHost(t, host.Options{Cluster: &cluster.Options{URL: ns.ClientURL(), Workers: 1}})
	c, err := testclient.Dial(a.URL, "qh", testclient.Parts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	code, out := postPrompt(t, a.URL, map[string]any{"client_id": "qh", "prompt": smallPrompt("qh")})
	if code != http.StatusOK {
		t.Fatalf("POST /prompt: %d %v", code, out)
	}
	id := out["prompt_id"].(string)
	if _, err := c.WaitMessageWhere(protocol.TypeExecuting, time.Minute, func(d json.RawMessage) bool {
		var e struct {
			Node *string `json:"node"`
		}
		return json.Unmarshal(d, &e) == nil && e.Node == nil
	}); err != nil {
		t.Fatal(err)
	}
	getJSON := func(url string) map[string]any {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return m
	}
	for _, u := range []string{a.URL, b.URL} { // the history reaches every host
		wait.For(t, time.Minute, fmt.Sprintf("%s/history to have %s", u, id), func() bool {
			_, ok := getJSON(u + "/history")[id]
			return ok
		})
		q := getJSON(u + "/queue")
		if fmt.Sprint(q["queue_running"]) != "[]" || fmt.Sprint(q["queue_pending"]) != "[]" {
			t.Errorf("%s/queue after the prompt: %v", u, q)
		}
	}
	fams := scrapeMetrics(t, a.URL)
	if f := fams["nodecast_cluster_prompts_accepted_total"]; f == nil || f.GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Errorf("A's nodecast_cluster_prompts_accepted_total: %v, want 1", f)
	}
	fams = scrapeMetrics(t, b.URL)
	if f := fams["nodecast_cluster_prompts_taken_total"]; f == nil || f.GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Errorf("B's nodecast_cluster_prompts_taken_total: %v, want 1", f)
	}
	if f := fams["nodecast_cluster_stream_lag"]; f == nil {
		t.Error("no nodecast_cluster_stream_lag")
	}
	resp, err := http.Post(b.URL+"/history", "application/json", strings.NewReader(`{"clear":true}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wait.For(t, time.Minute, fmt.Sprintf("history cleared on B to drop %s on A", id), func() bool {
		_, ok := getJSON(a.URL + "/history")[id]
		return !ok
	})
}

// Uploads and outputs go through the JetStream object store: an image
// uploaded on A is loaded by a prompt posted on B and run on C (each host
// with its own folders), and the file SaveImage wrote on C is served by
// /view on A.
func TestClusterUploadAndOutputAnyHost(t *testing.T) {
	ns := runNATS(t)
	_, a := startHost(t, host.Options{Cluster: &cluster.Options{URL: ns.ClientURL(), Workers: -1}})
	_, b := startHost(t, host.Options{Cluster: &cluster.Options{URL: ns.ClientURL(), Workers: -1}})
	_, _ = startHost(t, host.Options{Cluster: &cluster.Options{URL: ns.ClientURL(), Workers: 1}})

	src := t.TempDir()
	writeNoisePNG(t, src, "up.png", 64, 9)
	data, err := os.ReadFile(filepath.Join(src, "up.png"))
	if err != nil {
		t.Fatal(err)
	}
	ctype, body := uploadBody(t, "shared.png", data, nil)
	resp, err := http.Post(a.URL+"/upload/image", ctype, body)
	if err != nil {
		t.Fatal(err)
	}
	var up struct{ Name string }
	json.NewDecoder(resp.Body).Decode(&up)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || up.Name == "" {
		t.Fatalf("upload on A: %d %+v", resp.StatusCode, up)
	}
	waitView := func(base, query string) []byte {
		var b []byte
		code := 0
		if !wait.Until(time.Minute, func() bool {
			resp, err := http.Get(base + "/view?" + query)
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			code = resp.StatusCode
			return code == http.StatusOK
		}) {
			t.Fatalf("%s/view?%s: %d", base, query, code)
		}
		return b
	}
	// The prompt is posted to B at once: B (validating) and C (running)
	// fetch the upload if their mirror has not written it yet.
	c, err := testclient.Dial(a.URL, "files", testclient.Parts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	code, out := postPrompt(t, b.URL, map[string]any{"client_id": "files", "prompt": map[string]any{
		"1": map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": up.Name}},
		"2": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": "clustered"}},
	}})
	if code != http.StatusOK {
		t.Fatalf("POST /prompt on B: %d %v", code, out)
	}
	msg, err := c.WaitMessage(protocol.TypeExecuted, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var ex struct {
		Output struct {
			Images []struct{ Filename, Subfolder, Type string } `json:"images"`
		} `json:"output"`
	}
	if err := json.Unmarshal(msg.Data, &ex); err != nil || len(ex.Output.Images) != 1 {
		t.Fatalf("executed: %s (%v)", msg.Data, err)
	}
	im := ex.Output.Images[0]
	got := waitView(a.URL, "type="+im.Type+"&subfolder="+im.Subfolder+"&filename="+im.Filename)
	if m, err := png.Decode(bytes.NewReader(got)); err != nil || m.Bounds().Dx() != 64 {
		t.Fatalf("the output on A: %v", err)
	}
}

// numbered is one message of a resume client's stream.
type numbered struct {
	seq  uint64
	typ  string // "PART" for a binary part
	data json.RawMessage
}

func readNumbered(t *testing.T, conn *websocket.Conn) numbered {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	kind, msg, err := conn.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if kind == websocket.BinaryMessage {
		h, _, err := protocol.ParsePartFrame(msg)
		if err != nil {
			t.Fatal(err)
		}
		return numbered{seq: h.Seq, typ: "PART"}
	}
	var m struct {
		Seq  uint64          `json:"seq"`
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(msg, &m); err != nil {
		t.Fatal(err)
	}
	return numbered{m.Seq, m.Type, m.Data}
}

// resumeDial connects as clientID asking to resume (from pos when not nil)
// and returns the server's resume state.
func resumeDial(t *testing.T, base, clientID string, pos *protocol.Position) (*websocket.Conn, protocol.ResumeState) {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws?clientId="+clientID, nil)
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string]any{protocol.FlagResume: true}
	if pos != nil {
		flags[protocol.FlagResumeFrom] = pos
	}
	if err := conn.WriteJSON(map[string]any{"type": protocol.TypeFeatureFlags, "data": flags}); err != nil {
		t.Fatal(err)
	}
	for {
		m := readNumbered(t, conn)
		if m.typ != protocol.TypeFeatureFlags {
			continue
		}
		var f struct {
			State protocol.ResumeState `json:"resume"`
		}
		if err := json.Unmarshal(m.data, &f); err != nil || f.State.Epoch == "" {
			t.Fatalf("feature_flags answer without resume state: %s", m.data)
		}
		return conn, f.State
	}
}

// A resume client drops from host A and reconnects to host B with
// resume_from: B replays everything after its seq, from the window in
// JetStream, including a whole prompt that ran while it was away.
//
// The server's max_payload is 64 KiB here: relayed parts and window entries
// are split to fit it.
func TestClusterResumeAcrossHosts(t *testing.T) {
	ns := runNATS(t, func(o *server.Options) { o.MaxPayload = 64 << 10 })
	_, a := startHost(t, host.Options{Cluster: &cluster.Options{URL: ns.ClientURL(), Workers: -1}})
	_, b := startHost(t, host.Options{Cluster: &cluster.Options{URL: ns.ClientURL(), Workers: 1}})
	conn, st := resumeDial(t, a.URL, "roamer", nil)
	code, out := postPrompt(t, b.URL, map[string]any{"client_id": "roamer", "prompt": noisePrompt(t, 300, "first")})
	if code != http.StatusOK {
		t.Fatalf("POST /prompt: %d %v", code, out)
	}
	first := out["prompt_id"].(string)
	last := st.Seq
	for { // the first prompt, live on A
		m := readNumbered(t, conn)
		if m.seq != 0 {
			if m.seq != last+1 {
				t.Fatalf("seq %d after %d on A", m.seq, last)
			}
			last = m.seq
		}
		if m.typ == protocol.TypeExecuting && isNullNode(m.data, first) {
			break
		}
	}
	conn.Close()

	code, out = postPrompt(t, b.URL, map[string]any{"client_id": "roamer", "prompt": noisePrompt(t, 400, "second")})
	if code != http.StatusOK {
		t.Fatalf("POST /prompt: %d %v", code, out)
	}
	second := out["prompt_id"].(string)
	wait.For(t, time.Minute, "the second prompt to finish", func() bool { // it ran while the client was away
		resp, err := http.Get(b.URL + "/history/" + second)
		if err != nil {
			t.Fatal(err)
		}
		var h map[string]any
		json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		_, ok := h[second]
		return ok
	})
	time.Sleep(200 * time.Millisecond) // A appends the terminal message after the history

	conn, st2 := resumeDial(t, b.URL, "roamer", &protocol.Position{Epoch: st.Epoch, Seq: last})
	defer conn.Close()
	if st2.Recovered == nil || !*st2.Recovered || st2.Epoch != st.Epoch {
		t.Fatalf("resume on B from %d: %+v", last, st2)
	}
	parts := 0
	for {
		m := readNumbered(t, conn)
		if m.seq == 0 {
			continue // the status message of the new connection
		}
		if m.seq != last+1 {
			t.Fatalf("replay on B: seq %d after %d", m.seq, last)
		}
		last = m.seq
		if m.typ == "PART" {
			parts++
		}
		if m.typ == protocol.TypeExecuting && isNullNode(m.data, second) {
			break
		}
	}
	if parts == 0 {
		t.Fatal("the replay on B had no image part of the second prompt")
	}
}

// noisePrompt sends one size² noise image (about 3·size² bytes as PNG).
func noisePrompt(t *testing.T, size int, event string) map[string]any {
	dir := t.TempDir()
	writeNoisePNG(t, dir, "n.png", size, uint64(size))
	data, err := os.ReadFile(filepath.Join(dir, "n.png"))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{
		"1": map[string]any{"class_type": "ETN_LoadImageBase64", "inputs": map[string]any{"image": base64.StdEncoding.EncodeToString(data)}},
		"2": map[string]any{"class_type": "SendImageOnWebSocket", "inputs": map[string]any{"images": []any{"1", 0}, "event": event}},
	}
}

func isNullNode(d json.RawMessage, promptID string) bool {
	var e struct {
		Node     *string `json:"node"`
		PromptID string  `json:"prompt_id"`
	}
	return json.Unmarshal(d, &e) == nil && e.Node == nil && e.PromptID == promptID
}

// TestClusterProgressText: a node's progress text crosses the cluster. The
// socket is on A, which runs nothing (it has the pack too, to validate the
// prompt, as every host of a cluster should); B runs the progresstext
// example pack as a real plugin subprocess; the client on A gets B's TEXT frames byte for
// byte as ComfyUI frames them, in order with the progress messages.
func TestClusterProgressText(t *testing.T) {
	ns := runNATS(t)
	plugins := testbin.PluginDir(t, "github.com/nodecast/nodecast/examples/progresstext", "progresstext")
	_, srvA := startHost(t, host.Options{PluginDir: plugins, Cluster: &cluster.Options{URL: ns.ClientURL(), Workers: -1, AckWait: 5 * time.Second}})
	startHost(t, host.Options{PluginDir: plugins, Cluster: &cluster.Options{URL: ns.ClientURL(), Workers: 1, AckWait: 5 * time.Second}})

	c, err := testclient.Dial(srvA.URL, "text-client", testclient.Plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	prompt := map[string]any{"5": map[string]any{"class_type": "ShowProgressText", "inputs": map[string]any{"text": "über", "steps": 3}}}
	code, out := postPrompt(t, srvA.URL, map[string]any{"client_id": "text-client", "prompt": prompt})
	if code != http.StatusOK {
		t.Fatalf("POST /prompt: %d %v", code, out)
	}
	log, err := c.WaitPromptEnd(2*time.Minute, out["prompt_id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var texts [][]byte
	progressed := 0
	for _, r := range log {
		switch {
		case r.Kind == testclient.Text:
			texts = append(texts, r.Frame)
		case r.Kind == testclient.JSON && r.Type == protocol.TypeProgress:
			progressed++
			if len(texts) < progressed {
				t.Errorf("progress %d arrived before its TEXT frame", progressed)
			}
		}
	}
	if len(texts) != 3 {
		t.Fatalf("got %d TEXT frames through the cluster, want 3; log: %v", len(texts), log)
	}
	for i, f := range texts {
		want := protocol.AppendTextFrame(nil, "5", fmt.Sprintf("über %d/3", i+1))
		if !bytes.Equal(f, want) {
			t.Errorf("TEXT frame %d: % x, want % x", i, f, want)
		}
	}
}
