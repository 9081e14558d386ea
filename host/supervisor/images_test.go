package supervisor_test

import (
	"context"
	"fmt"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/nodecast/nodecast/host/supervisor"
	"github.com/nodecast/nodecast/internal/wait"
	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// TestImageTracker plays a node's tries through one tracker: a retry drops
// the images an earlier try handed on whole, even when it reuses their image
// ids, and holds back progress until it passes the earlier tries'.
func TestImageTracker(t *testing.T) {
	type emit struct {
		image, part int // part -1 = a progress report of value image
	}
	tests := []struct {
		name     string
		tries    [][]emit
		images   []int // batch indexes handed on whole, in order
		progress []int
	}{
		{
			name: "death inside an image",
			tries: [][]emit{
				{{1, -1}, {0, 0}, {2, -1}, {0, 1}, {3, -1}, {1, 0}},
				{{1, -1}, {0, 0}, {2, -1}, {0, 1}, {3, -1}, {1, 0}, {4, -1}, {1, 1}},
			},
			images:   []int{0, 1},
			progress: []int{1, 2, 3, 4},
		},
		{
			name: "two retries",
			tries: [][]emit{
				{{0, 0}},
				{{0, 0}, {0, 1}, {1, 0}},
				{{0, 0}, {0, 1}, {1, 0}, {1, 1}},
			},
			images: []int{0, 1},
		},
		{
			name:   "a first try alone drops nothing",
			tries:  [][]emit{{{0, 0}, {0, 1}, {0, 0}, {0, 1}}},
			images: []int{0, 0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var tr supervisor.ImageTracker
			var images, progress []int
			pending := map[string]int{}
			h := plugins.RunHandlers{
				Part: func(p *protocol.ImagePart) error {
					pending[p.ImageID]++
					if pending[p.ImageID] == p.Parts {
						images = append(images, p.Index)
						delete(pending, p.ImageID)
					}
					return nil
				},
				Progress: func(value, _ int) { progress = append(progress, value) },
			}
			for n, try := range tc.tries {
				clear(pending) // the hub drops unfinished images between tries
				th := tr.Handlers(h, n > 0)
				for _, e := range try {
					if e.part < 0 {
						th.Progress(e.image, 4)
						continue
					}
					p := &protocol.ImagePart{PartHeader: protocol.PartHeader{ImageID: fmt.Sprint("img", e.image), Index: e.image, Batch: 2, Part: e.part, Parts: 2}}
					if err := th.Part(p); err != nil {
						t.Fatal(err)
					}
				}
			}
			if !reflect.DeepEqual(images, tc.images) {
				t.Errorf("images handed on %v, want %v", images, tc.images)
			}
			if !reflect.DeepEqual(progress, tc.progress) {
				t.Errorf("progress %v, want %v", progress, tc.progress)
			}
			if want := len(tc.images); tr.Done() > want {
				t.Errorf("Done() = %d, more than the %d images handed on", tr.Done(), want)
			}
		})
	}
}

// TestLive: a handle is live while the generation that made it runs, and
// asking never restarts a dead plugin.
func TestLive(t *testing.T) {
	s := start(t, supervisor.Options{Packs: []supervisor.PackSource{selfPack("alpha")}})
	ctx := context.Background()
	made, err := s.Run(ctx, supervisor.Call{ClassType: "test.Make", Inputs: map[string]any{"side": int64(2), "value": 1.0}}, plugins.RunHandlers{})
	if err != nil {
		t.Fatal(err)
	}
	h := made.Outputs[0].(supervisor.Handle)
	if !s.Live(h) {
		t.Fatal("a fresh handle is not live")
	}
	if s.Live(supervisor.Handle{Pack: "nope", Gen: 1}) {
		t.Error("a handle into an unknown pack is live")
	}
	if err := syscall.Kill(s.Packs()[0].Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 30*time.Second, "the supervisor to notice the kill", func() bool { return !s.Live(h) })
	if p := s.Packs()[0]; p.Pid != 0 || p.Generation != 1 {
		t.Errorf("Live restarted the pack: %+v", p)
	}
	again, err := s.Run(ctx, supervisor.Call{ClassType: "test.Make", Inputs: map[string]any{"side": int64(2), "value": 1.0}}, plugins.RunHandlers{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Live(h) || !s.Live(again.Outputs[0].(supervisor.Handle)) {
		t.Errorf("after the restart: old handle live %v, new handle live %v", s.Live(h), s.Live(again.Outputs[0].(supervisor.Handle)))
	}
}
