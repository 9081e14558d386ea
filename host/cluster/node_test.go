package cluster

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
)

// A server older than MinServerVersion is refused with both versions named.
func TestCheckVersion(t *testing.T) {
	for _, v := range []string{"2.9.0", "2.9.10", "2.10.0", "2.15.2", "3.0.0-beta"} {
		if err := checkVersion(v); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
	for _, v := range []string{"2.8.4", "2.2.0", "1.4.1"} {
		err := checkVersion(v)
		if !errors.Is(err, ErrCluster) || !strings.Contains(err.Error(), v) || !strings.Contains(err.Error(), MinServerVersion) {
			t.Errorf("%s: %v, want an error naming %s and %s", v, err, v, MinServerVersion)
		}
	}
}

// Start against an address where nothing listens fails at once and names it.
func TestStartUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Start(context.Background(), Options{URL: "nats://user:secret@" + addr})
	if !errors.Is(err, ErrCluster) || !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Start: %v, want an error naming %s without the password", err, addr)
	}
}

// The embedded server: Start with Embed runs one with JetStream and makes
// the streams; an embed address that is taken is a clear error.
func TestStartEmbedded(t *testing.T) {
	n, err := Start(context.Background(), Options{Embed: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Connected(); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(context.Background(), Options{Embed: "nohost"}); err == nil || !strings.Contains(err.Error(), "want host:port") {
		t.Fatalf("bad embed address: %v", err)
	}
}
