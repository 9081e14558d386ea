// Package supervisor runs node packs as plugin subprocesses: it starts the
// built-in pack and every plugin binary in a folder, builds the registry of
// node classes from what each declares, restarts a plugin that died before its
// next call (with a crash-loop breaker that, after a cooldown, lets one
// probe call through to close it again), moves tensors between
// processes only when a node in another process needs them, and kills every
// plugin on Close.
//
// It imports protocol and the plugins bridge, never a node's implementation.
package supervisor
