package main

import "github.com/nodecast/nodecast/plugins"

// PackName is the pack's name; the host names a folder plugin after its file,
// so build it as plugins.d/customnode.
const PackName = "customnode"

func main() {
	plugins.Serve(newPack())
}

func newPack() plugins.Pack {
	return plugins.Pack{Name: PackName, Nodes: []plugins.Node{sendImageQOI{}}}
}
