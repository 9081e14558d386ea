package protocol

import "encoding/json"

// ComfyUI's WebSocket message types (server -> client JSON text messages).
const (
	TypeStatus               = "status"
	TypeProgress             = "progress"
	TypeProgressState        = "progress_state"
	TypeExecuting            = "executing"
	TypeExecuted             = "executed"
	TypeExecutionStart       = "execution_start"
	TypeExecutionCached      = "execution_cached"
	TypeExecutionSuccess     = "execution_success"
	TypeExecutionError       = "execution_error"
	TypeExecutionInterrupted = "execution_interrupted"
	TypeFeatureFlags         = "feature_flags"
	// TypeError is nodecast's answer to a client message it refuses (a
	// feature_flags that is not the first message); ComfyUI sends nothing.
	TypeError = "error"
)

// reservedTypes are message types that ComfyUI and its front end already give a
// meaning to; a sender node may not use them as its event name.
var reservedTypes = map[string]bool{
	TypeStatus: true, TypeProgress: true, TypeProgressState: true, TypeExecuting: true,
	TypeExecuted: true, TypeExecutionStart: true, TypeExecutionCached: true,
	TypeExecutionSuccess: true, TypeExecutionError: true, TypeExecutionInterrupted: true,
	TypeFeatureFlags: true, TypeError: true, "crystools.monitor": true, "logs": true, "notification": true,
}

// IsReservedType reports whether t is a ComfyUI message type.
func IsReservedType(t string) bool { return reservedTypes[t] }

// Message is ComfyUI's envelope for every JSON text message.
type Message struct {
	Type string `json:"type"`
	Data any    `json:"data"`
}

// RawMessage is a Message whose data is left undecoded, for clients.
type RawMessage struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// Marshal returns the JSON text of {"type":typ,"data":data}.
func Marshal(typ string, data any) ([]byte, error) {
	return json.Marshal(Message{Type: typ, Data: data})
}

// ExecInfo is the queue summary inside a status message.
type ExecInfo struct {
	QueueRemaining int `json:"queue_remaining"`
}

// Status is the body of "status" messages.
type Status struct {
	ExecInfo ExecInfo `json:"exec_info"`
}

// StatusData is the data of a "status" message; SID is set on the first
// message a new connection receives.
type StatusData struct {
	Status Status `json:"status"`
	SID    string `json:"sid,omitempty"`
}

// ExecutionStartData is the data of "execution_start" and "execution_success".
type ExecutionStartData struct {
	PromptID  string `json:"prompt_id"`
	Timestamp int64  `json:"timestamp"`
}

// ExecutionSuccessData is the data of "execution_success".
type ExecutionSuccessData = ExecutionStartData

// ExecutionCachedData is the data of "execution_cached".
type ExecutionCachedData struct {
	Nodes     []string `json:"nodes"`
	PromptID  string   `json:"prompt_id"`
	Timestamp int64    `json:"timestamp"`
}

// ExecutingData is the data of "executing". Node is nil when the prompt is done.
type ExecutingData struct {
	Node        *string `json:"node"`
	DisplayNode *string `json:"display_node,omitempty"`
	PromptID    string  `json:"prompt_id"`
}

// ProgressData is the data of "progress".
type ProgressData struct {
	Value    int    `json:"value"`
	Max      int    `json:"max"`
	PromptID string `json:"prompt_id"`
	Node     string `json:"node"`
}

// Node states of "progress_state" (ComfyUI's comfy_execution/progress.py
// NodeState; pending nodes are never sent).
const (
	NodeStateRunning  = "running"
	NodeStateFinished = "finished"
	NodeStateError    = "error"
)

// ProgressStateData is the data of "progress_state": every node of the
// prompt that has started, by node id.
type ProgressStateData struct {
	PromptID string                       `json:"prompt_id"`
	Nodes    map[string]NodeProgressState `json:"nodes"`
}

// NodeProgressState is one node's entry in "progress_state".
type NodeProgressState struct {
	Value         float64 `json:"value"`
	Max           float64 `json:"max"`
	State         string  `json:"state"`
	NodeID        string  `json:"node_id"`
	PromptID      string  `json:"prompt_id"`
	DisplayNodeID string  `json:"display_node_id"`
	ParentNodeID  *string `json:"parent_node_id"` // nil: nodecast has no subgraph expansion
	RealNodeID    string  `json:"real_node_id"`
}

// ExecutedData is the data of "executed".
type ExecutedData struct {
	Node        string         `json:"node"`
	DisplayNode string         `json:"display_node"`
	Output      map[string]any `json:"output"`
	PromptID    string         `json:"prompt_id"`
}

// ExecutionErrorData is the data of "execution_error".
type ExecutionErrorData struct {
	PromptID         string         `json:"prompt_id"`
	NodeID           string         `json:"node_id"`
	NodeType         string         `json:"node_type"`
	Executed         []string       `json:"executed"`
	ExceptionMessage string         `json:"exception_message"`
	ExceptionType    string         `json:"exception_type"`
	Traceback        []string       `json:"traceback"`
	CurrentInputs    map[string]any `json:"current_inputs"`
	CurrentOutputs   []string       `json:"current_outputs"` // ids of the nodes whose outputs the cache held when the prompt started
	Timestamp        int64          `json:"timestamp"`
}

// ExecutionInterruptedData is the data of "execution_interrupted".
type ExecutionInterruptedData struct {
	PromptID  string   `json:"prompt_id"`
	NodeID    string   `json:"node_id"`
	NodeType  string   `json:"node_type"`
	Executed  []string `json:"executed"`
	Timestamp int64    `json:"timestamp"`
}

// Feature flags. Clients send theirs as the first message; the server answers
// with its own. FlagImageParts opts a client into PART frames.
const (
	FlagPreviewMetadata = "supports_preview_metadata"
	FlagImageParts      = "supports_image_parts"
	FlagMaxUploadSize   = "max_upload_size"
	FlagMaxMessageSize  = "max_message_size"
)

// FeatureFlags is the data of a "feature_flags" message.
type FeatureFlags map[string]any

// Bool reports whether flag is present and true.
func (f FeatureFlags) Bool(flag string) bool {
	v, ok := f[flag].(bool)
	return ok && v
}

// ErrorData is the data of an "error" message: the fields of ComfyUI's
// error dictionary (server.py post_prompt's {"type","message","details",
// "extra_info"}).
type ErrorData struct {
	Type      string         `json:"type"`
	Message   string         `json:"message"`
	Details   string         `json:"details"`
	ExtraInfo map[string]any `json:"extra_info"`
}

// Error types of "error" messages.
const (
	// ErrorFeatureFlagsNotFirst: a feature_flags message came after the
	// connection's first JSON message and was ignored.
	ErrorFeatureFlagsNotFirst = "feature_flags_not_first"
)
