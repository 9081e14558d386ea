package protocol

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"
)

// BinaryText is the type of ComfyUI's progress text frame
// (protocol.py BinaryEventTypes.TEXT):
// [u32be 3][u32be len(node_id)][node_id][utf-8 text], as server.py
// send_progress_text builds it.
const BinaryText uint32 = 3

// MaxProgressTextBytes bounds the text of one TEXT frame. ComfyUI sets no
// bound; nodecast keeps a node from filling clients' queues with one call.
const MaxProgressTextBytes = 64 << 10

// maxTextNodeID bounds the node id of a TEXT frame.
const maxTextNodeID = 1024

// CheckProgressText reports why a TEXT frame cannot carry text for nodeID:
// a *LimitError naming MaxProgressTextBytes and the length (or the node id's
// bound), or a *FrameError for text or a node id that is not UTF-8.
func CheckProgressText(nodeID, text string) error {
	if len(text) > MaxProgressTextBytes {
		return &LimitError{What: "progress text bytes", Value: int64(len(text)), Limit: MaxProgressTextBytes}
	}
	if len(nodeID) > maxTextNodeID {
		return &LimitError{What: "progress text node id bytes", Value: int64(len(nodeID)), Limit: maxTextNodeID}
	}
	if !utf8.ValidString(text) {
		return &FrameError{Kind: "type 3", Reason: "text is not valid UTF-8"}
	}
	if !utf8.ValidString(nodeID) {
		return &FrameError{Kind: "type 3", Reason: "node id is not valid UTF-8"}
	}
	return nil
}

// AppendTextFrame appends a type 3 frame: [u32be 3][u32be len(node_id)]
// [node_id][text].
func AppendTextFrame(dst []byte, nodeID, text string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, BinaryText)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(nodeID)))
	dst = append(dst, nodeID...)
	return append(dst, text...)
}

// ParseTextFrame splits a type 3 frame into its node id and text.
func ParseTextFrame(b []byte) (nodeID, text string, err error) {
	if len(b) < 8 {
		return "", "", &FrameError{Kind: "type 3", Reason: "shorter than its 8-byte header"}
	}
	if t := binary.BigEndian.Uint32(b); t != BinaryText {
		return "", "", &FrameError{Kind: "type 3", Reason: "type is " + strconv.FormatUint(uint64(t), 10)}
	}
	n := binary.BigEndian.Uint32(b[4:])
	if uint64(n) > uint64(len(b)-8) {
		return "", "", &FrameError{Kind: "type 3", Reason: "node id length " + strconv.FormatUint(uint64(n), 10) +
			" exceeds the " + strconv.Itoa(len(b)-8) + " bytes that follow the header"}
	}
	return string(b[8 : 8+n]), string(b[8+n:]), nil
}
