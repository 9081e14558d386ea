package protocol

import "strconv"

// MaxEventNameLen is the longest event name a sender node accepts.
const MaxEventNameLen = 64

// ValidateEventName checks an event name against ^[A-Za-z0-9_.:-]{1,64}$ and
// refuses ComfyUI's own message types, which clients already act on.
func ValidateEventName(name string) error {
	switch {
	case name == "":
		return &EventNameError{Name: name, Reason: "empty"}
	case len(name) > MaxEventNameLen:
		return &EventNameError{Name: name, Reason: "length " + strconv.Itoa(len(name)) + " exceeds limit " + strconv.Itoa(MaxEventNameLen)}
	case IsReservedType(name):
		return &EventNameError{Name: name, Reason: "is a ComfyUI message type"}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return &EventNameError{Name: name, Reason: "character " + strconv.QuoteRune(rune(c)) + " at " + strconv.Itoa(i) + " is not in [A-Za-z0-9_.:-]"}
		}
	}
	return nil
}
