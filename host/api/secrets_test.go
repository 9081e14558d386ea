package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/host/api"
	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/host/internal/executortest"
	"github.com/nodecast/nodecast/host/internal/logbuf"
)

// TestSecretsNeverShown plants secrets in extra_data under the keys ComfyUI
// strips before queueing (execution.py SENSITIVE_EXTRA_DATA_KEYS, popped in
// server.py PromptServer.post_prompt into the queue item's sixth field) and
// a key the config adds, then greps every answer, every message and the log
// for them; the node that declares them must still get them (execution.py
// PromptExecutor.execute copies them back into extra_data for the hidden
// inputs auth_token_comfy_org and api_key_comfy_org).
func TestSecretsNeverShown(t *testing.T) {
	var logs logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := &executortest.Broadcaster{}
	e := newEnv(t, api.Options{Logger: log}, executor.Options{Broadcaster: b, Logger: log, SensitiveKeys: []string{"custom_secret"}})
	secrets := map[string]string{
		"auth_token_comfy_org": "SECRET-auth-7f3a",
		"api_key_comfy_org":    "SECRET-key-91bc",
		"custom_secret":        "SECRET-custom-5d20",
	}
	extra := func() string {
		m := map[string]any{"extra_pnginfo": map[string]any{"shown": "PNGINFO-visible"}}
		for k, v := range secrets {
			m[k] = v
		}
		bs, _ := json.Marshal(m)
		return string(bs)
	}
	var seen strings.Builder
	grab := func(method, path, body string) []byte {
		t.Helper()
		_, got := e.do(t, method, path, "application/json", strings.NewReader(body), nil)
		seen.Write(got)
		seen.WriteByte('\n')
		return got
	}

	// A running prompt: /queue shows it, with its extra_data.
	slow := grab("POST", "/prompt", `{"prompt":{"1":{"class_type":"SlowNode","inputs":{}}},"extra_data":`+extra()+`}`)
	var acc executor.Accepted
	if err := json.Unmarshal(slow, &acc); err != nil {
		t.Fatalf("POST /prompt: %s", slow)
	}
	<-e.runner.Started
	queue := grab("GET", "/queue", "")
	if !strings.Contains(string(queue), "PNGINFO-visible") {
		t.Fatalf("/queue does not show the prompt's extra_data, so the check below proves nothing: %s", queue)
	}
	grab("GET", "/api/queue", "")
	grab("GET", "/api/jobs", "")
	grab("GET", "/api/jobs/"+acc.PromptID, "")
	grab("POST", "/interrupt", "")
	if _, err := e.exec.Wait(context.Background(), acc.PromptID); err != nil {
		t.Fatal(err)
	}

	// A prompt whose node declares the secrets, and fails.
	body := grab("POST", "/prompt", `{"prompt":{"1":{"class_type":"SecretsNode","inputs":{}}},"extra_data":`+extra()+`}`)
	if err := json.Unmarshal(body, &acc); err != nil {
		t.Fatalf("POST /prompt: %s", body)
	}
	if _, err := e.exec.Wait(context.Background(), acc.PromptID); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	for _, c := range e.runner.Calls() {
		if c.ClassType == executortest.ClassSecrets {
			got = c.Inputs
		}
	}
	for k, v := range secrets {
		if got[k] != v {
			t.Errorf("the node's hidden input %s = %v, want the request's secret %q", k, got[k], v)
		}
	}
	grab("GET", "/history", "")
	grab("GET", "/history/"+acc.PromptID, "")
	grab("GET", "/api/history?max_items=10", "")
	grab("GET", "/api/jobs", "")
	grab("GET", "/api/jobs/"+acc.PromptID, "")
	grab("GET", "/queue", "")
	for _, m := range b.Messages() {
		bs, _ := json.Marshal(m.Data)
		fmt.Fprintf(&seen, "%s %s\n", m.Type, bs)
	}
	if !strings.Contains(seen.String(), "execution_error") {
		t.Fatal("no execution_error was seen: the failing node's inputs were not checked")
	}
	for k, v := range secrets {
		if strings.Contains(seen.String(), v) {
			t.Errorf("secret %s shown in an answer or a message:\n%s", k, seen.String())
		}
		if strings.Contains(logs.String(), v) {
			t.Errorf("secret %s in the log:\n%s", k, logs.String())
		}
	}
}
