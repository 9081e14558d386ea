package main

import (
	"context"
	"fmt"

	"github.com/nodecast/nodecast/plugins"
)

// showProgressText sends "text i/steps" as progress text for i = 1..steps,
// each with a progress message, and shows the text in "executed".
type showProgressText struct{}

func (showProgressText) Spec() plugins.Spec {
	return plugins.Spec{
		ClassType:   "ShowProgressText",
		DisplayName: "Show Progress Text",
		Category:    "utils",
		Description: "Shows text on the node while it runs (TEXT frames, as ComfyUI's send_progress_text).",
		OutputNode:  true,
		Inputs: []plugins.Input{
			{Name: "text", Type: plugins.TypeString, Options: map[string]any{"default": "step", "multiline": true}},
			{Name: "steps", Type: plugins.TypeInt, Options: map[string]any{"default": 3, "min": 1, "max": 1000}},
		},
	}
}

func (showProgressText) Run(ctx context.Context, call *plugins.Call) (plugins.Result, error) {
	text, err := call.String("text", "step")
	if err != nil {
		return plugins.Result{}, err
	}
	steps, err := call.Int("steps", 3)
	if err != nil {
		return plugins.Result{}, err
	}
	for i := 1; i <= int(steps); i++ {
		if err := plugins.SendProgressText(ctx, call, fmt.Sprintf("%s %d/%d", text, i, steps)); err != nil {
			return plugins.Result{}, err
		}
		if err := call.Emitter.Progress(ctx, i, int(steps)); err != nil {
			return plugins.Result{}, err
		}
	}
	return plugins.Result{UI: map[string]any{"text": []any{text}}}, nil
}
