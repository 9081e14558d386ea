package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"

	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/sendimage"
)

// Error types of POST /upload/mask.
const (
	typeBadOriginalRef    = "bad_original_ref"
	typeOriginalNotFound  = "original_not_found"
	typeMaskSizeMismatch  = "mask_size_mismatch"
	typeOriginalTextLarge = "original_text_too_large"
)

// maxMaskText bounds the text chunks copied from the original image into the
// composite (ComfyUI copies them all; a crafted PNG could inflate zTXt).
const maxMaskText = 16 << 20

// originalRef is the original_ref form field of /upload/mask, as ComfyUI's
// mask editor sends it: the image the mask applies to.
type originalRef struct {
	Filename  *string `json:"filename"`
	Subfolder string  `json:"subfolder"`
	Type      string  `json:"type"`
}

// postUploadMask is ComfyUI's POST /upload/mask (server.py upload_mask): the
// form of /upload/image plus original_ref, a JSON {"filename","subfolder",
// "type"} naming an image already on the server ("type" defaults to output,
// "name [input]" annotations pick the folder). The original is converted to
// RGBA, the uploaded mask's alpha channel (255 where the mask has none)
// becomes its alpha, and the result is stored as a PNG, with the original's
// text chunks, under the upload's name and answered as /upload/image is.
//
// Where ComfyUI's handler fails it answers 500 (no or malformed original_ref,
// sizes that differ) or returns its 400/403 from an inner function, which
// drops them and answers 200 with nothing saved (bad path, unknown type,
// subfolder escape, missing original). nodecast answers those statuses: 400
// for a bad original_ref or sizes that differ, 403 for a subfolder that
// leaves its folder, 404 for a missing original.
func (s *server) postUploadMask(w http.ResponseWriter, r *http.Request) {
	up, ok := s.receiveUpload(w, r)
	if !ok {
		return
	}
	defer up.close()
	raw, ok := up.fields["original_ref"]
	if !ok {
		writeError(w, http.StatusBadRequest, typeBadOriginalRef, `No "original_ref" field: /upload/mask needs the JSON {"filename","subfolder","type"} of the image the mask applies to`, "")
		return
	}
	var ref originalRef
	if err := json.Unmarshal([]byte(raw), &ref); err != nil {
		writeError(w, http.StatusBadRequest, typeBadOriginalRef, "original_ref is not a JSON object", fmt.Sprintf("%q: %v", raw, err))
		return
	}
	if ref.Filename == nil {
		writeError(w, http.StatusBadRequest, typeBadOriginalRef, `original_ref has no "filename"`, raw)
		return
	}
	filename, typ := annotatedPath(*ref.Filename, ref.Type)
	if badFilename(filename) {
		writeError(w, http.StatusBadRequest, typeBadOriginalRef, "original_ref names a file outside its folder", fmt.Sprintf("filename %q", filename))
		return
	}
	dir, ok := s.dirFor(typ)
	if !ok {
		writeError(w, http.StatusBadRequest, typeBadOriginalRef, fmt.Sprintf("original_ref has an unknown type %q (want input, temp or output)", typ), "")
		return
	}
	if err := checkSubfolder(ref.Subfolder); err != nil {
		writeError(w, http.StatusForbidden, typeBadPath, "original_ref's subfolder leaves its folder", err.Error())
		return
	}
	rel := filepath.FromSlash(path.Join(ref.Subfolder, filename))
	original, err := openIn(dir, rel)
	if err != nil {
		writeError(w, http.StatusNotFound, typeOriginalNotFound, fmt.Sprintf("original_ref's image %q (type %s) does not exist", path.Join(ref.Subfolder, filename), typ), err.Error())
		return
	}
	defer original.Close()
	composite, err := s.compositeMask(w, original, up)
	if err != nil || composite == nil {
		return // answered
	}
	s.storeAndAnswer(w, up, bytes.NewReader(composite))
}

