package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestCORSFlag: --enable-cors-header as ComfyUI's comfy/cli_args.py reads it
// (nargs="?", const="*"): alone it means "*", with a value (after a space
// or "=") that origin; it wins over http.enable_cors_header.
func TestCORSFlag(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfg, []byte("http:\n  enable_cors_header: https://from.config\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{"--enable-cors-header"}, "*"},
		{[]string{"--enable-cors-header", "--listen", "127.0.0.1:0"}, "*"},
		{[]string{"--listen", "127.0.0.1:0", "--enable-cors-header"}, "*"},
		{[]string{"--enable-cors-header", "https://app.example"}, "https://app.example"},
		{[]string{"-enable-cors-header=http://127.0.0.1:5173", "--cache-none"}, "http://127.0.0.1:5173"},
		{[]string{"--config", cfg}, "https://from.config"},
		{[]string{"--config", cfg, "--enable-cors-header"}, "*"},
	} {
		s, code := parseFlags("serve", tc.args, io.Discard, true)
		if s == nil {
			t.Fatalf("%v: exit %d", tc.args, code)
		}
		if got := s.hostOptions(nil).CORSOrigin; got != tc.want {
			t.Errorf("%v: CORSOrigin %q, want %q", tc.args, got, tc.want)
		}
	}
	for _, args := range [][]string{
		{"--enable-cors-header", "app.example"},
		{"--enable-cors-header=ftp://x"},
	} {
		if s, code := parseFlags("serve", args, io.Discard, true); s != nil || code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
}
