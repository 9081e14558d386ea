package protocol_test

import (
	"regexp"
	"testing"

	"github.com/nodecast/nodecast/protocol"
)

func TestRandomIDs(t *testing.T) {
	hex16 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	if a, b := protocol.RandomHex(16), protocol.RandomHex(16); !hex16.MatchString(a) || a == b {
		t.Errorf("RandomHex(16) = %q then %q, want two different 32-digit hex strings", a, b)
	}
	if got := protocol.RandomHex(8); len(got) != 16 {
		t.Errorf("RandomHex(8) = %q, want 16 digits", got)
	}
	// Python's str(uuid.uuid4()): version nibble 4, variant 8, 9, a or b.
	uuid4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for range 64 {
		if u := protocol.NewUUID(); !uuid4.MatchString(u) {
			t.Fatalf("NewUUID() = %q, not a version 4 UUID", u)
		}
	}
}
