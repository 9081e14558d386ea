package api

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/nodecast/nodecast/sendimage"
)

// textTooLargeError says a PNG's text chunks hold more than the limit.
type textTooLargeError struct{ Limit int64 }

func (e *textTooLargeError) Error() string {
	return fmt.Sprintf("The original image's text chunks hold more than the limit of %d bytes", e.Limit)
}

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// readPNGText reads the text chunks of the PNG in rs from its start, as
// Pillow's PngImageFile.text holds them: tEXt (Latin-1), zTXt and iTXt
// (compressed or not), in file order; a later chunk with the same keyword
// replaces an earlier one's text. At most limit bytes of text are read
// (inflated bytes counted); more is a *textTooLargeError.
func readPNGText(rs io.ReadSeeker, limit int64) ([]sendimage.TextChunk, error) {
	if _, err := rs.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	r := bufio.NewReader(rs)
	sig := make([]byte, 8)
	if _, err := io.ReadFull(r, sig); err != nil || !bytes.Equal(sig, pngSignature) {
		return nil, errors.New("not a PNG")
	}
	var out []sendimage.TextChunk
	index := map[string]int{}
	budget := limit
	var head [8]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return out, err
		}
		n := int64(binary.BigEndian.Uint32(head[:4]))
		typ := string(head[4:8])
		if typ == "IEND" {
			return out, nil
		}
		if typ != "tEXt" && typ != "zTXt" && typ != "iTXt" {
			if _, err := r.Discard(int(min(n+4, 1<<31-1))); err != nil { // data and CRC
				return out, err
			}
			continue
		}
		if n > budget {
			return nil, &textTooLargeError{Limit: limit}
		}
		data := make([]byte, n+4)
		if _, err := io.ReadFull(r, data); err != nil {
			return out, err
		}
		data = data[:n]
		budget -= n
		key, text, err := parseTextChunk(typ, data, &budget)
		if err != nil {
			var te *textTooLargeError
			if errors.As(err, &te) {
				te.Limit = limit
				return nil, te
			}
			continue // a damaged chunk is skipped, as Pillow does
		}
		if i, ok := index[key]; ok {
			out[i].Text = text
			continue
		}
		index[key] = len(out)
		out = append(out, sendimage.TextChunk{Keyword: key, Text: text})
	}
}

// parseTextChunk decodes one text chunk's data; inflated text is counted
// against budget.
func parseTextChunk(typ string, data []byte, budget *int64) (key, text string, err error) {
	k, rest, ok := bytes.Cut(data, []byte{0})
	if !ok || len(k) == 0 || len(k) > 79 {
		return "", "", errors.New("bad keyword")
	}
	key = latin1String(k)
	switch typ {
	case "tEXt":
		return key, latin1String(rest), nil
	case "zTXt":
		if len(rest) < 1 || rest[0] != 0 {
			return "", "", errors.New("bad compression method")
		}
		b, err := inflate(rest[1:], budget)
		if err != nil {
			return "", "", err
		}
		return key, latin1String(b), nil
	}
	// iTXt: compression flag, method, language\0, translated keyword\0, text (UTF-8).
	if len(rest) < 2 {
		return "", "", errors.New("short iTXt")
	}
	compressed, method := rest[0], rest[1]
	rest = rest[2:]
	for range 2 {
		_, after, ok := bytes.Cut(rest, []byte{0})
		if !ok {
			return "", "", errors.New("short iTXt")
		}
		rest = after
	}
	if compressed == 1 {
		if method != 0 {
			return "", "", errors.New("bad compression method")
		}
		b, err := inflate(rest, budget)
		if err != nil {
			return "", "", err
		}
		rest = b
	}
	return key, string(rest), nil
}

func inflate(b []byte, budget *int64) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	out, err := io.ReadAll(io.LimitReader(zr, *budget+1))
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > *budget {
		return nil, &textTooLargeError{}
	}
	*budget -= int64(len(out))
	return out, nil
}

// latin1String decodes Latin-1 bytes, as PNG's tEXt and zTXt hold them.
func latin1String(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}
