package host_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodecast/nodecast/host"
)

func TestTempFolderEmptiedAtStart(t *testing.T) {
	temp, out := t.TempDir(), t.TempDir()
	for _, p := range []string{filepath.Join(temp, "old_00001_.png"), filepath.Join(temp, "sub", "x.png"), filepath.Join(out, "keep_00001_.png")} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	startHost(t, host.Options{OutputDir: out, TempDir: temp})
	if entries, _ := os.ReadDir(temp); len(entries) != 0 {
		t.Errorf("temp folder still holds %v", entries)
	}
	if _, err := os.Stat(filepath.Join(out, "keep_00001_.png")); err != nil {
		t.Errorf("the output folder was touched: %v", err)
	}
}

func TestTempFolderThatHoldsOtherThingsIsRefused(t *testing.T) {
	in := t.TempDir()
	keep := filepath.Join(in, "upload.png")
	if err := os.WriteFile(keep, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, opts := range map[string]host.Options{
		"input folder":  {InputDir: in, OutputDir: t.TempDir(), TempDir: in},
		"output folder": {InputDir: t.TempDir(), OutputDir: in, TempDir: in},
		"system temp":   {InputDir: t.TempDir(), OutputDir: t.TempDir(), TempDir: os.TempDir()},
	} {
		h, err := host.New(ctx, opts)
		if err == nil {
			h.Close()
			t.Errorf("%s: host started", name)
			continue
		}
		if !strings.Contains(err.Error(), "temp folder") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a refused start removed a file: %v", err)
	}
}
