package protocol

import (
	"strconv"
	"unicode/utf8"
)

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
			what := "character " + strconv.QuoteRune(rune(c))
			if c >= utf8.RuneSelf { // name the character, not its first byte
				if r, size := utf8.DecodeRuneInString(name[i:]); size > 1 {
					what = "character " + strconv.QuoteRune(r)
				} else {
					what = "invalid UTF-8 byte 0x" + strconv.FormatUint(uint64(c), 16)
				}
			}
			return &EventNameError{Name: name, Reason: what + " at byte " + strconv.Itoa(i) + " is not in [A-Za-z0-9_.:-]"}
		}
	}
	return nil
}
