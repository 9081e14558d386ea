// Command customnode is a third-party node pack, written the way a node
// author outside nodecast would write one: a plugin binary that the host
// loads from its plugin folder.
//
// It adds two things to a host:
//
//   - an encoder, "qoi": the Quite OK Image format (https://qoiformat.org),
//     MIME image/qoi, registered into sendimage.Default at init next to the
//     built-in png, jpeg, webp, webp-lossless, raw, bmp and tiff;
//   - a sender node, Custom_SendImageQOI, that encodes each image of a batch
//     as QOI and sends it to the prompt's client through sendimage.Send, in
//     parts that fit one WebSocket message, under the event name it is given.
//
// Build it into the plugin folder and the host starts it next to the
// built-in pack:
//
//	go build -o plugins.d/customnode ./examples/customnode
//	go run ./host/cmd/nodecast nodes --plugins plugins.d
//
// Run by hand it only says that it is a plugin: main calls plugins.Serve and
// nothing else. Like every plugin it imports the SDK (plugins) and sendimage,
// never host.
package main
