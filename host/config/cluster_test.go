package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The cluster key: the NATS URL, the worker slots and the ack deadline;
// a worker count below -1 is refused with the key and its line.
func TestClusterKey(t *testing.T) {
	c, err := Parse("c.yaml", []byte("cluster:\n  nats: nats://10.0.0.1:4222\n  workers: -1\n  ack_wait: 45s\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster.NATS != "nats://10.0.0.1:4222" || c.Cluster.Workers != -1 || c.Cluster.AckWait != 45*time.Second {
		t.Fatalf("cluster: %+v", c.Cluster)
	}
	_, err = Parse("c.yaml", []byte("cluster:\n  workers: -2\n"), "")
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "cluster.workers" || ce.Line != 2 || !strings.Contains(err.Error(), "-1 (none)") {
		t.Fatalf("workers -2: %v", err)
	}
	if _, err := Parse("c.yaml", []byte("cluster:\n  nat: x\n"), ""); err == nil {
		t.Fatal("an unknown cluster key was accepted")
	}
}
