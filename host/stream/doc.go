// Package stream is the per-client ordered log that the hub delivers from:
// every message addressed to a clientId (or broadcast) is appended to that
// client's log with the next sequence number, and a socket that reconnects
// reads the log from where it left off.
//
// The log is shaped like a JetStream subject or centrifuge's history: Append
// with the expected next seq, Read after a seq, bounded per client by bytes
// and age and globally by bytes, and an epoch that changes whenever a log is
// created anew (so a position from an older log is recognisably stale).
// Memory is the in-memory implementation; a NATS JetStream one can implement
// Log without touching the hub.
//
// Entries hold the framed bytes that live delivery already built: Head is
// the small per-client prefix (the seq), Body the bytes shared with every
// other client's copy of the same message. Nothing is copied on Append.
//
// stream imports nothing of the module.
package stream
