package plugins

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"

	"github.com/nodecast/nodecast/protocol"
)

// MaxInputBytes is the largest total of a node call's inputs the bridge
// carries: the host must not admit request bodies larger than this, so that
// every input a body can hold reaches its node.
const MaxInputBytes = 1 << 30

// BudgetError is a node that would take a prompt's tensors past their
// budget. It is returned before anything is allocated.
type BudgetError struct {
	What   string // what the node was about to make: "RepeatImageBatch output"
	Need   int64  // bytes it needed
	Held   int64  // bytes the prompt's earlier tensors hold
	Budget int64  // the prompt's tensor budget (Limits.TensorBudget)
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("plugins: %s needs %d bytes, but the prompt holds %d of its tensor budget of %d bytes "+
		"(%d left; raise limits.prompt_tensor_bytes or make smaller batches)",
		e.What, e.Need, e.Held, e.Budget, max(e.Budget-e.Held, 0))
}

// ExceptionType is what PyTorch raises when memory runs out, which ComfyUI
// clients already handle.
func (e *BudgetError) ExceptionType() string { return "torch.OutOfMemoryError" }

// Unwrap makes a BudgetError a limit error: errors.Is(err, protocol.ErrLimit).
func (e *BudgetError) Unwrap() error { return protocol.ErrLimit }

// CheckTensorBytes reports a *BudgetError when need more bytes would take
// the prompt's tensors past TensorBudget. Call it before allocating.
func (l Limits) CheckTensorBytes(what string, need int64) error {
	if l.TensorBudget <= 0 {
		return nil
	}
	if need < 0 || need > l.TensorBudget-l.TensorHeld {
		return &BudgetError{What: what, Need: need, Held: l.TensorHeld, Budget: l.TensorBudget}
	}
	return nil
}

// memoryReturner gives a plugin's memory back to the operating system after
// a prompt released a lot of it, and keeps the Go heap near the budget the
// host sets, instead of letting it grow to twice the live tensors before a
// collection (GOGC=100).
type memoryReturner struct {
	budget  atomic.Int64
	freeing atomic.Bool
	wg      sync.WaitGroup // a FreeOSMemory in flight, for tests
}

// envMemLimit: the operator set GOMEMLIMIT, which the budget must not override.
var envMemLimit = os.Getenv("GOMEMLIMIT") != ""

// freeThreshold is how many released bytes are worth a FreeOSMemory.
const freeThreshold = 32 << 20

// limitFor sets the runtime's soft memory limit for a tensor budget: the
// budget, a quarter more for the garbage collector's slack, and room for the
// plugin's own working memory. A GOMEMLIMIT set in the environment wins.
func (m *memoryReturner) limitFor(budget int64) {
	if budget <= 0 || m.budget.Swap(budget) == budget || envMemLimit {
		return
	}
	debug.SetMemoryLimit(budget + budget/4 + 512<<20)
}

// released returns memory once a prompt has let go of freed bytes. It runs
// in the background: a Release call should not wait for a collection.
func (m *memoryReturner) released(freed int64) {
	m.releasedIdle(freed, false)
}

// releasedIdle is released, also told whether the plugin now holds no
// tensor at all (a prompt ended). Then what the heap retains decides, not
// the tensor bytes freed: a prompt of views and 8-bit tensors frees few
// tensor bytes, yet its encoded images and pixel buffers were garbage too.
func (m *memoryReturner) releasedIdle(freed int64, idle bool) {
	if freed < freeThreshold && !(idle && retainedHeap() >= freeThreshold) {
		return
	}
	if !m.freeing.CompareAndSwap(false, true) {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.freeing.Store(false)
		// Two collections: the first moves sync.Pool contents (pixel and
		// encoder buffers) to the pools' victim caches, the second frees them.
		runtime.GC()
		debug.FreeOSMemory()
	}()
}

// retainedHeap is the heap memory the runtime holds from the OS: in use,
// garbage not yet collected, and free but not returned.
func retainedHeap() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	var n int64
	for _, x := range s {
		if x.Value.Kind() == metrics.KindUint64 {
			n += int64(x.Value.Uint64())
		}
	}
	return n
}
