package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/protocol"
)

// readObject reads a JSON object body. An empty body is an empty object when
// emptyOK; numbers are kept as json.Number so large seeds survive.
func (s *server) readObject(w http.ResponseWriter, r *http.Request, emptyOK bool) (map[string]json.RawMessage, bool) {
	raw, ok := s.readRawBody(w, r)
	if !ok {
		return nil, false
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		if emptyOK {
			return map[string]json.RawMessage{}, true
		}
		writeError(w, http.StatusBadRequest, executor.TypeInvalidPrompt, "Request body is empty; want a JSON object", "")
		return nil, false
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		msg := "Request body is not a JSON object"
		if err != nil {
			msg = "Request body is not valid JSON: " + err.Error()
		}
		writeError(w, http.StatusBadRequest, executor.TypeInvalidPrompt, msg, "")
		return nil, false
	}
	return fields, true
}

// controlBody starts the executor's control routes (/free, /interrupt): it
// answers 503 when the server runs no prompts, else reads the whole body.
func (s *server) controlBody(w http.ResponseWriter, r *http.Request) (raw []byte, ok bool) {
	if s.noExecutor(w) {
		return nil, false
	}
	return s.readRawBody(w, r)
}

// readRawBody reads a whole body, answering one it cannot read (over the
// limit, cut short) itself: ok is false then.
func (s *server) readRawBody(w http.ResponseWriter, r *http.Request) (raw []byte, ok bool) {
	raw, err := readBody(r)
	if err != nil {
		s.bodyError(w, err, "Cannot read the request body")
		return nil, false
	}
	return raw, true
}

// readBody reads a whole body into one buffer sized by Content-Length when
// the client sent one (limitBody has bounded it), instead of io.ReadAll's
// doubling, which holds up to twice a large prompt while it grows.
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength <= 0 {
		return readChunks(r.Body)
	}
	buf := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, buf); err != nil {
		return nil, err // a body shorter than it said is not a prompt
	}
	return buf, nil
}

// bodyChunk is the most readChunks reads at a time.
const bodyChunk = 1 << 20

