package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/host/config"
)

// TestUsageErrors checks that a bad command line exits with status 2 and
// says what is wrong, and that help exits with 0.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // in stdout
		wantErr  string // in stderr
	}{
		{"no command", nil, exitUsage, "", "usage: nodecast <command>"},
		{"unknown command", []string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
		{"unknown flag", []string{"serve", "--nope"}, exitUsage, "", "flag provided but not defined: -nope"},
		{"flag of another command", []string{"nodes", "--listen", "127.0.0.1:1"}, exitUsage, "", "flag provided but not defined: -listen"},
		{"flag without its value", []string{"serve", "--listen"}, exitUsage, "", "flag needs an argument: -listen"},
		{"extra argument", []string{"nodes", "extra"}, exitUsage, "", `nodecast nodes: unexpected argument "extra"`},
		{"extra argument after flags", []string{"serve", "--listen", "127.0.0.1:0", "now"}, exitUsage, "", `unexpected argument "now"`},
		{"bad log level, serve", []string{"serve", "--log-level", "nope"}, exitUsage, "", `nodecast serve: --log-level "nope": want debug, info, warn or error`},
		{"bad log level, nodes", []string{"nodes", "--log-level", "nope"}, exitUsage, "", `nodecast nodes: --log-level "nope"`},
		// A usage error is reported before a config file is read.
		{"bad log level and missing config", []string{"serve", "--log-level", "loud", "--config", "/nonexistent.yaml"}, exitUsage, "", `--log-level "loud"`},
		{"help", []string{"help"}, exitOK, "usage: nodecast <command>", ""},
		{"--help", []string{"--help"}, exitOK, "serve", ""},
		{"serve -h", []string{"serve", "-h"}, exitOK, "", "-listen"},
		{"nodes -h", []string{"nodes", "-h"}, exitOK, "", "-plugins"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runNodecast(t, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.wantOut) {
				t.Errorf("stdout %q does not contain %q", stdout, tt.wantOut)
			}
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.wantErr)
			}
		})
	}
}

// TestStartErrors checks that what stops the host from starting exits with
// status 1 and names the culprit: a plugin folder that is a file, a bad
// config file (its name, the key and the reason), a busy address.
func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "not-a-folder")
	writeFile(t, file, "")
	config := func(name, text string) string {
		path := filepath.Join(dir, name)
		writeFile(t, path, text)
		return path
	}
	tooSmall := config("small.yaml", "listen: 127.0.0.1:0\nmessage_limit: 12\n")
	unknownKey := config("typo.yaml", "listen: 127.0.0.1:0\nplugin: ./plugins.d\n")
	badWire := config("wire.yaml", "defaults:\n  event: my.images\n  wire: fast\n")
	badEvent := config("event.yaml", "defaults:\n  event: executed\n")
	badYAML := config("syntax.yaml", "listen: [127.0.0.1\n")
	missingWorkflow := config("workflow.yaml", "workflows:\n  portrait:\n    file: portrait.json\n")
	missing := filepath.Join(dir, "missing.yaml")

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name string
		args []string
		want []string // all in stderr
	}{
		{"plugins is a file, nodes", []string{"nodes", "--plugins", file}, []string{"nodecast nodes: --plugins " + file + " is not a folder"}},
		{"plugins is a file, serve", []string{"serve", "--listen", "127.0.0.1:0", "--plugins", file}, []string{"nodecast serve: --plugins " + file + " is not a folder"}},
		{"output dir is a file", []string{"serve", "--listen", "127.0.0.1:0", "--output-dir", file}, []string{"nodecast serve: --output-dir " + file + " is not a folder"}},
		{"temp dir is a file", []string{"serve", "--listen", "127.0.0.1:0", "--temp-dir", file}, []string{"nodecast serve: --temp-dir " + file + " is not a folder"}},
		{"message limit too small", []string{"nodes", "--config", tooSmall}, []string{tooSmall + ":2", "message_limit", "12 is too small"}},
		{"unknown key", []string{"serve", "--config", unknownKey}, []string{unknownKey + ":2", `unknown key "plugin"`, "plugins"}},
		{"bad wire", []string{"nodes", "--config", badWire}, []string{badWire + ":3", "defaults.wire", `unknown wire "fast"`}},
		{"reserved event", []string{"nodes", "--config", badEvent}, []string{badEvent, "defaults.event", "bad event name"}},
		{"bad YAML", []string{"nodes", "--config", badYAML}, []string{badYAML, "bad YAML"}},
		{"missing workflow file", []string{"nodes", "--config", missingWorkflow}, []string{missingWorkflow, "workflows.portrait.file", "portrait.json"}},
		{"missing config", []string{"nodes", "--config", missing}, []string{missing, "cannot read"}},
		{"busy address", []string{"serve", "--listen", busy.Addr().String()}, []string{"nodecast serve: --listen " + busy.Addr().String()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runNodecast(t, tt.args...)
			if code != exitError {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, exitError, stdout, stderr)
			}
			for _, want := range tt.want {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr %q does not contain %q", stderr, want)
				}
			}
		})
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// listing is what `nodecast nodes` printed: class -> pack and plugin path.
type listing map[string]struct{ pack, plugin string }

