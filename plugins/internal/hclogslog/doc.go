// Package hclogslog adapts a *slog.Logger to the hclog.Logger that go-plugin
// wants, and turns a plugin's stdout and stderr lines into log records, so the
// host logs plugins through its own slog handler.
//
// It is internal to the plugins bridge and must never import a nodecast
// package: it knows only slog and hclog.
package hclogslog
