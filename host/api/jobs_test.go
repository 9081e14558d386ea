package api_test

import (
	"net/http"
	"testing"

	"github.com/nodecast/nodecast/host/api"
	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/protocol"
)

// TestJobsAPI checks /api/jobs against ComfyUI's comfy_execution/jobs.py
// (normalize_queue_item: id, status, priority, create_time, outputs_count,
// workflow_id; normalize_history_item adds execution_start_time,
// execution_end_time, execution_error, preview_output; get_all_jobs'
// filters, sort and paging) and server.py's jobs routes ({jobs,
// pagination:{offset,limit,total,has_more}}, 404 for an unknown job); a
// cancelled running job ends with execution_interrupted ("cancelled") and
// the next prompt runs.
func TestJobsAPI(t *testing.T) {
	e := newEnv(t, api.Options{}, executor.Options{})
	var slow, queued executor.Accepted
	if code, raw := e.postJSON(t, "/prompt", `{"prompt": {"1": {"class_type": "SlowNode", "inputs": {}}}}`, &slow); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	<-e.runner.Started
	if code, raw := e.postJSON(t, "/prompt", `{"prompt": `+sendPrompt+`, "extra_data": {"extra_pnginfo": {"workflow": {"id": "wf1"}}}}`, &queued); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	type page struct {
		Jobs       []map[string]any `json:"jobs"`
		Pagination struct {
			Offset  int  `json:"offset"`
			Limit   *int `json:"limit"`
			Total   int  `json:"total"`
			HasMore bool `json:"has_more"`
		} `json:"pagination"`
	}
	var all page
	e.do(t, "GET", "/api/jobs", "", nil, &all)
	if all.Pagination.Total != 2 || len(all.Jobs) != 2 || all.Pagination.HasMore || all.Pagination.Limit != nil {
		t.Fatalf("GET /api/jobs: %+v", all)
	}
	byID := map[string]map[string]any{}
	for _, j := range all.Jobs {
		byID[j["id"].(string)] = j
		if _, ok := j["create_time"].(float64); !ok || j["outputs_count"] != float64(0) {
			t.Errorf("job %v lacks create_time or outputs_count 0", j)
		}
	}
	if byID[slow.PromptID]["status"] != "in_progress" || byID[queued.PromptID]["status"] != "pending" || byID[queued.PromptID]["workflow_id"] != "wf1" {
		t.Errorf("jobs %v", all.Jobs)
	}
	var p page
	e.do(t, "GET", "/api/jobs?status=pending", "", nil, &p)
	if len(p.Jobs) != 1 || p.Jobs[0]["id"] != queued.PromptID {
		t.Errorf("status=pending: %+v", p)
	}
	e.do(t, "GET", "/api/jobs?workflow_id=wf1", "", nil, &p)
	if len(p.Jobs) != 1 || p.Jobs[0]["id"] != queued.PromptID {
		t.Errorf("workflow_id=wf1: %+v", p)
	}
	e.do(t, "GET", "/api/jobs?limit=1&sort_order=asc", "", nil, &p)
	if len(p.Jobs) != 1 || !p.Pagination.HasMore || p.Pagination.Total != 2 || p.Jobs[0]["id"] != slow.PromptID {
		t.Errorf("limit=1 sort_order=asc: %+v", p)
	}
	for _, bad := range []string{"?status=done", "?sort_by=name", "?sort_order=up", "?limit=0", "?offset=-1"} {
		if code, raw := e.do(t, "GET", "/api/jobs"+bad, "", nil, nil); code != http.StatusBadRequest {
			t.Errorf("GET /api/jobs%s: %d %s, want 400", bad, code, raw)
		}
	}
	if code, _ := e.do(t, "GET", "/api/jobs/00000000-0000-4000-8000-000000000000", "", nil, nil); code != http.StatusNotFound {
		t.Errorf("unknown job: %d, want 404", code)
	}

	var c struct {
		Cancelled []string `json:"cancelled"`
	}
	if code, raw := e.postJSON(t, "/api/jobs/cancel", `{"job_ids": ["`+queued.PromptID+`", "nope"]}`, &c); code != 200 || len(c.Cancelled) != 1 || c.Cancelled[0] != queued.PromptID {
		t.Errorf("POST /api/jobs/cancel: %d %s", code, raw)
	}
	if code, raw := e.postJSON(t, "/api/jobs/"+slow.PromptID+"/cancel", ``, &c); code != 200 || len(c.Cancelled) != 1 {
		t.Errorf("POST /api/jobs/{id}/cancel: %d %s", code, raw)
	}
	entry, err := e.exec.Wait(t.Context(), slow.PromptID)
	if err != nil {
		t.Fatal(err)
	}
	if last := entry.Status.Messages[len(entry.Status.Messages)-1]; last.Type != protocol.TypeExecutionInterrupted {
		t.Errorf("cancelled job's last message %s, want execution_interrupted", last.Type)
	}
	var one map[string]any
	e.do(t, "GET", "/api/jobs/"+slow.PromptID, "", nil, &one)
	if one["status"] != "cancelled" || one["execution_start_time"] == nil || one["execution_end_time"] == nil || one["workflow"] == nil {
		t.Errorf("GET /api/jobs/{cancelled}: %v", one)
	}
	// The next prompt runs.
	var next executor.Accepted
	if code, raw := e.postJSON(t, "/prompt", `{"prompt": `+sendPrompt+`}`, &next); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	if _, err := e.exec.Wait(t.Context(), next.PromptID); err != nil {
		t.Fatal(err)
	}
	e.do(t, "GET", "/api/jobs/"+next.PromptID, "", nil, &one)
	if one["status"] != "completed" || one["outputs_count"] != float64(1) {
		t.Errorf("job after the cancel: %v", one)
	}
}
