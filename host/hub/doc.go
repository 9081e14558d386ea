// Package hub is nodecast's broadcaster: it owns the set of WebSocket clients
// and delivers ComfyUI's JSON messages and sender nodes' images to them.
//
// The hub serves ComfyUI's WebSocket endpoint (GET /ws?clientId=ID, also
// /api/ws): the first message is a "status" carrying the client's sid, and a
// client that sends {"type":"feature_flags"} gets the server's flags back,
// including supports_image_parts and max_message_size.
//
// Images arrive from sender nodes as parts (Publish). An image is committed
// only when its last part has arrived, so no client ever sees a torn image;
// it is then framed once per wire shape its clients need (PART frames, one
// type 1 frame, or base64 JSON parts) and the same bytes are queued to every
// client of that shape. JSON messages and images share one queue per client,
// so each client sees them in commit order.
//
// Each connection has one reader and one writer goroutine; only the hub
// closes a client's send path. Per-client queues are bounded in bytes: a
// client that falls behind by more than Options.QueueBytes (a resume
// client: half its window, so that it can resume) is evicted with close
// code 1008 and never makes the producer or other clients wait.
//
// Every message for a clientId goes through that client's session: a
// socket that reconnects with the clientId takes it over (the old one is
// closed with 4001), what is addressed to it while away is held, and a
// client that negotiated supports_resume gets a seq on every message and
// can resume after a drop from the replay window (a stream.Log, in memory
// today, NATS JetStream later). See session.go.
//
// The executor codes against executor.Broadcaster, which *Hub satisfies.
//
// hub imports protocol, host/stream and gorilla/websocket only; it must
// never import plugins or sendimage (nodes reach it through the executor).
package hub
