package hub

import (
	"errors"
	"fmt"

	"github.com/nodecast/nodecast/protocol"
)

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("hub: closed")

// PartError says why an image part was refused. The image it belongs to is
// dropped, and later parts of that image are refused too. It wraps
// protocol.ErrPart.
type PartError struct {
	ImageID string
	Part    int
	Reason  string
}

func (e *PartError) Error() string {
	return fmt.Sprintf("hub: image %q part %d: %s", e.ImageID, e.Part, e.Reason)
}

func (e *PartError) Unwrap() error { return protocol.ErrPart }
