// Package e2e holds nodecast's end-to-end tests: `nodecast serve`'s handler
// stack (host.New with the options the command builds from its config) on a
// real 127.0.0.1 socket, the built-in pack as a real subprocess, and clients
// that speak ComfyUI's protocol the way existing clients do (plain type 1
// readers, ntlb64part readers, PART-negotiating readers and the Python
// client under examples/python).
//
// The package has no code of its own besides this file; everything is in
// its _test.go files. Nothing may import it.
package e2e
