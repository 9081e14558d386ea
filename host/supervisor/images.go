package supervisor

import (
	"sync"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// ImageTracker follows one node execution across its tries, so that a retry
// does not hand on again what an earlier try already did: it remembers which
// images of the node's batch were handed on whole, by batch index, and the
// furthest progress reported. Use one tracker per node execution, whoever
// retries it. The zero value is ready to use; it is safe for concurrent use.
type ImageTracker struct {
	mu          sync.Mutex
	done        map[int]bool // batch indexes whose every part was handed on
	progress    int          // furthest progress value reported ...
	progressMax int          // ... and its max
}

// Handlers wraps h for one try of the node. Parts are counted per try, since
// a retry may reuse an image id for a different encoding of the same image.
// On a retry, parts of images an earlier try handed on whole are dropped,
// and progress reports are held back until they pass the furthest an
// earlier try reported, so clients see neither an image twice nor progress
// running backwards.
func (t *ImageTracker) Handlers(h plugins.RunHandlers, retry bool) plugins.RunHandlers {
	if part := h.Part; part != nil {
		got := map[string]map[int]bool{} // parts handed on in this try, by image id
		h.Part = func(p *protocol.ImagePart) error {
			t.mu.Lock()
			skip := retry && t.done[p.Index]
			t.mu.Unlock()
			if skip {
				return nil
			}
			if err := part(p); err != nil {
				return err
			}
			t.mu.Lock()
			defer t.mu.Unlock()
			parts := got[p.ImageID]
			if parts == nil {
				parts = map[int]bool{}
				got[p.ImageID] = parts
			}
			parts[p.Part] = true
			if len(parts) >= p.Parts {
				if t.done == nil {
					t.done = map[int]bool{}
				}
				t.done[p.Index] = true
				delete(got, p.ImageID)
			}
			return nil
		}
	}
	if progress := h.Progress; progress != nil {
		held := retry
		h.Progress = func(value, max int) {
			t.mu.Lock()
			if held && max == t.progressMax && value <= t.progress {
				t.mu.Unlock()
				return
			}
			held = false
			t.progress, t.progressMax = value, max
			t.mu.Unlock()
			progress(value, max)
		}
	}
	return h
}

// Done returns how many images were handed on whole so far.
func (t *ImageTracker) Done() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.done)
}
