package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/nodecast/nodecast/host/executor"
)

// Job statuses of /api/jobs (ComfyUI's comfy_execution/jobs.py JobStatus).
const (
	jobPending    = "pending"
	jobInProgress = "in_progress"
	jobCompleted  = "completed"
	jobFailed     = "failed"
	jobCancelled  = "cancelled"
)

var jobStatuses = []string{jobPending, jobInProgress, jobCompleted, jobFailed, jobCancelled}

// queueJob is jobs.py normalize_queue_item: a pending or running prompt.
func queueJob(it executor.QueueItem, status string) map[string]any {
	j := map[string]any{"id": it.PromptID, "status": status, "priority": it.Number, "outputs_count": 0}
	addJobMetadata(j, it.ExtraData)
	return j
}

// addJobMetadata is jobs.py _extract_job_metadata: create_time and
// extra_pnginfo.workflow.id, left out when absent (prune_dict).
func addJobMetadata(j map[string]any, extra map[string]any) {
	if ct, ok := extra["create_time"]; ok && ct != nil {
		j["create_time"] = ct
	}
	if info, ok := extra["extra_pnginfo"].(map[string]any); ok {
		if wf, ok := info["workflow"].(map[string]any); ok && wf["id"] != nil {
			j["workflow_id"] = wf["id"]
		}
	}
}

// historyJob is jobs.py normalize_history_item.
func historyJob(id string, h executor.HistoryEntry, full bool) map[string]any {
	j := map[string]any{"id": id, "priority": h.Prompt.Number}
	addJobMetadata(j, h.Prompt.ExtraData)
	interrupted := false
	for _, m := range h.Status.Messages {
		data := messageData(m.Data)
		switch m.Type {
		case "execution_start":
			if ts, ok := data["timestamp"]; ok {
				j["execution_start_time"] = ts
			}
		case "execution_success", "execution_error", "execution_interrupted":
			if ts, ok := data["timestamp"]; ok {
				j["execution_end_time"] = ts
			}
			if m.Type == "execution_error" {
				j["execution_error"] = data
			}
			interrupted = interrupted || m.Type == "execution_interrupted"
		}
	}
	switch {
	case h.Status.StatusStr == executor.StatusError && interrupted:
		j["status"] = jobCancelled
	case h.Status.StatusStr == executor.StatusError:
		j["status"] = jobFailed
	default:
		j["status"] = jobCompleted
	}
	count, preview := outputsSummary(h.Outputs)
	j["outputs_count"] = count
	if preview != nil {
		j["preview_output"] = preview
	}
	if full {
		j["outputs"] = h.Outputs
		j["execution_status"] = h.Status
		j["workflow"] = map[string]any{"prompt": h.Prompt.Prompt, "extra_data": h.Prompt.ExtraData}
	}
	return j
}

// messageData turns a status message's data into a map (it may be a
// protocol struct or raw JSON).
func messageData(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// outputsSummary is jobs.py get_outputs_summary for dict items: the count
// and the first previewable one (type "output" first), with nodeId and
// mediaType.
func outputsSummary(outputs map[string]map[string]any) (int, map[string]any) {
	count := 0
	var preview, fallback map[string]any
	for _, node := range slices.Sorted(mapsKeys(outputs)) {
		for _, media := range slices.Sorted(mapsKeys(outputs[node])) {
			if media == "animated" {
				continue
			}
			items, ok := outputs[node][media].([]any)
			if !ok {
				continue
			}
			for _, it := range items {
				item, ok := it.(map[string]any)
				if !ok {
					continue
				}
				count++
				if preview != nil || !(media == "images" || media == "video" || media == "audio" || media == "3d") {
					continue
				}
				e := map[string]any{"nodeId": node, "mediaType": media}
				for k, v := range item {
					e[k] = v
				}
				if item["type"] == "output" {
					preview = e
				} else if fallback == nil {
					fallback = e
				}
			}
		}
	}
	if preview == nil {
		preview = fallback
	}
	return count, preview
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// getJobs is GET /api/jobs (server.py get_jobs, jobs.py get_all_jobs).
func (s *server) getJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	statuses := jobStatuses
	if v := q.Get("status"); v != "" {
		statuses = nil
		for _, st := range strings.Split(v, ",") {
			st = strings.TrimSpace(st)
			if !slices.Contains(jobStatuses, st) {
				writeError(w, http.StatusBadRequest, typeInvalidRequest, fmt.Sprintf("Invalid status %q; want one of %s", st, strings.Join(jobStatuses, ", ")), v)
				return
			}
			statuses = append(statuses, st)
		}
	}
	sortBy, ok := queryChoice(w, q, "sort_by", "created_at", "created_at", "execution_duration")
	if !ok {
		return
	}
	order, ok := queryChoice(w, q, "sort_order", "desc", "asc", "desc")
	if !ok {
		return
	}
	var limit *int
	offset := 0
	for name, dst := range map[string]*int{"limit": nil, "offset": &offset} {
		v := q.Get(name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || (name == "limit" && n == 0) {
			writeError(w, http.StatusBadRequest, typeInvalidRequest, fmt.Sprintf("%s must be a %s integer", name, map[bool]string{true: "positive", false: "non-negative"}[name == "limit"]), v)
			return
		}
		if dst == nil {
			limit = &n
		} else {
			*dst = n
		}
	}
	var jobs []map[string]any
	if s.opts.Executor != nil {
		running, pending := s.opts.Executor.Queue()
		if slices.Contains(statuses, jobInProgress) {
			for _, it := range running {
				jobs = append(jobs, queueJob(it, jobInProgress))
			}
		}
		if slices.Contains(statuses, jobPending) {
			for _, it := range pending {
				jobs = append(jobs, queueJob(it, jobPending))
			}
		}
		for _, rec := range s.opts.Executor.History(-1, -1) {
			j := historyJob(rec.PromptID, rec.Entry, false)
			if slices.Contains(statuses, j["status"].(string)) {
				jobs = append(jobs, j)
			}
		}
	}
	if wf := q.Get("workflow_id"); wf != "" {
		jobs = slices.DeleteFunc(jobs, func(j map[string]any) bool { return j["workflow_id"] != wf })
	}
	key := func(j map[string]any) float64 {
		if sortBy == "execution_duration" {
			start, end := toFloat(j["execution_start_time"]), toFloat(j["execution_end_time"])
			if start != 0 && end != 0 {
				return end - start
			}
			return 0
		}
		return toFloat(j["create_time"])
	}
	slices.SortStableFunc(jobs, func(a, b map[string]any) int {
		c := 0
		if ka, kb := key(a), key(b); ka < kb {
			c = -1
		} else if ka > kb {
			c = 1
		}
		if order == "desc" {
			c = -c
		}
		return c
	})
	total := len(jobs)
	jobs = jobs[min(offset, total):]
	if limit != nil && *limit < len(jobs) {
		jobs = jobs[:*limit]
	}
	if jobs == nil {
		jobs = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": jobs, "pagination": map[string]any{
		"offset": offset, "limit": limit, "total": total, "has_more": offset+len(jobs) < total,
	}})
}

