// Package config reads nodecast's YAML configuration file: where to listen,
// the plugin and input folders, message and body limits, the host's default
// settings for sender nodes, and named workflows (ComfyUI API-format JSON
// files) with per-node settings (event, encoder, wire, part size) keyed by
// node id or _meta.title. Decoding is strict: a bad file is refused with a
// *Error that names the file, the key and the reason.
//
// It imports only protocol of this module: never the executor (whose plugin
// machinery a YAML parser does not need; host converts the workflows),
// sendimage or a node implementation.
package config
