package e2e_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nodecast/nodecast/host/config"
	"github.com/nodecast/nodecast/internal/wait"
	"github.com/nodecast/nodecast/sendimage"
)

// chromiumPath finds a Chromium: $NODECAST_CHROMIUM, then Debian's and the
// usual names on PATH. "" when there is none.
func chromiumPath() string {
	if p := os.Getenv("NODECAST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifactDir is where browser tests leave screenshots: $NODECAST_ARTIFACTS
// when set (CI keeps it), else the test's own temporary folder.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("NODECAST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// startBrowser starts a headless Chromium with a new empty profile and
// returns a tab's context and the profile folder (which names its processes).
func startBrowser(t *testing.T) (context.Context, string) {
	t.Helper()
	exe := chromiumPath()
	if exe == "" {
		t.Skip("no Chromium binary (/usr/bin/chromium, chromium, google-chrome on PATH, or $NODECAST_CHROMIUM): apt-get install chromium")
	}
	profile := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1400, 1000),
		chromedp.Flag("js-flags", "--expose-gc"), // lets a test collect garbage before measuring memory
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", exe, err)
	}
	return ctx, profile
}

// wsCutProxy forwards TCP connections to the host and cuts WebSocket
// connections after a given number of bytes towards the client, mid-frame,
// as a network drop would; plain HTTP passes untouched so that the page
// itself loads. A WebSocket is recognized by the host's 101 answer, since a
// client may upgrade a keep-alive connection that carried other requests
// first (aiohttp reuses its pooled connections so).
type wsCutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cuts   []int64 // byte budgets of the next WebSocket connections to cut
	cut    atomic.Int64
	ws     atomic.Int64 // WebSocket connections seen
}

func startWSCutProxy(t *testing.T, target string, cuts ...int64) *wsCutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &wsCutProxy{ln: ln, target: target, cuts: cuts}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(in)
		}
	}()
	return p
}

func (p *wsCutProxy) URL() string { return "http://" + p.ln.Addr().String() }

var switching = []byte("HTTP/1.1 101 ")

func (p *wsCutProxy) forward(in net.Conn) {
	defer in.Close()
	out, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer out.Close()
	go func() { io.Copy(out, in); out.Close() }()
	buf := make([]byte, 64<<10)
	var tail []byte     // the end of what passed, to find a 101 split across reads
	budget := int64(-1) // bytes left before the cut; -1 = not a WebSocket (yet), or not cut
	upgraded := false
	for {
		n, err := out.Read(buf)
		chunk := buf[:n]
		if !upgraded && n > 0 {
			look := append(tail, chunk...)
			if i := bytes.Index(look, switching); i >= 0 {
				upgraded = true
				p.ws.Add(1)
				p.mu.Lock()
				if len(p.cuts) > 0 {
					budget, p.cuts = p.cuts[0], p.cuts[1:]
					budget += int64(len(look) - i) // count from the 101 on
				}
				p.mu.Unlock()
			} else {
				tail = append(tail[:0], look[max(0, len(look)-len(switching)):]...)
			}
		}
		if budget >= 0 && int64(len(chunk)) >= budget {
			in.Write(chunk[:budget])
			p.cut.Add(1) // the deferred closes cut both sides
			return
		}
		if budget >= 0 {
			budget -= int64(len(chunk))
		}
		if _, werr := in.Write(chunk); werr != nil || err != nil {
			return
		}
	}
}

// noisePNG is a size×size RGB image of uniform noise (incompressible: each
// 2048² PNG is about 12 MiB, three parts at the default part size), its PNG
// as the senders encode it, and a few of its pixels to check in the page.
type noisePNG struct {
	PNG     []byte
	SHA256  string
	Samples [][5]int // x, y, r, g, b
}