func toFloat(v any) float64 {
	switch n := v.(type) {
	case int64:
		return float64(n)
	case int:
		return float64(n)
	case float64:
		return n
	case json.Number:
		f, _ := n.Float64()
		return f
	}
	return 0
}

// getJob is GET /api/jobs/{job_id} (jobs.py get_job): 404 when unknown.
func (s *server) getJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("job_id")
	if s.opts.Executor != nil {
		if h, ok := s.opts.Executor.HistoryEntry(id); ok {
			writeJSON(w, http.StatusOK, historyJob(id, h, true))
			return
		}
		running, pending := s.opts.Executor.Queue()
		for _, it := range running {
			if it.PromptID == id {
				writeJSON(w, http.StatusOK, queueJob(it, jobInProgress))
				return
			}
		}
		for _, it := range pending {
			if it.PromptID == id {
				writeJSON(w, http.StatusOK, queueJob(it, jobPending))
				return
			}
		}
	}
	writeJSON(w, http.StatusNotFound, map[string]any{"error": "Job not found"})
}

// cancelJobs stops each job: a pending one leaves the queue, a running one
// is interrupted (it ends with execution_interrupted). It returns the ids
// that were pending or running.
func (s *server) cancelJobs(ids []string) []string {
	cancelled := []string{}
	for _, id := range ids {
		if s.opts.Executor.DeleteQueued(id) > 0 || s.opts.Executor.Interrupt(id) {
			cancelled = append(cancelled, id)
		}
	}
	return cancelled
}

// postCancelJob is POST /api/jobs/{job_id}/cancel.
func (s *server) postCancelJob(w http.ResponseWriter, r *http.Request) {
	if s.noExecutor(w) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"cancelled": s.cancelJobs([]string{r.PathValue("job_id")})})
}

// postCancelJobs is POST /api/jobs/cancel {"job_ids": [...]}.
func (s *server) postCancelJobs(w http.ResponseWriter, r *http.Request) {
	if s.noExecutor(w) {
		return
	}
	fields, ok := s.readObject(w, r, false)
	if !ok {
		return
	}
	var ids []string
	if err := json.Unmarshal(fields["job_ids"], &ids); err != nil || ids == nil {
		writeError(w, http.StatusBadRequest, typeInvalidRequest, `"job_ids" must be a list of job ids`, string(fields["job_ids"]))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"cancelled": s.cancelJobs(ids)})
}

// queryChoice reads query parameter name: def when absent, else one of
// choices; anything else is answered with a 400 naming the choices, and ok is
// false.
func queryChoice(w http.ResponseWriter, q url.Values, name, def string, choices ...string) (v string, ok bool) {
	v = q.Get(name)
	if v == "" {
		return def, true
	}
	if !slices.Contains(choices, v) {
		writeError(w, http.StatusBadRequest, typeInvalidRequest, name+" must be "+strings.Join(choices, " or "), v)
		return v, false
	}
	return v, true
}
