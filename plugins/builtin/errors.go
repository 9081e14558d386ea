package builtin

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// Sentinel errors. The typed errors below wrap them, so callers can use
// errors.Is for the kind and errors.As for the details.
var (
	ErrPath     = errors.New("builtin: bad image path")
	ErrBase64   = errors.New("builtin: invalid base64")
	ErrDecode   = errors.New("builtin: cannot decode image")
	ErrBatch    = errors.New("builtin: images do not make one batch")
	ErrInputDir = errors.New("builtin: no input folder")
	ErrPartLen  = errors.New("builtin: bad part length")
)

// PathError says why LoadImage refused or could not open a file name.
// It wraps ErrPath and, when the file is missing, fs.ErrNotExist.
type PathError struct {
	Name   string // the image input as the prompt gave it
	Reason string
	Err    error // the underlying error from the file system, or nil
}

func (e *PathError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("builtin: image %q: %s: %v", e.Name, e.Reason, e.Err)
	}
	return fmt.Sprintf("builtin: image %q: %s", e.Name, e.Reason)
}

func (e *PathError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrPath, e.Err}
	}
	return []error{ErrPath}
}

// ExceptionType names the Python exception ComfyUI raises in the same case.
func (e *PathError) ExceptionType() string {
	if errors.Is(e.Err, fs.ErrNotExist) {
		return "FileNotFoundError"
	}
	return "ValueError"
}

// Base64Error says that a base64 input does not decode.
type Base64Error struct {
	Input  string // input name, with an index for lists: "image", "images[2]"
	Offset int64  // byte offset of the first bad character, after any data: prefix
	Length int    // characters of base64 text seen (after stripping)
}

func (e *Base64Error) Error() string {
	return fmt.Sprintf("builtin: %s: invalid base64 at character %d of %d", e.Input, e.Offset, e.Length)
}

func (e *Base64Error) Unwrap() error { return ErrBase64 }

// ExceptionType is what Python's base64.b64decode raises.
func (e *Base64Error) ExceptionType() string { return "binascii.Error" }

// DecodeError says that bytes which were meant to be an image are not one
// this pack can read. It wraps ErrDecode and the decoder's own error.
type DecodeError struct {
	Source string // file name or input name
	Format string // "png", "gif", ... ; empty when the format is not recognised
	Err    error
}

func (e *DecodeError) Error() string {
	if e.Format == "" {
		return fmt.Sprintf("builtin: %s: not an image in a known format (%s): %v", e.Source, strings.Join(knownFormats, ", "), e.Err)
	}
	return fmt.Sprintf("builtin: %s: bad %s image: %v", e.Source, e.Format, e.Err)
}

func (e *DecodeError) Unwrap() []error { return []error{ErrDecode, e.Err} }

// ExceptionType names what Pillow raises in the same case.
func (e *DecodeError) ExceptionType() string {
	if e.Format == "" {
		return "PIL.UnidentifiedImageError"
	}
	return "OSError"
}

// BatchError says that images of different sizes or channel counts cannot
// be stacked into one batch tensor.
type BatchError struct {
	Node   string // class type
	Index  int    // position of the offending image
	Got    string // its size, "640x480" or "4 channels"
	Want   string // the size of the first image
	Reason string // set instead of the sizes for other batch problems
}

func (e *BatchError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("builtin: %s: %s", e.Node, e.Reason)
	}
	return fmt.Sprintf("builtin: %s: image %d is %s, but image 0 is %s; all images of a batch must match", e.Node, e.Index, e.Got, e.Want)
}

func (e *BatchError) Unwrap() error { return ErrBatch }

// ExceptionType is what torch.cat raises for tensors of different shapes.
func (e *BatchError) ExceptionType() string { return "RuntimeError" }

// PartLenError says that an NTL sender's partlen cannot be honoured.
// It wraps ErrPartLen and, when the message limit is the reason, the
// *protocol.LimitError that says so.
type PartLenError struct {
	PartLen int64
	Reason  string
	Err     error // the cause, or nil
}

func (e *PartLenError) Error() string {
	return fmt.Sprintf("builtin: partlen %d: %s", e.PartLen, e.Reason)
}

func (e *PartLenError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrPartLen, e.Err}
	}
	return []error{ErrPartLen}
}

// ExceptionType matches the ValueError a Python node would raise.
func (e *PartLenError) ExceptionType() string { return "ValueError" }
