package executor

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// QueueItem is a queued prompt. It marshals as ComfyUI's queue tuple
// [number, prompt_id, prompt, extra_data, outputs_to_execute], the shape of
// /queue entries and of a history entry's "prompt".
type QueueItem struct {
	// Number orders the queue, lowest first: ComfyUI's "number", a float
	// when the request gave one, else a count (negative for "front").
	Number           float64
	PromptID         string
	Prompt           map[string]any // the prompt as run: defaults and workflow settings applied
	ExtraData        map[string]any // the request's extra_data, with client_id
	OutputsToExecute []string
}

// MarshalJSON writes the queue tuple.
func (q QueueItem) MarshalJSON() ([]byte, error) {
	outputs := q.OutputsToExecute
	if outputs == nil {
		outputs = []string{}
	}
	extra := q.ExtraData
	if extra == nil {
		extra = map[string]any{}
	}
	return json.Marshal([]any{q.Number, q.PromptID, q.Prompt, extra, outputs})
}

// UnmarshalJSON reads the queue tuple (for clients and tests).
func (q *QueueItem) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if len(raw) < 5 {
		return fmt.Errorf("executor: queue item has %d fields, want 5", len(raw))
	}
	var n json.Number
	if err := json.Unmarshal(raw[0], &n); err != nil {
		return err
	}
	num, err := n.Float64()
	if err != nil {
		return fmt.Errorf("executor: queue item number %s: %w", n, err)
	}
	q.Number = num
	for i, dst := range []any{&q.PromptID, &q.Prompt, &q.ExtraData, &q.OutputsToExecute} {
		if err := json.Unmarshal(raw[i+1], dst); err != nil {
			return err
		}
	}
	return nil
}

// StatusMessage is one of the messages a prompt's run sent, kept in its
// history as ComfyUI's [type, data] pair.
type StatusMessage struct {
	Type string
	Data any
}

// MarshalJSON writes [type, data].
func (m StatusMessage) MarshalJSON() ([]byte, error) { return json.Marshal([]any{m.Type, m.Data}) }

// UnmarshalJSON reads [type, data]; Data is left as json.RawMessage.
func (m *StatusMessage) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if len(raw) != 2 {
		return fmt.Errorf("executor: status message has %d fields, want 2", len(raw))
	}
	m.Data = raw[1]
	return json.Unmarshal(raw[0], &m.Type)
}

// Status strings of a finished prompt.
const (
	StatusSuccess = "success"
	StatusError   = "error"
)

// HistoryStatus is a finished prompt's "status".
type HistoryStatus struct {
	StatusStr string          `json:"status_str"` // StatusSuccess or StatusError
	Completed bool            `json:"completed"`
	Messages  []StatusMessage `json:"messages"`
}

// NodeMeta is a node's entry in a history entry's "meta".
type NodeMeta struct {
	NodeID      string  `json:"node_id"`
	DisplayNode string  `json:"display_node"`
	ParentNode  *string `json:"parent_node"`
	RealNodeID  string  `json:"real_node_id"`
}

// HistoryEntry is a finished prompt as /history shows it. Its maps are shared
// with the executor's history: treat them as read-only.
type HistoryEntry struct {
	Prompt  QueueItem                 `json:"prompt"`
	Outputs map[string]map[string]any `json:"outputs"` // node id -> the node's "ui" output
	Status  HistoryStatus             `json:"status"`
	Meta    map[string]NodeMeta       `json:"meta"`
}

// HistoryRecord is one entry of History, with its prompt id.
type HistoryRecord struct {
	PromptID string
	Entry    HistoryEntry
}

// History is entries oldest first. It marshals as a JSON object keyed by
// prompt id that keeps this order, as ComfyUI's /history does.
type History []HistoryRecord

// MarshalJSON writes {prompt_id: entry, ...} in order.
func (h History) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, r := range h {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(r.PromptID)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(r.Entry)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// history is a map bounded in entries and in bytes that remembers
// insertion order.
type history struct {
	max      int
	maxBytes int64
	bytes    int64 // JSON size of the entries held
	order    []string
	entries  map[string]HistoryEntry
	sizes    map[string]int64
}

func newHistory(max int, maxBytes int64) *history {
	return &history{max: max, maxBytes: maxBytes, entries: map[string]HistoryEntry{}, sizes: map[string]int64{}}
}

// add remembers an entry, forgetting the oldest ones while there are more
// than max or they take more than maxBytes. The newest entry is kept even
// when it alone is over maxBytes: its inputs are already elided, and a
// client waiting on it must find it.
func (h *history) add(id string, e HistoryEntry) {
	if _, ok := h.entries[id]; ok {
		h.remove(id)
	}
	size := entrySize(id, e)
	for len(h.order) > 0 && (len(h.order) >= h.max || h.bytes+size > h.maxBytes) {
		h.remove(h.order[0])
	}
	h.order = append(h.order, id)
	h.entries[id] = e
	h.sizes[id] = size
	h.bytes += size
}

// entrySize is the size of an entry in /history's answer.
func entrySize(id string, e HistoryEntry) int64 {
	b, err := json.Marshal(e)
	if err != nil {
		return int64(len(id))
	}
	return int64(len(b) + len(id) + 4)
}

func (h *history) remove(id string) {
	if _, ok := h.entries[id]; !ok {
		return
	}
	delete(h.entries, id)
	h.bytes -= h.sizes[id]
	delete(h.sizes, id)
	for i, k := range h.order {
		if k == id {
			h.order = append(h.order[:i:i], h.order[i+1:]...)
			break
		}
	}
}

func (h *history) clear() {
	h.order = nil
	h.entries = map[string]HistoryEntry{}
	h.sizes = map[string]int64{}
	h.bytes = 0
}

// list returns up to maxItems entries from offset; maxItems < 0 means all, and
// offset < 0 with maxItems >= 0 means the last maxItems (ComfyUI's rule).
func (h *history) list(maxItems, offset int) History {
	if offset < 0 {
		offset = 0
		if maxItems >= 0 && len(h.order) > maxItems {
			offset = len(h.order) - maxItems
		}
	}
	out := History{}
	for i := offset; i < len(h.order); i++ {
		if maxItems >= 0 && len(out) >= maxItems {
			break
		}
		out = append(out, HistoryRecord{PromptID: h.order[i], Entry: h.entries[h.order[i]]})
	}
	return out
}