// openIn opens the regular file rel inside dir, never outside it.
func openIn(dir, rel string) (*os.File, error) {
	if !filepath.IsLocal(rel) {
		return nil, fmt.Errorf("%q leaves its folder", rel)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.Open(rel)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%q is not a file", rel)
	}
	return f, nil
}

// compositeMask decodes the original (its header checked against the pixel
// limits first) and the mask, and returns the PNG of the original with the
// mask's alpha, carrying the original's text chunks. On nil it has answered.
func (s *server) compositeMask(w http.ResponseWriter, original *os.File, up *upload) ([]byte, error) {
	cfg, _, err := image.DecodeConfig(bufio.NewReader(original))
	if err != nil {
		writeError(w, http.StatusBadRequest, typeNotAnImage, "original_ref's file is not an image this server reads", err.Error())
		return nil, nil
	}
	if !s.checkPixels(w, cfg) {
		return nil, nil
	}
	if cfg.Width != up.cfg.Width || cfg.Height != up.cfg.Height {
		verr := executor.NewValidationError(typeMaskSizeMismatch,
			fmt.Sprintf("The mask is %dx%d but the original is %dx%d: its alpha cannot be put on the original", up.cfg.Width, up.cfg.Height, cfg.Width, cfg.Height), "")
		verr.Detail.ExtraInfo["mask"] = []int{up.cfg.Width, up.cfg.Height}
		verr.Detail.ExtraInfo["original"] = []int{cfg.Width, cfg.Height}
		writeJSON(w, http.StatusBadRequest, verr)
		return nil, nil
	}
	text, err := readPNGText(original, maxMaskText)
	if err != nil {
		var te *textTooLargeError
		if errors.As(err, &te) {
			writeError(w, http.StatusRequestEntityTooLarge, typeOriginalTextLarge, te.Error(), "")
			return nil, nil
		}
		text = nil // not a PNG, or damaged text: Pillow's .text is empty then too
	}
	decode := func(f io.ReadSeeker) (*sendimage.Pixels, error) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		m, _, err := image.Decode(bufio.NewReader(f))
		if err != nil {
			return nil, err
		}
		return sendimage.FromImage(m), nil
	}
	orig, err := decode(original)
	if err != nil {
		writeError(w, http.StatusBadRequest, typeNotAnImage, "original_ref's image does not decode", err.Error())
		return nil, nil
	}
	mask, err := decode(up.file)
	if err != nil {
		writeError(w, http.StatusBadRequest, typeNotAnImage, "The mask does not decode", err.Error())
		return nil, nil
	}
	out := putAlpha(orig, mask)
	enc, err := sendimage.NewEncoder("png", sendimage.EncoderOptions{Level: sendimage.LevelCompact})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", "No PNG encoder", err.Error())
		return nil, nil
	}
	var buf bytes.Buffer
	if te, ok := enc.(sendimage.TextEncoder); ok && len(text) > 0 {
		err = te.EncodeText(&buf, out, text)
	} else {
		err = enc.Encode(&buf, out)
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", "Cannot encode the composite", err.Error())
		return nil, nil
	}
	return buf.Bytes(), nil
}

// putAlpha is Pillow's original.convert("RGBA").putalpha(mask.convert("RGBA")
// .getchannel("A")): the original's colours (gray spread to RGB) with the
// mask's alpha, 255 where the mask has no alpha channel.
func putAlpha(orig, mask *sendimage.Pixels) *sendimage.Pixels {
	out := sendimage.NewPixels(orig.W, orig.H, 4)
	n := orig.W * orig.H
	for i := range n {
		o, d := i*orig.C, i*4
		switch orig.C {
		case 1:
			out.Pix[d], out.Pix[d+1], out.Pix[d+2] = orig.Pix[o], orig.Pix[o], orig.Pix[o]
		default:
			out.Pix[d], out.Pix[d+1], out.Pix[d+2] = orig.Pix[o], orig.Pix[o+1], orig.Pix[o+2]
		}
		a := byte(0xff)
		if mask.C == 4 {
			a = mask.Pix[i*4+3]
		}
		out.Pix[d+3] = a
	}
	return out
}
