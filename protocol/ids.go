package protocol

import (
	"crypto/rand"
	"encoding/hex"
)

// RandomHex returns n bytes from crypto/rand in lowercase hex (2n digits):
// the one source of the random ids that cross the wire (image ids, client
// ids, resume epochs) and of random file names.
func RandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails: crypto/rand aborts the program instead
	return hex.EncodeToString(b)
}

// NewUUID returns a random version 4 UUID as Python's str(uuid.uuid4())
// writes it, the form of ComfyUI's prompt ids: 8-4-4-4-12 lowercase hex
// digits. Without its dashes it is uuid.uuid4().hex, the form of its
// client ids.
func NewUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
