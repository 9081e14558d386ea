// Package pluginpb is the gRPC contract between the nodecast host and its
// node pack plugins: nodepack.proto and the code protoc generates from it
// (`go tool task proto`). Only the plugins bridge uses it; node code and the
// host see plain Go types, never these.
package pluginpb