// readChunks reads a body of unknown size in chunks and joins them once at
// the end: a body refused at the limit has cost the limit, not the twice
// the limit io.ReadAll's growing buffer costs while it copies.
func readChunks(body io.Reader) ([]byte, error) {
	var chunks [][]byte
	total, size := 0, 32<<10 // small bodies, the usual ones, take one small chunk
	for {
		c := make([]byte, size)
		size = min(2*size, bodyChunk)
		n, err := io.ReadFull(body, c)
		if n > 0 {
			chunks = append(chunks, c[:n])
			total += n
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if len(chunks) == 1 {
		return chunks[0], nil
	}
	out := make([]byte, 0, total)
	for i, c := range chunks {
		out = append(out, c...)
		chunks[i] = nil // each chunk can go as soon as it is copied
	}
	return out, nil
}

func decodeNumbers(raw json.RawMessage, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(dst)
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func (s *server) noExecutor(w http.ResponseWriter) bool {
	if s.opts.Executor == nil {
		writeError(w, http.StatusServiceUnavailable, typeNoExecutor, "This server runs no prompts", "")
		return true
	}
	return false
}

// postPrompt queues {"prompt":{...}} or {"workflow":"name"}, with optional
// client_id, prompt_id, extra_data and front.
func (s *server) postPrompt(w http.ResponseWriter, r *http.Request) {
	if s.noExecutor(w) {
		return
	}
	fields, ok := s.readObject(w, r, false)
	if !ok {
		return
	}
	var req executor.Request
	bad := func(field, want string) {
		writeError(w, http.StatusBadRequest, executor.TypeInvalidPrompt, fmt.Sprintf("%q must be %s", field, want), string(fields[field]))
	}
	if raw, has := fields["prompt"]; has && !isNull(raw) {
		var p map[string]any
		if err := decodeNumbers(raw, &p); err != nil || p == nil {
			bad("prompt", "a JSON object of nodes ({node_id: {class_type, inputs}})")
			return
		}
		req.Prompt = p
	}
	// A string names a configured workflow; ComfyUI's front end puts its own
	// (UI-format) workflow in extra_data, so anything else here is ignored.
	if raw, has := fields["workflow"]; has {
		_ = json.Unmarshal(raw, &req.Workflow)
	}
	if raw, has := fields["client_id"]; has && !isNull(raw) {
		if err := json.Unmarshal(raw, &req.ClientID); err != nil {
			bad("client_id", "a string")
			return
		}
	}
	if raw, has := fields["prompt_id"]; has && !isNull(raw) {
		var id any
		if err := decodeNumbers(raw, &id); err != nil {
			bad("prompt_id", "a string")
			return
		}
		switch v := id.(type) {
		case string:
			req.PromptID = v
		case json.Number:
			req.PromptID = v.String()
		default:
			bad("prompt_id", "a string")
			return
		}
		if !isCanonicalUUID(req.PromptID) {
			writeError(w, http.StatusBadRequest, typeInvalidPromptID,
				"prompt_id must be a UUID in canonical form (8-4-4-4-12 lowercase hex digits)", req.PromptID)
			return
		}
	}
	if raw, has := fields["extra_data"]; has && !isNull(raw) {
		if err := decodeNumbers(raw, &req.ExtraData); err != nil || req.ExtraData == nil {
			bad("extra_data", "a JSON object")
			return
		}
	}
	if raw, has := fields["partial_execution_targets"]; has && !isNull(raw) {
		if err := json.Unmarshal(raw, &req.Targets); err != nil || req.Targets == nil {
			bad("partial_execution_targets", "a list of node ids")
			return
		}
	}
	// server.py post_prompt: float(json_data["number"]); a string holding
	// a number is taken too, as float() takes it.
	if raw, has := fields["number"]; has && !isNull(raw) {
		var v any
		var f float64
		err := decodeNumbers(raw, &v)
		switch n := v.(type) {
		case json.Number:
			f, err = n.Float64()
		case string:
			f, err = strconv.ParseFloat(strings.TrimSpace(n), 64)
		default:
			err = errors.New("not a number")
		}
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			bad("number", "a finite number (the prompt's place in the queue, lowest first)")
			return
		}
		req.Number = &f
	}
	if raw, has := fields["front"]; has && !isNull(raw) {
		if err := json.Unmarshal(raw, &req.Front); err != nil {
			bad("front", "true or false")
			return
		}
	}
	// server.py post_prompt: extra_data.create_time, the time the prompt
	// was accepted, in milliseconds since the epoch.
	if req.ExtraData == nil {
		req.ExtraData = map[string]any{}
	}
	req.ExtraData["create_time"] = time.Now().UnixMilli()
	// The Comfy-Usage-Source header (which client sent the prompt) is
	// accepted and not used: it names no behaviour of the server.
	acc, err := s.opts.Executor.Submit(r.Context(), req)
	if err != nil {
		var verr *executor.ValidationError
		if !errors.As(err, &verr) {
			s.log.Error("prompt not queued", "err", err)
			writeJSON(w, http.StatusInternalServerError, executor.NewValidationError("server_error", "The prompt could not be queued", err.Error()))
			return
		}
		status := http.StatusBadRequest
		if verr.Detail.Type == executor.TypeQueueClosed {
			status = http.StatusServiceUnavailable
		}
		s.log.Debug("prompt refused", "type", verr.Detail.Type, "message", verr.Detail.Message)
		writeJSON(w, status, verr)
		return
	}
	if acc.NodeErrors == nil {
		acc.NodeErrors = map[string]executor.NodeError{}
	}
	writeJSON(w, http.StatusOK, acc)
}

func (s *server) getPrompt(w http.ResponseWriter, r *http.Request) {
	n := 0
	if s.opts.Executor != nil {
		n = s.opts.Executor.QueueRemaining()
	}
	writeJSON(w, http.StatusOK, protocol.Status{ExecInfo: protocol.ExecInfo{QueueRemaining: n}})
}

func (s *server) getQueue(w http.ResponseWriter, r *http.Request) {
	running, pending := []executor.QueueItem{}, []executor.QueueItem{}
	if s.opts.Executor != nil {
		running, pending = s.opts.Executor.Queue()
	}
	writeJSON(w, http.StatusOK, map[string]any{"queue_running": running, "queue_pending": pending})
}

// clearAndDelete reads {"clear": bool, "delete": [ids]}, ComfyUI's body of
// POST /queue and POST /history.
func (s *server) clearAndDelete(w http.ResponseWriter, r *http.Request) (clearAll bool, ids []string, ok bool) {
	fields, ok := s.readObject(w, r, true)
	if !ok {
		return false, nil, false
	}
	if raw, has := fields["clear"]; has && !isNull(raw) {
		if err := json.Unmarshal(raw, &clearAll); err != nil {
			writeError(w, http.StatusBadRequest, typeInvalidRequest, `"clear" must be true or false`, string(raw))
			return false, nil, false
		}
	}
	if raw, has := fields["delete"]; has && !isNull(raw) {
		if err := json.Unmarshal(raw, &ids); err != nil {
			writeError(w, http.StatusBadRequest, typeInvalidRequest, `"delete" must be a list of prompt ids`, string(raw))
			return false, nil, false
		}
	}
	return clearAll, ids, true
}

func (s *server) postQueue(w http.ResponseWriter, r *http.Request) {
	if s.noExecutor(w) {
		return
	}
	clearAll, ids, ok := s.clearAndDelete(w, r)
	if !ok {
		return
	}
	if clearAll {
		s.opts.Executor.ClearQueue()
	}
	if len(ids) > 0 {
		s.opts.Executor.DeleteQueued(ids...)
	}
	w.WriteHeader(http.StatusOK)
}

// postInterrupt stops the running prompt; with {"prompt_id"} only when that
// prompt is the one running. A body that is not JSON means a global
// interrupt, as in ComfyUI.
func (s *server) postInterrupt(w http.ResponseWriter, r *http.Request) {
	raw, ok := s.controlBody(w, r)
	if !ok {
		return
	}
	var body struct {
		PromptID string `json:"prompt_id"`
	}
	_ = json.Unmarshal(raw, &body)
	s.opts.Executor.Interrupt(body.PromptID)
	w.WriteHeader(http.StatusOK)
}

func (s *server) getHistory(w http.ResponseWriter, r *http.Request) {
	maxItems, offset := -1, -1
	for name, dst := range map[string]*int{"max_items": &maxItems, "offset": &offset} {
		if v := r.URL.Query().Get(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				writeError(w, http.StatusBadRequest, typeInvalidRequest, fmt.Sprintf("%s must be an integer", name), v)
				return
			}
			*dst = n
		}
	}
	if s.opts.Executor == nil {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	s.streamHistory(w, s.opts.Executor.History(maxItems, offset))
}

// streamHistory writes {prompt_id: entry, ...} one entry at a time, so the
// answer is never built whole in memory: the executor's history is bounded
// in bytes, and its big inputs are placeholders already.
func (s *server) streamHistory(w http.ResponseWriter, h executor.History) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	_ = bw.WriteByte('{')
	for i, rec := range h {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		k, _ := json.Marshal(rec.PromptID)
		v, err := json.Marshal(rec.Entry)
		if err != nil { // the status is sent: say so in the log, keep the JSON whole
			s.log.Error("history entry cannot be encoded", "prompt_id", rec.PromptID, "err", err)
			v = []byte("{}")
		}
		_, _ = bw.Write(k)
		_ = bw.WriteByte(':')
		if _, err := bw.Write(v); err != nil {
			return // the client went away
		}
	}
	_ = bw.WriteByte('}')
	_ = bw.Flush()
}

func (s *server) getHistoryEntry(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("prompt_id")
	out := map[string]executor.HistoryEntry{}
	if s.opts.Executor != nil {
		if entry, ok := s.opts.Executor.HistoryEntry(id); ok {
			out[id] = entry
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) postHistory(w http.ResponseWriter, r *http.Request) {
	if s.noExecutor(w) {
		return
	}
	clearAll, ids, ok := s.clearAndDelete(w, r)
	if !ok {
		return
	}
	if clearAll {
		s.opts.Executor.ClearHistory()
	}
	if len(ids) > 0 {
		s.opts.Executor.DeleteHistory(ids...)
	}
	w.WriteHeader(http.StatusOK)
}

// typeInvalidPromptID refuses a prompt_id that is not a canonical UUID.
const typeInvalidPromptID = "invalid_prompt_id"

// isCanonicalUUID reports whether s is a UUID written as Python's
// str(uuid.UUID(s)) writes it: 8-4-4-4-12 lowercase hex digits.
func isCanonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}
