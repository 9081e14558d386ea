// Package metrics exposes a host's operator metrics in Prometheus's text
// format: WebSocket clients, evictions and refusals, images delivered,
// dropped and pending in the hub, the prompt queue and finished prompts by
// outcome, each plugin pack's generation and liveness, and the Go runtime and
// process collectors.
//
// Every value is read from the live host when scraped (a Collector over the
// hub's, executor's and supervisor's own counters), so nothing is counted
// twice and nothing drifts. Each host gets a registry of its own, never the
// global default one, so two hosts in one process do not collide; an embedder
// may register its own collectors on it.
//
// metrics reads the host's parts through small interfaces; it must never
// import sendimage or a node implementation, nor the host package itself.
package metrics
