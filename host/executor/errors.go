package executor

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Wait returns them (possibly wrapped).
var (
	// ErrUnknownPrompt: no queued, running or remembered prompt has that id.
	ErrUnknownPrompt = errors.New("executor: unknown prompt")
	// ErrPromptDeleted: the prompt was taken off the queue before it ran.
	ErrPromptDeleted = errors.New("executor: prompt deleted from the queue")
	// ErrClosed: the executor was closed before the prompt ran.
	ErrClosed = errors.New("executor: closed")
	// ErrInterrupted is the cause of a node's context when /interrupt stopped it.
	ErrInterrupted = errors.New("executor: interrupted")
	// ErrNoRunner: Options.Runner is required.
	ErrNoRunner = errors.New("executor: Options.Runner is nil")
)

// Top-level error types of a refused prompt, as ComfyUI names them.
const (
	TypeNoPrompt                      = "no_prompt"
	TypeInvalidPrompt                 = "invalid_prompt"
	TypeMissingNodeType               = "missing_node_type"
	TypePromptNoOutputs               = "prompt_no_outputs"
	TypePromptOutputsFailedValidation = "prompt_outputs_failed_validation"
	// TypeUnknownWorkflow is nodecast's: a request named a workflow the config does not have.
	TypeUnknownWorkflow = "unknown_workflow"
	// TypeQueueClosed is nodecast's: the executor is shutting down.
	TypeQueueClosed = "queue_closed"
	// TypeDuplicatePromptID is nodecast's: a queued or running prompt already has that prompt_id.
	TypeDuplicatePromptID = "duplicate_prompt_id"
)

// Per-input error types, as ComfyUI names them.
const (
	TypeRequiredInputMissing      = "required_input_missing"
	TypeBadLinkedInput            = "bad_linked_input"
	TypeReturnTypeMismatch        = "return_type_mismatch"
	TypeInvalidInputType          = "invalid_input_type"
	TypeValueSmallerThanMin       = "value_smaller_than_min"
	TypeValueBiggerThanMax        = "value_bigger_than_max"
	TypeValueNotInList            = "value_not_in_list"
	TypeCustomValidationFailed    = "custom_validation_failed"
	TypeExceptionDuringValidation = "exception_during_validation"
)

// ErrorDetail is ComfyUI's error object: {"type","message","details","extra_info"}.
// It is both the top-level "error" of a refused prompt and each entry of a
// node's "errors".
type ErrorDetail struct {
	Type      string         `json:"type"`
	Message   string         `json:"message"`
	Details   string         `json:"details"`
	ExtraInfo map[string]any `json:"extra_info"`
}

// NodeError is one entry of "node_errors".
type NodeError struct {
	Errors           []ErrorDetail `json:"errors"`
	DependentOutputs []string      `json:"dependent_outputs"`
	ClassType        string        `json:"class_type"`
}

// ValidationError is a refused prompt, in the shape of ComfyUI's 400 answer:
// {"error":{...},"node_errors":{id:{...}}}.
type ValidationError struct {
	Detail     ErrorDetail          `json:"error"`
	NodeErrors map[string]NodeError `json:"node_errors"`
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "executor: prompt refused: %s: %s", e.Detail.Type, e.Detail.Message)
	if e.Detail.Details != "" {
		fmt.Fprintf(&b, ": %s", strings.ReplaceAll(e.Detail.Details, "\n", "; "))
	}
	return b.String()
}

// NewValidationError returns a refusal with no node errors, for callers (the
// HTTP API) that refuse a request before it reaches the executor.
func NewValidationError(typ, message, details string) *ValidationError {
	return &ValidationError{
		Detail:     ErrorDetail{Type: typ, Message: message, Details: details, ExtraInfo: map[string]any{}},
		NodeErrors: map[string]NodeError{},
	}
}
