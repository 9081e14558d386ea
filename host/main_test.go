package host_test

import (
	"os"
	"testing"

	"github.com/nodecast/nodecast/host/internal/testbin"
	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/plugins/builtin"
)

// TestMain lets this test binary serve the built-in pack when the host starts
// it as a plugin subprocess, exactly as the nodecast binary does.
func TestMain(m *testing.M) {
	if plugins.ServeSelfPack(builtin.Pack()) {
		os.Exit(0)
	}
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}
