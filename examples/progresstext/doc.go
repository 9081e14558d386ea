// Command progresstext is a node pack with one node, ShowProgressText, that
// shows text on itself while it runs, as ComfyUI nodes do with
// PromptServer.instance.send_progress_text(text, node_id): clients receive
// binary TEXT frames (type 3, [u32be 3][u32be len(node_id)][node_id][text]).
//
//	go build -o plugins.d/progresstext ./examples/progresstext
//
// A node sends text with plugins.SendProgressText(ctx, call, text); text
// over protocol.MaxProgressTextBytes is refused with a *protocol.LimitError.
// Like every plugin it imports the SDK (plugins) and protocol, never host.
package main
