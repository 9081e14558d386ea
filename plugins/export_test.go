package plugins

// The go-plugin wiring is unexported (hosts use Start, plugin binaries
// Serve); the bridge tests connect it in process under these names.
type NodePackPlugin = nodePackPlugin

const PluginName = pluginName

var ServeConfig = serveConfig
