package executor_test

import (
	"context"
	"testing"

	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/host/internal/executortest"
)

// BenchmarkPrompt measures the executor's own cost per prompt: validation,
// queueing, two node calls on the in-memory runner, messages and history.
func BenchmarkPrompt(b *testing.B) {
	e, err := executor.New(executor.Options{Runner: executortest.NewRunner()})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	prompt := parsePromptB(b, sendPrompt)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		acc, verr := e.Submit(ctx, executor.Request{Prompt: prompt, ClientID: "c1"})
		if verr != nil {
			b.Fatal(verr)
		}
		if _, err := e.Wait(ctx, acc.PromptID); err != nil {
			b.Fatal(err)
		}
	}
}
