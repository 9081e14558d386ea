// Package plugins is the SDK a nodecast node pack is written with, and the
// go-plugin bridge that carries it between the host and a plugin process.
//
// # Writing a pack
//
// A node class implements Node: a Spec, and a Run that reads its inputs from a
// Call and returns a Result. A plugin binary's main serves a Pack and nothing
// else:
//
//	func main() {
//		plugins.Serve(plugins.Pack{Name: "mypack", Nodes: []plugins.Node{invert{}}})
//	}
//
// While it runs, a node sends image parts and progress through Call.Emitter;
// the host shows an image to clients once all its parts have arrived. Input
// tensors are shared with later nodes: treat them as read-only and return new
// tensors. A panic in Run becomes a failure of that run and the plugin keeps
// serving; a panic in a goroutine the node started kills the process. A node's
// error reaches clients with its ExceptionType() string when it has one, else
// its Go type, and its Traceback() []string when it has one.
//
// A program can carry built-in packs and run each as its own process with no
// separate binary: its main (or a test's TestMain) calls ServeSelfPack first,
// and the host starts it with SelfPackCommand.
//
// # The bridge
//
// The contract is protocol/pluginpb (NodePack in nodepack.proto). Tensors stay
// in the process that made them, named by TensorRef, and move only when
// another process needs them: PutTensor and GetTensor stream them in 1 MiB
// chunks, so no message meets gRPC's 4 MiB default limit, and both sides raise
// that limit anyway for large image parts. The host starts a plugin with Start
// (AutoMTLS on, gRPC only, an optional SHA-256 checksum of the binary) and
// talks to it through a PackClient. Supervision, restarts and breakers belong
// to the host.
//
// Plugin output reaches the host's slog logger: lines a plugin writes to
// stderr, stdout or the log package at Info, hclog JSON lines at their level.
//
// Of this module, the package imports protocol and may import sendimage; of
// others, go-plugin and gRPC. It must never import host: the host depends on
// the bridge, not the other way round.
package plugins
