package e2e_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodecast/nodecast/client"
	"github.com/nodecast/nodecast/host/config"
)

// cuttingProxy forwards TCP connections to a server and cuts the first
// `cuts` of them after a random number of bytes towards the client, in the
// middle of whatever frame is passing, as a flaky network does.
type cuttingProxy struct {
	ln     net.Listener
	target string
	rng    *rand.Rand
	maxCut int64
	mu     sync.Mutex
	left   int // connections still to cut
	cut    atomic.Int64
}

func startProxy(t *testing.T, target string, cuts int, maxCut int64, seed uint64) *cuttingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{ln: ln, target: target, rng: rand.New(rand.NewPCG(seed, 1)), maxCut: maxCut, left: cuts}
	t.Cleanup(func() { ln.Close() })
	go p.serve()
	return p
}

func (p *cuttingProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *cuttingProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(in)
	}
}

func (p *cuttingProxy) forward(in net.Conn) {
	out, err := net.Dial("tcp", p.target)
	if err != nil {
		in.Close()
		return
	}
	defer in.Close()
	defer out.Close()
	go func() { io.Copy(out, in); out.Close() }()
	p.mu.Lock()
	budget := int64(-1)
	if p.left > 0 {
		p.left--
		budget = 1 + p.rng.Int64N(p.maxCut)
	}
	p.mu.Unlock()
	if budget < 0 {
		io.Copy(in, out)
		return
	}
	if n, _ := io.CopyN(in, out, budget); n == budget {
		p.cut.Add(1) // the deferred closes cut both sides
	}
}

// TestGoClientThroughCuttingProxy: the client package against a real host,
// through a proxy that cuts its connections mid-frame: it uploads, queues a
// prompt of four 2048² photos and receives each whole, once, verified,
// resuming after every cut without losing anything.
func TestGoClientThroughCuttingProxy(t *testing.T) {
	const n = 4
	p := photoOf(t, 2048)
	s := startBuiltServer(t, config.Default())
	proxy := startProxy(t, strings.TrimPrefix(s.URL, "http://"), 8, 3<<20, 8)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := client.Dial(ctx, proxy.URL(), client.Options{ClientID: "go-client",
		Backoff: client.Backoff{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var up client.Uploaded
	for attempt := 0; ; attempt++ { // an HTTP request may be cut too: retry, as a user would
		if up, err = c.Upload(ctx, "photo.png", bytes.NewReader(p.PNG)); err == nil || attempt == 5 {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for attempt := 0; ; attempt++ {
		if id, err = c.QueuePrompt(ctx, pipeline(up.Name, n, "SendImageOnWebSocket", map[string]any{"event": "e2e.resume"})); err == nil || attempt == 5 {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]int{}
	for ev := range c.Events() {
		if ev.Kind == client.KindResumeLost {
			t.Fatalf("resume lost: %s", ev.Reason)
		}
		if ev.Kind == client.KindImage {
			img := ev.Image
			if img.PromptID != id || img.Event != "e2e.resume" || img.Batch != n {
				t.Fatalf("image %+v", img.ImageID)
			}
			seen[img.Index]++
			checkPNG(t, img.Data, p)
		}
		if ev.IsPromptDone(id) {
			break
		}
	}
	for i := range n {
		if seen[i] != 1 {
			t.Errorf("image %d arrived %d times, want once (all: %v)", i, seen[i], seen)
		}
	}
	st := c.Stats()
	t.Logf("%d connections cut by the proxy, client stats %+v", proxy.cut.Load(), st)
	if proxy.cut.Load() == 0 || st.Resumed == 0 || st.ResumeLost != 0 || st.Images != n {
		t.Errorf("want cuts and resumes without loss: cuts %d, stats %+v", proxy.cut.Load(), st)
	}
}
