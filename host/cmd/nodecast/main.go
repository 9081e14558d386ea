// Command nodecast runs the nodecast host: ComfyUI's HTTP and WebSocket API
// with the built-in node pack and every plugin in a folder.
//
//	nodecast serve [--listen 127.0.0.1:8188] [--plugins ./plugins.d] [--config FILE] [--input-dir ./input]
//	nodecast nodes [--plugins ./plugins.d] [--config FILE]
//
// The built-in pack runs as a subprocess of this same binary (a hidden mode
// selected by an environment variable), so it needs no separate build.
package main

import (
	"os"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/plugins/builtin"
)

func main() {
	if plugins.ServeSelfPack(builtin.Pack()) {
		return
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