func parseListing(t *testing.T, out string) listing {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || strings.Join(strings.Fields(lines[0]), " ") != "CLASS PACK CATEGORY PLUGIN" {
		t.Fatalf("listing without its header:\n%s", out)
	}
	l := listing{}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < 3 {
			t.Fatalf("short line %q", line)
		}
		l[f[0]] = struct{ pack, plugin string }{f[1], f[len(f)-1]}
	}
	return l
}

// TestNodes checks `nodecast nodes`: the built-in classes served by the
// builtin pack and the plugin's class by its binary in the folder, whether
// the folder comes from --plugins or the config file, the flag winning.
func TestNodes(t *testing.T) {
	plugins := pluginFolder(t)
	cfgDir := filepath.Dir(plugins)
	// A relative path in a config file is relative to the file's folder.
	cfg := filepath.Join(cfgDir, "nodecast.yaml")
	writeFile(t, cfg, "plugins: plugins.d\n")
	empty := t.TempDir()

	tests := []struct {
		name       string
		args       []string
		wantPlugin bool
	}{
		{"--plugins", []string{"nodes", "--plugins", plugins}, true},
		{"config file", []string{"nodes", "--config", cfg}, true},
		{"--plugins wins over the config file", []string{"nodes", "--config", cfg, "--plugins", empty}, false},
		{"missing folder", []string{"nodes", "--plugins", filepath.Join(empty, "none")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runNodecast(t, tt.args...)
			if code != exitOK {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			l := parseListing(t, stdout)
			for _, class := range []string{"SendImageOnWebSocket", "EmptyImage", "LoadImage", "ETN_SendImageWebSocket",
				"SaveImageWebsocket", "NTL_SendImagesWebSocket", "RepeatImageBatch"} {
				if got := l[class]; got.pack != "builtin" || got.plugin != "subprocess)" {
					t.Errorf("%s: pack %q plugin %q, want builtin, built in", class, got.pack, got.plugin)
				}
			}
			got, ok := l["Custom_SendImageQOI"]
			if ok != tt.wantPlugin {
				t.Fatalf("Custom_SendImageQOI listed: %v, want %v\n%s", ok, tt.wantPlugin, stdout)
			}
			if ok && (got.pack != "customnode" || got.plugin != filepath.Join(plugins, "customnode")) {
				t.Errorf("Custom_SendImageQOI: pack %q plugin %q, want customnode at %s", got.pack, got.plugin, plugins)
			}
		})
	}
}

// TestCacheNoneFlag: --cache-none turns ComfyUI's output cache off whatever
// the config says; without it serve caches with the config's bound.
func TestCacheNoneFlag(t *testing.T) {
	s, code := parseFlags("serve", []string{"--cache-none"}, io.Discard, true) // code is for a failed parse
	if s == nil || !s.cfg.Cache.None || s.hostOptions(nil).CacheBytes != 0 {
		t.Fatalf("--cache-none: %+v %d", s, code)
	}
	s, _ = parseFlags("serve", nil, io.Discard, true)
	if s == nil || s.hostOptions(nil).CacheBytes != config.DefaultCacheBytes {
		t.Fatalf("default: %+v", s)
	}
}
