package plugins

import "unsafe"

// A sender that repeats one image (RepeatImageBatch's views, which
// sendimage encodes once) emits parts whose bytes are the same memory as
// parts it emitted before. The bridge sends such bytes across the process
// boundary once: a later part names the earlier one (ImagePart.data_of_part)
// and the host hands the hub the bytes it already has, so a batch of four
// repeats costs one copy through gRPC and TLS instead of four.
//
// Both sides keep the same window of the run's recent parts that carried
// bytes, updated by the same rule, so that every part the pack names is
// still held by the host.
const (
	partWindowParts = 16       // parts remembered per run
	partWindowBytes = 64 << 20 // bytes those parts may hold alive
)

// windowPart is a part that carried its bytes, numbered in its run's order
// of part events from 1.
type windowPart struct {
	seq    int64
	data   []byte
	sha256 string
	offset int64
}

// partWindow remembers a run's most recent parts that carried bytes.
type partWindow struct {
	parts []windowPart
	bytes int
}

// add remembers a part that carried data, evicting the oldest beyond the
// window's bounds.
func (w *partWindow) add(p windowPart) {
	w.parts = append(w.parts, p)
	w.bytes += len(p.data)
	for len(w.parts) > partWindowParts || (w.bytes > partWindowBytes && len(w.parts) > 1) {
		w.bytes -= len(w.parts[0].data)
		w.parts[0] = windowPart{}
		w.parts = w.parts[1:]
	}
}

// sameMemory returns the part whose bytes are the same memory as data (same
// address and length) and that has the same sha256 and offset, the header
// fields that say what the bytes are. Memory alone is not enough: a node
// may reuse a buffer for different bytes.
func (w *partWindow) sameMemory(data []byte, sha256 string, offset int64) (windowPart, bool) {
	if len(data) == 0 {
		return windowPart{}, false
	}
	for i := len(w.parts) - 1; i >= 0; i-- {
		p := w.parts[i]
		if len(p.data) == len(data) && unsafe.SliceData(p.data) == unsafe.SliceData(data) &&
			p.sha256 == sha256 && p.offset == offset {
			return p, true
		}
	}
	return windowPart{}, false
}

// bySeq returns the remembered part numbered seq.
func (w *partWindow) bySeq(seq int64) (windowPart, bool) {
	for _, p := range w.parts {
		if p.seq == seq {
			return p, true
		}
	}
	return windowPart{}, false
}
