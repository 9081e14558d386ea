// Package cluster joins nodecast hosts through NATS JetStream, so that any
// host accepts any request and every client gets its messages on the host
// that holds its socket. There is no cluster protocol of nodecast's own:
//
//   - Prompts: a validated prompt is published to a WorkQueuePolicy stream
//     (NODECAST_PROMPTS) and accepted once JetStream acknowledged it; the
//     stream sequence is its number, so order stays FIFO over the cluster.
//     Hosts with executor slots pull it through one durable consumer with
//     explicit acks, send in-progress acks while it runs, and ack it when it
//     ended. A host that dies leaves it unacknowledged: JetStream delivers it
//     to another host after AckWait.
//   - Messages: the executing host publishes every executor message (JSON
//     messages and image parts, parts split to fit the server's
//     max_payload) to the NODECAST_OUT stream, with the prompt's delivery
//     attempt; every host consumes that stream with an ordered consumer and
//     hands the messages to its own hub, which delivers them to the sockets
//     it holds. Images are identified by (prompt, node, index): a rerun's
//     image that a client already got completely is dropped, an image torn
//     by a dead host is discarded when the rerun starts, and nothing of a
//     prompt passes after its terminal message.
//   - Control: interrupts go out on a core NATS subject to every host.
//
// Start connects (or runs an embedded nats-server with --nats-embed) and
// refuses a server older than MinServerVersion with a clear error.
package cluster