func makeNoisePNG(t *testing.T, size int, seed uint64) *noisePNG {
	t.Helper()
	px := sendimage.NewPixels(size, size, 3)
	rng := rand.New(rand.NewPCG(seed, 2))
	for i := 0; i+8 <= len(px.Pix); i += 8 {
		v := rng.Uint64()
		for k := range 8 {
			px.Pix[i+k] = byte(v >> (8 * k))
		}
	}
	enc, err := sendimage.NewEncoder("png", sendimage.EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := enc.Encode(&buf, px); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	n := &noisePNG{PNG: buf.Bytes(), SHA256: hex.EncodeToString(sum[:])}
	for _, xy := range [][2]int{{0, 0}, {size - 1, 0}, {0, size - 1}, {size - 1, size - 1}, {size / 2, size / 3}, {17, 1999 % size}, {size / 3, size / 2}} {
		o := (xy[1]*size + xy[0]) * 3
		n.Samples = append(n.Samples, [5]int{xy[0], xy[1], int(px.Pix[o]), int(px.Pix[o+1]), int(px.Pix[o+2])})
	}
	return n
}

// pageImage is what the page reports about one image it received.
type pageImage struct {
	Index    int    `json:"index"`
	Node     string `json:"node"`
	Event    string `json:"event"`
	Width    int    `json:"width"`
	Height   int    `json:"height"`
	SHA256   string `json:"sha256"`   // what client.js checked against the host's
	Recheck  string `json:"recheck"`  // the Blob's bytes hashed again in the page
	PixelsOK bool   `json:"pixelsOK"` // the sampled pixels of the decoded image
	Bad      string `json:"bad"`
}

// checkImagesJS decodes every image of a prompt in the page
// (createImageBitmap, no colour conversion), checks its size and sampled
// pixels, and hashes its Blob again with WebCrypto.
const checkImagesJS = `(async (promptId, samples) => {
  const out = [];
  for (const r of nodecastViewer.images.filter((r) => r.promptId === promptId)) {
    const o = {index: r.index, node: r.node, event: r.event, width: 0, height: 0, sha256: r.sha256, recheck: "", pixelsOK: false, bad: ""};
    try {
      const buf = await r.blob.arrayBuffer();
      o.recheck = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", buf)), (x) => x.toString(16).padStart(2, "0")).join("");
      const bmp = await createImageBitmap(r.blob, {colorSpaceConversion: "none", premultiplyAlpha: "none"});
      o.width = bmp.width; o.height = bmp.height;
      const c = new OffscreenCanvas(bmp.width, bmp.height);
      const g = c.getContext("2d");
      g.drawImage(bmp, 0, 0);
      o.pixelsOK = true;
      for (const [x, y, rr, gg, bb] of samples) {
        const d = g.getImageData(x, y, 1, 1).data;
        if (d[0] !== rr || d[1] !== gg || d[2] !== bb) { o.pixelsOK = false; o.bad = "pixel " + x + "," + y + " is " + [d[0], d[1], d[2]] + ", want " + [rr, gg, bb]; }
      }
      bmp.close();
    } catch (e) { o.bad = String(e); }
    out.push(o);
  }
  return out;
})`

// evalJSON evaluates expr in the page (awaiting a promise) into v.
func evalJSON[T any](ctx context.Context, expr string, v *T) error {
	r, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	*v = r
	return err
}

// waitPage polls cond (a JS expression) until it is true.
func waitPage(t *testing.T, ctx context.Context, what, cond string) {
	t.Helper()
	if !wait.Until(waitTimeout, func() bool {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		return ok
	}) {
		dump, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({states: nodecastViewer.states, prompts: nodecastViewer.prompts, errors: nodecastViewer.errors, resumes: nodecastViewer.resumes, images: nodecastViewer.images.map((r) => [r.promptId, r.index, r.width])})`))
		t.Fatalf("no %s after %v; page state %s", what, waitTimeout, dump)
	}
}

// TestBrowserViewer loads the live page from the serve stack in a real
// headless Chromium, through a proxy that cuts the page's WebSocket twice in
// the middle of the batch, uploads a 2048² noise image and queues a prompt
// of four of it with the page's own forms, and checks in the page that each image arrived once,
// decodes to 2048×2048 with the right pixels, and has the sha256 of the PNG
// the sender made; the page must have resumed without loss. It leaves a
// screenshot and logs the timings.
func TestBrowserViewer(t *testing.T) {
	const n, size = 4, 2048
	start := time.Now()
	ctx, _ := startBrowser(t)
	browserUp := time.Since(start)

	noise := makeNoisePNG(t, size, 13)
	noiseFile := filepath.Join(t.TempDir(), "noise.png")
	if err := os.WriteFile(noiseFile, noise.PNG, 0o644); err != nil {
		t.Fatal(err)
	}
	s := startBuiltServer(t, config.Default())
	// The first WebSocket is cut 20 MiB in (inside the second image), the one
	// that resumes 6 MiB in: each resume starts in the middle of an image.
	proxy := startWSCutProxy(t, strings.TrimPrefix(s.URL, "http://"), 20<<20, 6<<20)

	tctx, cancel := context.WithTimeout(ctx, 2*waitTimeout)
	defer cancel()
	t0 := time.Now()
	if err := chromedp.Do(tctx, chromedp.Navigate(proxy.URL()+"/")); err != nil {
		t.Fatal(err)
	}
	waitPage(t, tctx, "open connection", `window.nodecastViewer && nodecastViewer.client.state === "open"`)
	pageOpen := time.Since(t0)

	// The noise image goes up through the page's upload form.
	if err := chromedp.Do(tctx,
		chromedp.SetUploadFiles(chromedp.ID("upload-file"), []string{noiseFile}),
		chromedp.Click(chromedp.ID("upload-btn")),
		chromedp.WaitReady(chromedp.CSS(`#upload-result[data-name]`)),
	); err != nil {
		t.Fatal(err)
	}
	uploaded, err := chromedp.Run(tctx, chromedp.AttributeValue(chromedp.ID("upload-result"), "data-name"))
	if err != nil || uploaded.Value == "" {
		t.Fatalf("upload through the page: %q %v", uploaded.Value, err)
	}
	prompt, _ := json.Marshal(pipeline(uploaded.Value, n, "SendImageOnWebSocket", map[string]any{"event": "browser.noise"}))
	t1 := time.Now()
	if err := chromedp.Do(tctx,
		chromedp.SetValue(chromedp.ID("prompt"), string(prompt)),
		chromedp.Click(chromedp.ID("queue-btn")),
		chromedp.WaitReady(chromedp.CSS(`#queue-result[data-prompt-id]`)),
	); err != nil {
		t.Fatal(err)
	}
	attr, err := chromedp.Run(tctx, chromedp.AttributeValue(chromedp.ID("queue-result"), "data-prompt-id"))
	if err != nil {
		t.Fatal(err)
	}
	promptID := attr.Value
	idJS, _ := json.Marshal(promptID)
	waitPage(t, tctx, "the end of the prompt", fmt.Sprintf(`nodecastViewer.prompts[%s] === "success"`, idJS))
	waitPage(t, tctx, "4 thumbnails decoded", fmt.Sprintf(`nodecastViewer.images.filter((r) => r.promptId === %s && r.width > 0).length >= %d`, idJS, n))
	arrived := time.Since(t1)

	samples, _ := json.Marshal(noise.Samples)
	var imgs []pageImage
	t2 := time.Now()
	if err := evalJSON(tctx, fmt.Sprintf("%s(%s, %s)", checkImagesJS, idJS, samples), &imgs); err != nil {
		t.Fatal(err)
	}
	checked := time.Since(t2)
	seen := map[int]int{}
	for _, im := range imgs {
		seen[im.Index]++
		switch {
		case im.Bad != "" || !im.PixelsOK:
			t.Errorf("image %d: pixels wrong: %s", im.Index, im.Bad)
		case im.Width != size || im.Height != size:
			t.Errorf("image %d decoded to %d×%d, want %d²", im.Index, im.Width, im.Height, size)
		case im.SHA256 != noise.SHA256 || im.Recheck != noise.SHA256:
			t.Errorf("image %d: sha256 checked %s, rehashed %s, want the sender's PNG's %s", im.Index, im.SHA256, im.Recheck, noise.SHA256)
		case im.Event != "browser.noise" || im.Node != "3":
			t.Errorf("image %d: event %q node %q", im.Index, im.Event, im.Node)
		}
	}
	for i := range n {
		if seen[i] != 1 {
			t.Errorf("image %d shown %d times, want once (all: %v)", i, seen[i], seen)
		}
	}
	if len(imgs) != n {
		t.Errorf("page has %d images of the prompt, want %d", len(imgs), n)
	}
	var conn struct {
		Resumes []struct {
			Recovered bool   `json:"recovered"`
			Reason    string `json:"reason"`
		} `json:"resumes"`
		Errors []string       `json:"errors"`
		States []string       `json:"states"`
		Stats  map[string]int `json:"stats"`
		Shown  string         `json:"shown"`
	}
	if err := evalJSON(tctx, `({resumes: nodecastViewer.resumes, errors: nodecastViewer.errors, states: nodecastViewer.states, stats: nodecastViewer.client.stats, shown: document.getElementById("resumes").textContent})`, &conn); err != nil {
		t.Fatal(err)
	}
	t.Logf("proxy cut %d of %d WebSocket connections; page: stats %v, states %v, resumes %+v, shown %q, errors %q",
		proxy.cut.Load(), proxy.ws.Load(), conn.Stats, conn.States, conn.Resumes, conn.Shown, conn.Errors)
	if proxy.cut.Load() != 2 {
		t.Errorf("the proxy cut %d WebSocket connections, want 2", proxy.cut.Load())
	}
	recovered := 0
	for _, r := range conn.Resumes {
		if !r.Recovered {
			t.Errorf("the page could not resume: %s", r.Reason)
		}
		recovered++
	}
	if recovered < 2 || !strings.Contains(conn.Shown, "resumed") {
		t.Errorf("want 2 resumes shown on the page, got %d (%q)", recovered, conn.Shown)
	}

	shot, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(artifactDir(t), "browser-viewer.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	t.Logf("timings: browser start %v, page load to connected %v, queue to %d decoded thumbnails (2 cuts, 2 resumes) %v, in-page decode+sha256+pixel check %v, total %v",
		browserUp.Round(time.Millisecond), pageOpen.Round(time.Millisecond), n, arrived.Round(time.Millisecond), checked.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// browserPSS sums the proportional set size (resident memory, pages shared
// between processes divided among them) of the Chromium processes started
// with profile (/proc, Linux); 0 elsewhere. RSS would count the shared
// libraries and the shared memory of its ten-odd processes many times.
func browserPSS(profile string) int64 {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var total int64
	for _, d := range dirs {
		cmd, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || !bytes.Contains(cmd, []byte(profile)) {
			continue
		}
		status, err := os.ReadFile(filepath.Join(d, "smaps_rollup"))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(status), "\n") {
			var kb int64
			if _, err := fmt.Sscanf(l, "Pss: %d kB", &kb); err == nil {
				total += kb << 10
			}
		}
	}
	return total
}

// TestBrowserViewer30 sends the live page thirty 2048² noise images (ten
// prompts of three, queued at once through the module) with ?keep=8: all
// thirty must arrive verified and be drawn as thumbnails, only the newest
// eight keep their Blob, and the full view's object URL is revoked when it
// closes. It logs the time and the browser's memory (PSS of its processes,
// JS heap) after the batch.
func TestBrowserViewer30(t *testing.T) {
	if testing.Short() {
		t.Skip("thirty 2048² images")
	}
	const prompts, per, keep = 10, 3, 8
	ctx, profile := startBrowser(t)
	noise := makeNoisePNG(t, 2048, 13)
	// A window that holds the whole burst (378 MiB): a page on two busy
	// cores falls behind the host by more than the default 64 MiB, is
	// evicted as slow, and with the default window its resume can come too
	// late ("seq too old"). This test is about the page's memory, not the
	// window; TestBrowserViewer covers resume with the defaults.
	cfg := config.Default()
	cfg.Sessions.WindowBytes, cfg.Sessions.WindowGlobalBytes = 512<<20, 512<<20
	s := startBuiltServer(t, cfg)
	if status, ans := upload(t, s, "noise.png", noise.PNG); status != 200 {
		t.Fatalf("upload: %d %v", status, ans)
	}
	tctx, cancel := context.WithTimeout(ctx, 2*waitTimeout)
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(fmt.Sprintf("%s/?keep=%d", s.URL, keep))); err != nil {
		t.Fatal(err)
	}
	waitPage(t, tctx, "open connection", `window.nodecastViewer && nodecastViewer.client.state === "open"`)
	pssBefore := browserPSS(profile)
	prompt, _ := json.Marshal(pipeline("noise.png", per, "SendImageOnWebSocket", map[string]any{"event": "browser.thirty"}))
	t0 := time.Now()
	var ids []string
	if err := evalJSON(tctx, fmt.Sprintf(`Promise.all(Array.from({length: %d}, () => nodecastViewer.client.queuePrompt(%s)))`, prompts, prompt), &ids); err != nil {
		t.Fatal(err)
	}
	idsJS, _ := json.Marshal(ids)
	waitPage(t, tctx, "the end of the ten prompts", fmt.Sprintf(`%s.every((id) => nodecastViewer.prompts[id] === "success")`, idsJS))
	elapsed := time.Since(t0)

	var st struct {
		Images, Live, Verified, Heap int
		RevokedLoads                 bool
		Errors                       []string
		Resumed, ResumeLost          int
	}
	if err := evalJSON(tctx, fmt.Sprintf(`(async () => {
	  const mine = nodecastViewer.images.filter((r) => %s.includes(r.promptId));
	  // Open a kept image in the full view and close it: its URL must be revoked.
	  document.querySelector(".thumb:not(.released)").click();
	  const url = document.getElementById("lightbox-img").src, opened = nodecastViewer.liveURLs;
	  document.getElementById("lightbox").click();
	  let revokedLoads = !url.startsWith("blob:") || opened !== 1 || nodecastViewer.liveURLs !== 0;
	  try { await fetch(url); revokedLoads = true; } catch (e) {}
	  return {images: mine.length, live: mine.filter((r) => r.blob).length,
	    verified: mine.filter((r) => r.sha256 === %q).length, heap: performance.memory ? performance.memory.usedJSHeapSize : 0,
	    revokedLoads, errors: nodecastViewer.errors, resumed: nodecastViewer.client.stats.resumed, resumeLost: nodecastViewer.client.stats.resumeLost};
	})()`, idsJS, noise.SHA256), &st); err != nil {
		t.Fatal(err)
	}
	pssAfter := browserPSS(profile)
	// Again after a full collection: what the page really keeps.
	chromedp.Run(tctx, chromedp.Evaluate[bool](`(window.gc && gc(), true)`))
	time.Sleep(2 * time.Second) // blob storage is freed after the collection, asynchronously
	pssGC := browserPSS(profile)
	t.Logf("%d images of 2048² (%d MiB of PNG) in %v; %d kept, browser PSS %d MiB before, %d MiB after, %d MiB after a GC, JS heap %d MiB; evicted as slow and resumed %d times, resume lost %d",
		st.Images, st.Images*len(noise.PNG)>>20, elapsed.Round(time.Millisecond), st.Live, pssBefore>>20, pssAfter>>20, pssGC>>20, st.Heap>>20, st.Resumed, st.ResumeLost)
	if st.Images != prompts*per || st.Verified != prompts*per {
		t.Errorf("page has %d images, %d with the sender's sha256, want %d", st.Images, st.Verified, prompts*per)
	}
	if st.Live > keep {
		t.Errorf("page keeps %d full images, want at most %d", st.Live, keep)
	}
	// What the page keeps: the newest `keep` Blobs, thirty small canvases,
	// and the allocator's slack. A page that kept every image (as one did,
	// through a closure holding its Blob) grows by 13 MiB per image.
	if bound := int64(keep*len(noise.PNG)) + 192<<20; pssBefore > 0 && pssGC-pssBefore > bound {
		t.Errorf("the browser grew by %d MiB over the batch (after a GC), want at most %d MiB", (pssGC-pssBefore)>>20, bound>>20)
	}
	if st.RevokedLoads {
		t.Errorf("the full view's object URL was not made, counted or revoked as it should")
	}
	if len(st.Errors) > 0 {
		t.Errorf("page errors: %q", st.Errors)
	}
	shot, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err == nil {
		path := filepath.Join(artifactDir(t), "browser-viewer-30.png")
		if os.WriteFile(path, shot, 0o644) == nil {
			t.Logf("screenshot: %s", path)
		}
	}
}

// TestBrowserBase64Fallback: the page with ?parts=0 negotiates no PART
// frames and reads the base64 JSON parts of a `parts`-wire sender, with the
// same size and sha256 checks.
func TestBrowserBase64Fallback(t *testing.T) {
	const n = 2
	ctx, _ := startBrowser(t)
	noise := makeNoisePNG(t, 2048, 13)
	s := startBuiltServer(t, config.Default())
	if status, ans := upload(t, s, "noise.png", noise.PNG); status != 200 {
		t.Fatalf("upload: %d %v", status, ans)
	}
	tctx, cancel := context.WithTimeout(ctx, 2*waitTimeout)
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(s.URL+"/viewer?parts=0")); err != nil {
		t.Fatal(err)
	}
	waitPage(t, tctx, "open connection", `window.nodecastViewer && nodecastViewer.client.state === "open"`)
	prompt, _ := json.Marshal(pipeline("noise.png", n, "SendImageOnWebSocket", map[string]any{"event": "browser.b64", "wire": "parts"}))
	var id string
	if err := evalJSON(tctx, fmt.Sprintf(`nodecastViewer.client.queuePrompt(%s)`, prompt), &id); err != nil {
		t.Fatal(err)
	}
	idJS, _ := json.Marshal(id)
	waitPage(t, tctx, "the end of the prompt", fmt.Sprintf(`nodecastViewer.prompts[%s] === "success"`, idJS))
	waitPage(t, tctx, "decoded thumbnails", fmt.Sprintf(`nodecastViewer.images.filter((r) => r.promptId === %s && r.width > 0).length >= %d`, idJS, n))
	var got []struct {
		Index  int    `json:"index"`
		Shape  string `json:"shape"`
		SHA256 string `json:"sha256"`
		Width  int    `json:"width"`
	}
	if err := evalJSON(tctx, fmt.Sprintf(`nodecastViewer.images.filter((r) => r.promptId === %s).map((r) => ({index: r.index, shape: r.shape, sha256: r.sha256, width: r.width}))`, idJS), &got); err != nil {
		t.Fatal(err)
	}
	seen := map[int]int{}
	for _, im := range got {
		seen[im.Index]++
		if im.Shape != "b64" || im.SHA256 != noise.SHA256 || im.Width != 2048 {
			t.Errorf("image %d: shape %q sha256 %s width %d, want b64, the sender's %s, 2048", im.Index, im.Shape, im.SHA256, im.Width, noise.SHA256)
		}
	}
	for i := range n {
		if seen[i] != 1 {
			t.Errorf("image %d shown %d times, want once", i, seen[i])
		}
	}
}

