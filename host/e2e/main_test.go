package e2e_test

import (
	"testing"

	"github.com/nodecast/nodecast/internal/testbin"
	"github.com/nodecast/nodecast/plugins/builtin"
)

// TestMain lets this test binary serve the built-in pack when a host starts
// it as a plugin subprocess (host.SelfPack), exactly as the nodecast binary
// does.
func TestMain(m *testing.M) { testbin.Main(m, builtin.Pack()) }
