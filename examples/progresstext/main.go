package main

import "github.com/nodecast/nodecast/plugins"

// PackName is the pack's name; build it as plugins.d/progresstext.
const PackName = "progresstext"

func main() {
	plugins.Serve(newPack())
}

func newPack() plugins.Pack {
	return plugins.Pack{Name: PackName, Nodes: []plugins.Node{showProgressText{}}}
}