// TestBrowserProgressText: the live page, in a real headless Chromium, gets
// a node's progress text (TEXT frames from the progresstext example running
// as a real plugin subprocess) through client.js's "progresstext" event, in
// order, tied to the running prompt, and shows the last one on the node.
func TestBrowserProgressText(t *testing.T) {
	ctx, _ := startBrowser(t)
	s := progressTextServer(t)
	tctx, cancel := context.WithTimeout(ctx, 2*waitTimeout)
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(s.URL+"/viewer")); err != nil {
		t.Fatal(err)
	}
	waitPage(t, tctx, "open connection", `window.nodecastViewer && nodecastViewer.client.state === "open"`)
	prompt, _ := json.Marshal(map[string]any{"7": map[string]any{"class_type": "ShowProgressText", "inputs": map[string]any{"text": "café", "steps": 3}}})
	var id string
	if err := evalJSON(tctx, fmt.Sprintf(`nodecastViewer.client.queuePrompt(%s)`, prompt), &id); err != nil {
		t.Fatal(err)
	}
	idJS, _ := json.Marshal(id)
	waitPage(t, tctx, "the end of the prompt", fmt.Sprintf(`nodecastViewer.prompts[%s] === "success"`, idJS))
	var got struct {
		Texts []struct {
			PromptID string `json:"promptId"`
			Node     string `json:"node"`
			Text     string `json:"text"`
		} `json:"texts"`
		Shown string `json:"shown"`
	}
	if err := evalJSON(tctx, `({texts: nodecastViewer.texts, shown: document.querySelector('.node[data-node="7"] .text').textContent})`, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Texts) != 3 {
		t.Fatalf("page got %d progress texts, want 3: %+v", len(got.Texts), got.Texts)
	}
	for i, x := range got.Texts {
		if want := fmt.Sprintf("café %d/3", i+1); x.Text != want || x.Node != "7" || x.PromptID != id {
			t.Errorf("text %d: %+v, want node 7, %q, prompt %s", i, x, want, id)
		}
	}
	if got.Shown != "café 3/3" {
		t.Errorf("node 7 shows %q, want the last text", got.Shown)
	}
}
