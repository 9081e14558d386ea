package host_test

import (
	"testing"

	"github.com/nodecast/nodecast/internal/testbin"
	"github.com/nodecast/nodecast/plugins/builtin"
)

// TestMain lets this test binary serve the built-in pack when the host starts
// it as a plugin subprocess, exactly as the nodecast binary does.
func TestMain(m *testing.M) { testbin.Main(m, builtin.Pack()) }
