package plugins

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors of the bridge. Typed errors below wrap them, so callers use
// errors.Is for the kind and errors.As for the details.
var (
	// ErrNodeFailed is wrapped by every *NodeFailure: the node ran and failed.
	ErrNodeFailed = errors.New("plugins: node failed")
	// ErrUnknownTensor means the plugin holds no tensor of that id: it was
	// released, or the plugin restarted since it was stored.
	ErrUnknownTensor = errors.New("plugins: unknown tensor")
	// ErrUnavailable means the plugin cannot be reached: its process exited or
	// the connection broke. The host restarts it; go-plugin never does.
	ErrUnavailable = errors.New("plugins: plugin unavailable")
	// ErrProtocol means one side broke the NodePack contract: a tensor whose
	// header disagrees with its bytes, a run that ended without a result, a
	// message gRPC refused.
	ErrProtocol = errors.New("plugins: protocol violation")
	// ErrRunFinished is returned by an Emitter used after its node's Run returned.
	ErrRunFinished = errors.New("plugins: run already finished")
	// ErrBadPack is wrapped by every *PackError.
	ErrBadPack = errors.New("plugins: bad pack")
	// ErrChecksum is wrapped by every *ChecksumError.
	ErrChecksum = errors.New("plugins: plugin binary checksum mismatch")
)

// Exception types of failures made by the bridge itself rather than by a
// node's error. A node's error is named by its ExceptionType() string method
// when it has one, and by its Go type ("*plugins.InputError") otherwise.
const (
	ExceptionPanic        = "GoPanic"          // Node.Run panicked; the plugin keeps serving
	ExceptionUnknownClass = "UnknownNodeClass" // the pack serves no such class_type
	ExceptionBadOutput    = "BadNodeOutput"    // Node.Run returned an output the bridge cannot carry
)

// NodeFailure is a node that ran and failed, as the plugin reported it. The
// host shows it to clients as ComfyUI's execution_error.
type NodeFailure struct {
	ClassType     string
	ExceptionType string
	Message       string
	Traceback     []string
}

func (e *NodeFailure) Error() string {
	return fmt.Sprintf("plugins: node %s failed: %s: %s", e.ClassType, e.ExceptionType, e.Message)
}

func (e *NodeFailure) Unwrap() error { return ErrNodeFailed }

// CallError is a call to a plugin that failed for a reason other than the
// node's own failure. Kind is ErrUnavailable, ErrUnknownTensor or ErrProtocol.
type CallError struct {
	Op     string // Describe, Run, PutTensor, GetTensor or Release
	Kind   error
	Reason string
}

func (e *CallError) Error() string {
	kind := strings.TrimPrefix(e.Kind.Error(), "plugins: ")
	return fmt.Sprintf("plugins: %s: %s: %s", e.Op, kind, e.Reason)
}

func (e *CallError) Unwrap() error { return e.Kind }

// PackError says why a Pack cannot be served.
type PackError struct {
	Pack   string
	Reason string
}

func (e *PackError) Error() string {
	return fmt.Sprintf("plugins: pack %q: %s", e.Pack, e.Reason)
}

func (e *PackError) Unwrap() error { return ErrBadPack }

// ChecksumError is a plugin binary whose SHA-256 is not the one the host was
// told to expect; the binary was not started.
type ChecksumError struct {
	Path string
	Want []byte
	Got  []byte // nil when the file could not be read
}

func (e *ChecksumError) Error() string {
	if e.Got == nil {
		return fmt.Sprintf("plugins: plugin binary %s: cannot read it to check sha256 %x", e.Path, e.Want)
	}
	return fmt.Sprintf("plugins: plugin binary %s has sha256 %x, want %x", e.Path, e.Got, e.Want)
}

func (e *ChecksumError) Unwrap() error { return ErrChecksum }
