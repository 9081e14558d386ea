package protocol

// Session flags: a client that sends both supports_image_parts and
// supports_resume in its first feature_flags message gets a position (seq) on
// every message of its stream, and can reconnect with ResumeFrom to receive
// what it missed. The server's answer carries FlagResumeState.
const (
	FlagResume      = "supports_resume"
	FlagResumeFrom  = "resume_from" // client -> server: a Position
	FlagResumeState = "resume"      // server -> client: a ResumeState
)

// CloseReplaced is the WebSocket close code an old connection gets when a
// new one with the same clientId takes its place (as ComfyUI, the newest
// connection wins).
const CloseReplaced = 4001

// CloseReplacedText is the reason sent with CloseReplaced.
const CloseReplacedText = "replaced by a new connection"

// Position is a place in one client's stream: the epoch (which changes when
// the server starts the stream anew, so an older position is recognisably
// stale) and the seq of the last message received.
type Position struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// ResumeState is the "resume" object of the server's feature_flags answer.
// Seq is the position just before the next message the client will get:
// the first message after the answer carries Seq+1. Recovered is set only
// when the client sent resume_from: true means every message after the
// client's seq follows, with nothing missing and nothing twice; false means
// the server could not (Reason says why), delivery continues live from Seq+1
// and the client should read /history for what it missed.
type ResumeState struct {
	Epoch     string `json:"epoch"`
	Seq       uint64 `json:"seq"`
	Recovered *bool  `json:"recovered,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// Reasons a resume was refused (ResumeState.Reason starts with one of them).
const (
	ResumeEpochChanged = "epoch changed"    // the server's stream is another one (restart, expiry)
	ResumeTooOld       = "seq too old"      // the window no longer holds the next message
	ResumeAhead        = "seq ahead"        // the client names a seq the server never sent
	ResumeTooLarge     = "replay too large" // what follows seq is more than the client's queue may hold
)

// SeqField is the top-level key of a JSON message's seq.
const SeqField = "seq"
