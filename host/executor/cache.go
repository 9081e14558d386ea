package executor

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/nodecast/nodecast/host/supervisor"
)

// outputCache is ComfyUI's cache of node outputs: a node whose class, inputs
// and upstream are the same as in an earlier prompt gets that prompt's
// outputs instead of running again. It owns the tensors of its entries
// (the plugins keep them until an entry is evicted), is bounded in their
// bytes, and evicts the least recently used entries no running prompt uses.
type outputCache struct {
	max     int64
	release func(context.Context, ...supervisor.Handle)

	mu      sync.Mutex
	entries map[string]*list.Element // by key, of *cacheEntry
	lru     list.List                // front: most recently used
	bytes   int64
}

type cacheEntry struct {
	key     string
	outputs []any
	handles []supervisor.Handle
	bytes   int64
	pins    int // running prompts using the entry
}

func newOutputCache(max int64, release func(context.Context, ...supervisor.Handle)) *outputCache {
	if max <= 0 {
		return nil
	}
	return &outputCache{max: max, release: release, entries: map[string]*list.Element{}}
}

// get returns the outputs cached under key, pinned until unpin, when every
// tensor among them is still live (a plugin that died took its tensors).
func (c *outputCache) get(key string, live func(supervisor.Handle) bool) (*cacheEntry, bool) {
	if c == nil || key == "" {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	for _, h := range e.handles {
		if !live(h) {
			if e.pins == 0 {
				c.remove(el) // gone with its plugin: nothing to release
			}
			return nil, false
		}
	}
	e.pins++
	c.lru.MoveToFront(el)
	return e, true
}

func (c *outputCache) unpin(e *cacheEntry) {
	c.mu.Lock()
	e.pins--
	c.mu.Unlock()
}

// put keeps a node's outputs under key and reports whether the cache took
// ownership of their tensors; if not, the caller still releases them. An
// entry larger than the whole cache is not kept.
func (c *outputCache) put(key string, outputs []any, handles []supervisor.Handle, bytes int64) bool {
	if c == nil || key == "" || bytes > c.max {
		return false
	}
	c.mu.Lock()
	if _, ok := c.entries[key]; ok {
		c.mu.Unlock()
		return false
	}
	c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, outputs: outputs, handles: handles, bytes: bytes})
	c.bytes += bytes
	c.mu.Unlock()
	return true
}

// trim evicts unpinned entries, least recently used first, until the cache
// is within its bound (all of them when free), and releases their tensors.
func (c *outputCache) trim(ctx context.Context, free bool) {
	if c == nil {
		return
	}
	var drop []supervisor.Handle
	c.mu.Lock()
	for el := c.lru.Back(); el != nil && (free || c.bytes > c.max); {
		prev := el.Prev()
		if e := el.Value.(*cacheEntry); e.pins == 0 {
			drop = append(drop, e.handles...)
			c.remove(el)
		}
		el = prev
	}
	c.mu.Unlock()
	if len(drop) > 0 {
		c.release(ctx, drop...)
	}
}

func (c *outputCache) remove(el *list.Element) {
	e := el.Value.(*cacheEntry)
	delete(c.entries, e.key)
	c.lru.Remove(el)
	c.bytes -= e.bytes
}

// stats returns the entries and tensor bytes held.
func (c *outputCache) stats() (int, int64) {
	if c == nil {
		return 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.bytes
}

// cacheKeys computes each node's cache key in execution order, ComfyUI's
// input signature: the class, the literal inputs, each link as its source's
// key and slot, and for a file input (image_upload) the file's content,
// as LoadImage's IS_CHANGED. Output nodes have no key: they always run. A
// node whose file cannot be read, or that links to a node without a key, has
// none either.
func cacheKeys(p *plan, inputDir string) map[string]string {
	keys := make(map[string]string, len(p.order))
	for _, id := range p.order {
		n := p.nodes[id]
		if n.spec.OutputNode {
			continue
		}
		sig := map[string]any{"class": n.classType}
		ok := true
		for _, in := range n.spec.Inputs {
			if l, linked := n.links[in.Name]; linked {
				k, has := keys[l.from]
				if !has {
					ok = false
					break
				}
				sig["link:"+in.Name] = k + "#" + strconv.Itoa(l.slot)
				continue
			}
			v, has := n.values[in.Name]
			if !has {
				continue
			}
			sig["value:"+in.Name] = v
			if isTrue(in.Options["image_upload"]) {
				s, _ := v.(string)
				h, err := fileHash(inputDir, s)
				if err != nil {
					ok = false
					break
				}
				sig["file:"+in.Name] = h
			}
		}
		if !ok {
			continue
		}
		b, err := json.Marshal(sig) // maps marshal with sorted keys
		if err != nil {
			continue
		}
		sum := sha256.Sum256(b)
		keys[id] = hex.EncodeToString(sum[:])
	}
	return keys
}

// fileHash is the sha256 of an input file's content, read inside the input
// folder only.
func fileHash(dir, name string) (string, error) {
	name = strings.TrimSuffix(name, " [input]")
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(name))
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// cachedBytes is what a node's tensors count against the cache's bound: a
// view at its whole size, since the cache may keep it after the tensors it
// shares memory with are evicted, and then the view alone keeps that memory.
func cachedBytes(hs []supervisor.Handle) int64 {
	var n int64
	for _, h := range hs {
		ref := h.Ref
		ref.View = false
		n += tensorBytes(ref)
	}
	return n
}

// withoutHandles returns hs minus those in drop.
func withoutHandles(hs, drop []supervisor.Handle) []supervisor.Handle {
	return slices.DeleteFunc(hs, func(h supervisor.Handle) bool {
		return slices.ContainsFunc(drop, func(d supervisor.Handle) bool { return sameHandle(h, d) })
	})
}

func sameHandle(a, b supervisor.Handle) bool {
	return a.Pack == b.Pack && a.Gen == b.Gen && a.Ref.ID == b.Ref.ID
}

// FreeCache forgets every cached node output no running prompt uses and lets
// the plugins release their tensors, as ComfyUI's POST /free does.
func (e *Executor) FreeCache(ctx context.Context) {
	e.cache.trim(ctx, true)
}

// CacheStats returns the cached node outputs and the tensor bytes they hold.
func (e *Executor) CacheStats() (entries int, bytes int64) {
	return e.cache.stats()
}
