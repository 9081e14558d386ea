package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
)

// hangGuard bounds every wait of the serve test; it is not a speed check.
const hangGuard = time.Minute

var servingLine = regexp.MustCompile(`nodecast serving on http://(\S+) `)

// TestServe starts `nodecast serve` with a plugin folder, speaks ComfyUI's
// protocol to it over HTTP and a WebSocket, then stops it with SIGTERM and
// checks that it exits with 0 and leaves no plugin process behind.
func TestServe(t *testing.T) {
	plugDir := pluginFolder(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*hangGuard)
	defer cancel()
	// Port 0: the kernel picks a free port, which the binary prints.
	cmd := nodecastCommand(ctx, t, "serve", "--listen", "127.0.0.1:0", "--plugins", plugDir,
		"--input-dir", t.TempDir(), "--log-level", "debug")
	stdout, stderr := newOutputBuffer(), newOutputBuffer()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("stderr of nodecast serve:\n%s", stderr.String())
		}
	}()

	addr := stdout.waitFor(t, servingLine, hangGuard, exited)
	base := "http://" + addr

	// GET /features answers with the server's flags.
	res, err := http.Get(base + "/features")
	if err != nil {
		t.Fatal(err)
	}
	var features protocol.FeatureFlags
	err = json.NewDecoder(res.Body).Decode(&features)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK || !features.Bool(protocol.FlagImageParts) {
		t.Fatalf("GET /features: %d %v %v", res.StatusCode, features, err)
	}

	// GET /object_info lists the plugin's class next to the built-in ones.
	res, err = http.Get(base + "/object_info")
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]json.RawMessage
	err = json.NewDecoder(res.Body).Decode(&info)
	res.Body.Close()
	if err != nil || info["Custom_SendImageQOI"] == nil || info["SendImageOnWebSocket"] == nil {
		t.Fatalf("GET /object_info: %d, %d classes, %v", res.StatusCode, len(info), err)
	}

	// The WebSocket: status with our sid first, then the flags exchange.
	const clientID = "cli-test-client"
	conn, _, err := (&websocket.Dialer{HandshakeTimeout: hangGuard}).Dial("ws://"+addr+"/ws?clientId="+clientID, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	first := readJSON(t, conn)
	var status protocol.StatusData
	if first.Type != protocol.TypeStatus || json.Unmarshal(first.Data, &status) != nil || status.SID != clientID {
		t.Fatalf("first message %s %s, want status with sid %s", first.Type, first.Data, clientID)
	}
	err = conn.WriteJSON(protocol.Message{Type: protocol.TypeFeatureFlags,
		Data: protocol.FeatureFlags{protocol.FlagImageParts: true}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m := readJSON(t, conn)
		if m.Type != protocol.TypeFeatureFlags {
			continue // a status update may come first
		}
		var flags protocol.FeatureFlags
		if err := json.Unmarshal(m.Data, &flags); err != nil || !flags.Bool(protocol.FlagImageParts) {
			t.Fatalf("server feature_flags %s: want %s true", m.Data, protocol.FlagImageParts)
		}
		break
	}

	// The plugin processes are the server's children: the built-in pack is
	// the binary itself, the other is the plugin from the folder.
	kids := children(t, cmd.Process.Pid)
	packs := map[string]int{}
	for _, pid := range kids {
		exe, _ := os.Readlink(procPath(pid, "exe"))
		environ, _ := os.ReadFile(procPath(pid, "environ"))
		switch {
		case exe == filepath.Join(plugDir, "customnode"):
			packs["customnode"] = pid
		case strings.Contains("\x00"+string(environ), "\x00"+plugins.PackEnv+"=builtin\x00"):
			packs["builtin"] = pid
		}
	}
	if len(packs) != 2 || len(kids) != 2 {
		t.Fatalf("children %v, plugins found %v: want the builtin and customnode plugins", kids, packs)
	}
	cmdlines := map[int]string{}
	for _, pid := range kids {
		b, _ := os.ReadFile(procPath(pid, "cmdline"))
		cmdlines[pid] = string(b)
		if !alive(pid, cmdlines[pid]) {
			t.Fatalf("plugin pid %d is not running before SIGTERM", pid)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The open WebSocket is closed by the server with 1001, going away.
	conn.SetReadDeadline(time.Now().Add(hangGuard))
	for {
		_, _, err := conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
			t.Errorf("WebSocket ended with %v, want a close frame 1001", err)
		}
		break
	}
	select {
	case <-exited:
	case <-time.After(hangGuard):
		t.Fatal("nodecast serve did not exit after SIGTERM")
	}
	if waitErr != nil || cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("exit after SIGTERM: %v (code %d), want a clean exit 0", waitErr, cmd.ProcessState.ExitCode())
	}
	if !strings.Contains(stderr.String(), "shutting down") {
		t.Errorf("no shutdown log line in stderr")
	}
	for name, pid := range packs {
		if alive(pid, cmdlines[pid]) {
			t.Errorf("plugin %s (pid %d) still runs after the server exited", name, pid)
		}
	}
}

func readJSON(t *testing.T, conn *websocket.Conn) protocol.RawMessage {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(hangGuard))
	typ, msg, err := conn.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var m protocol.RawMessage
	if typ != websocket.TextMessage || json.Unmarshal(msg, &m) != nil {
		t.Fatalf("want a JSON text message, got type %d: %.200q", typ, msg)
	}
	return m
}

func procPath(pid int, name string) string {
	return filepath.Join("/proc", strconv.Itoa(pid), name)
}

// children lists the child processes of pid, from every thread's
// /proc/PID/task/TID/children.
func children(t *testing.T, pid int) []int {
	t.Helper()
	tasks, err := filepath.Glob(filepath.Join(procPath(pid, "task"), "*", "children"))
	if err != nil || len(tasks) == 0 {
		t.Skipf("cannot list child processes through /proc (%v); the orphan check needs Linux", err)
	}
	var kids []int
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				kids = append(kids, n)
			}
		}
	}
	return kids
}

// alive reports whether pid still runs the command line it had. A zombie
// has exited: only its exit status is left for a parent to collect.
func alive(pid int, cmdline string) bool {
	stat, err := os.ReadFile(procPath(pid, "stat"))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	now, err := os.ReadFile(procPath(pid, "cmdline"))
	return err == nil && string(now) == cmdline
}
