package sendimage

import (
	"encoding/binary"
	"hash/crc32"
	"image"
	"io"
	"strconv"
	"unicode/utf8"
)

// TextChunk is one PNG text entry: what Pillow's PngInfo.add_text writes,
// and what ComfyUI's SaveImage stores the prompt and workflow in.
type TextChunk struct {
	Keyword string // 1..79 Latin-1 characters, no NUL, no leading or trailing space
	Text    string
}

// TextEncoder is an Encoder that can also store text in the file.
type TextEncoder interface {
	Encoder
	// EncodeText is Encode, with text written before the pixels. Bad
	// keywords are refused before the first byte is written.
	EncodeText(w io.Writer, m image.Image, text []TextChunk) error
}

// EncodeText writes m as a PNG with text chunks after IHDR, as Pillow
// places them. A text that Latin-1 can hold becomes tEXt, any other an
// uncompressed iTXt (UTF-8): Pillow's add_text makes the same choice.
func (e *pngEncoder) EncodeText(w io.Writer, m image.Image, text []TextChunk) error {
	src, err := rowsOf("png", m, pngMaxSide)
	if err != nil {
		return err
	}
	chunks := make([][]byte, 0, len(text))
	for _, t := range text {
		c, err := textChunk(t)
		if err != nil {
			return err
		}
		chunks = append(chunks, c)
	}
	return e.encodeRowsText(w, src, chunks)
}

// textChunk builds the whole chunk (length, type, data, CRC) for t.
func textChunk(t TextChunk) ([]byte, error) {
	key, ok := latin1(t.Keyword)
	switch {
	case !ok || len(key) == 0 || len(key) > 79:
		return nil, &OptionError{Owner: "png", Option: "TextChunk.Keyword", Value: strconv.Quote(t.Keyword), Reason: "want 1..79 Latin-1 characters"}
	case key[0] == ' ' || key[len(key)-1] == ' ':
		return nil, &OptionError{Owner: "png", Option: "TextChunk.Keyword", Value: strconv.Quote(t.Keyword), Reason: "no leading or trailing space"}
	}
	for _, b := range key {
		if b < 0x20 || b > 0x7e && b < 0xa1 {
			return nil, &OptionError{Owner: "png", Option: "TextChunk.Keyword", Value: strconv.Quote(t.Keyword), Reason: "printable Latin-1 characters only"}
		}
	}
	var typ string
	data := append([]byte{}, key...)
	data = append(data, 0)
	if txt, ok := latin1(t.Text); ok {
		typ = "tEXt"
		data = append(data, txt...)
	} else {
		if !utf8.ValidString(t.Text) {
			return nil, &OptionError{Owner: "png", Option: "TextChunk.Text", Value: len(t.Text), Reason: "not valid UTF-8"}
		}
		typ = "iTXt"
		data = append(data, 0, 0, 0, 0) // uncompressed, method 0, no language, no translated keyword
		data = append(data, t.Text...)
	}
	if len(data) > 1<<31-1 {
		return nil, &OptionError{Owner: "png", Option: "TextChunk.Text", Value: len(t.Text), Reason: "longer than a PNG chunk holds"}
	}
	c := make([]byte, 8, 12+len(data))
	binary.BigEndian.PutUint32(c, uint32(len(data)))
	copy(c[4:], typ)
	c = append(c, data...)
	return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:])), nil
}

// latin1 converts s to Latin-1 bytes; ok is false when a character has no
// Latin-1 code, or s holds a NUL (which ends a keyword) or invalid UTF-8.
func latin1(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r == 0 || r > 0xff || r == utf8.RuneError {
			return nil, false
		}
		out = append(out, byte(r))
	}
	return out, true
}
