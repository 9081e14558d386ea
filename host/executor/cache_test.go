package executor_test

import (
	"context"
	"testing"

	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/host/internal/executortest"
)

// runCounting runs sendPrompt to success and returns how many EmptyImage calls the
// runner has seen so far.
func runCounting(t *testing.T, e *executor.Executor, r *executortest.Runner) int {
	t.Helper()
	ctx := context.Background()
	acc, verr := e.Submit(ctx, executor.Request{Prompt: parsePrompt(t, sendPrompt), ClientID: "c1"})
	if verr != nil {
		t.Fatal(verr)
	}
	entry, err := e.Wait(ctx, acc.PromptID)
	if err != nil || entry.Status.StatusStr != executor.StatusSuccess {
		t.Fatalf("%v %+v", err, entry.Status)
	}
	n := 0
	for _, c := range r.Calls() {
		if c.ClassType == "EmptyImage" {
			n++
		}
	}
	return n
}

// The cache's tensors survive the prompt (the cache owns them), a plugin
// death takes them and the node runs again, and FreeCache releases them all.
func TestCacheOwnsTensorsAndFollowsPluginDeath(t *testing.T) {
	e, r, _ := newExecutor(t, executor.Options{CacheBytes: 1 << 20})
	if n := runCounting(t, e, r); n != 1 {
		t.Fatalf("first prompt: %d EmptyImage calls", n)
	}
	if r.Held() != 1 {
		t.Fatalf("the cache should hold EmptyImage's tensor, the plugin holds %d", r.Held())
	}
	if n := runCounting(t, e, r); n != 1 {
		t.Fatalf("cached EmptyImage ran again: %d calls", n)
	}
	// The pack dies on the sender's call: the cached tensor goes with it, so
	// the next prompt runs EmptyImage again instead of using a dead handle.
	r.Die(executortest.Death{ClassType: "SendImageOnWebSocket"})
	ctx := context.Background()
	acc, _ := e.Submit(ctx, executor.Request{Prompt: parsePrompt(t, sendPrompt), ClientID: "c1"})
	if _, err := e.Wait(ctx, acc.PromptID); err != nil {
		t.Fatal(err)
	}
	if n := runCounting(t, e, r); n < 2 {
		t.Fatalf("EmptyImage not run again after its tensor died: %d calls", n)
	}
	e.FreeCache(ctx)
	if n, b := e.CacheStats(); n != 0 || b != 0 || r.Held() != 0 {
		t.Fatalf("after FreeCache: %d entries, %d bytes, plugin holds %d", n, b, r.Held())
	}
}
