package api

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/sendimage"
)

// downloadOnly are content types a browser would run; /view sends them as
// downloads, as ComfyUI does.
var downloadOnly = map[string]bool{
	"text/html": true, "text/html-sandboxed": true, "application/xhtml+xml": true,
	"text/javascript": true, "application/javascript": true, "text/css": true,
	"image/svg+xml": true, // can carry scripts
}

// imageTypes complete mime's table, which has no bmp or tiff on a bare system.
var imageTypes = map[string]string{
	".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff", ".webp": "image/webp",
	".pnm": "image/x-portable-anymap", ".ppm": "image/x-portable-pixmap",
	".pgm": "image/x-portable-graymap", ".pam": "image/x-portable-arbitrarymap",
}

// Error types of /view.
const typeBadPreview = "bad_preview"

// defaultPreviewQuality is ComfyUI's quality for preview=webp and
// preview=jpeg without a number.
const defaultPreviewQuality = 90

// getView serves a file of the input, output or temp folder: filename,
// subfolder and type (output by default), as ComfyUI's server.py does. A
// "name [input]" filename picks its type, as ComfyUI's annotated paths do.
// preview=webp;90 or preview=jpeg;90 re-encodes the image (webp whenever
// the channel keeps alpha); channel=rgb drops alpha, channel=a gives the
// alpha as a black image's alpha, channel=rgba (the default) is the file.
func (s *server) getView(w http.ResponseWriter, r *http.Request) {
	q := queryKeepingSemicolons(r.URL.RawQuery)
	if !q.Has("filename") {
		http.NotFound(w, r)
		return
	}
	filename, typ := annotatedPath(q.Get("filename"), q.Get("type"))
	if badFilename(filename) {
		writeError(w, http.StatusBadRequest, typeBadPath, "Bad file name", fmt.Sprintf("%q", filename))
		return
	}
	subfolder := q.Get("subfolder")
	if err := checkSubfolder(subfolder); err != nil {
		writeError(w, http.StatusBadRequest, typeBadPath, "Bad subfolder", err.Error())
		return
	}
	dir, ok := s.dirFor(typ)
	if !ok {
		writeError(w, http.StatusBadRequest, typeInvalidRequest, fmt.Sprintf("Unknown type %q (want input, temp or output)", typ), "")
		return
	}
	channel := "rgba"
	if q.Has("channel") {
		channel = q.Get("channel")
	}
	switch channel {
	case "rgba", "rgb", "a":
	default:
		writeError(w, http.StatusBadRequest, typeBadPreview, fmt.Sprintf("Bad channel %q (want rgb, a or rgba)", channel), "")
		return
	}
	var preview *previewSpec
	if q.Has("preview") {
		p, err := parsePreview(q.Get("preview"), q.Get("channel")) // an absent channel keeps jpeg
		if err != nil {
			writeError(w, http.StatusBadRequest, typeBadPreview, err.Error(), "")
			return
		}
		preview = p
	}
	rel := filepath.FromSlash(path.Join(subfolder, filename))
	if !filepath.IsLocal(rel) {
		writeError(w, http.StatusBadRequest, typeBadPath, "Bad file name", fmt.Sprintf("%q", rel))
		return
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer root.Close()
	f, err := root.Open(rel)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	base := path.Base(filename)
	if preview != nil || channel != "rgba" {
		s.viewConverted(w, f, base, channel, preview)
		return
	}
	ext := strings.ToLower(filepath.Ext(base))
	ctype := imageTypes[ext]
	if ctype == "" {
		ctype = mime.TypeByExtension(ext)
	}
	if i := strings.IndexByte(ctype, ';'); i >= 0 && downloadOnly[strings.TrimSpace(ctype[:i])] || downloadOnly[ctype] || ctype == "" {
		ctype = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", contentDisposition(base))
	http.ServeContent(w, r, base, st.ModTime(), f)
}

// queryKeepingSemicolons parses a query as aiohttp does, splitting on "&"
// only: ComfyUI's clients send preview=webp;90 unescaped, and Go's
// url.ParseQuery drops any pair with a ";" in it.
func queryKeepingSemicolons(raw string) url.Values {
	q := url.Values{}
	for _, pair := range strings.Split(raw, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err1 := url.QueryUnescape(k)
		val, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			continue // as url.ParseQuery: a bad escape drops the pair
		}
		q.Add(key, val)
	}
	return q
}

// contentDisposition is ComfyUI's `filename="name"`, quoted so that a quote
// or a control character in the name cannot break the header.
func contentDisposition(name string) string {
	return "filename=" + strconv.Quote(name)
}

// previewSpec is a parsed preview= value.
type previewSpec struct {
	format  string // "webp" or "jpeg"
	quality int
}

// parsePreview reads ComfyUI's "format;quality" (quality optional, 90 by
// default). A channel that keeps alpha makes it webp, as ComfyUI does:
// JPEG has no alpha. Unknown formats and qualities are refused, naming the
// value (ComfyUI would quietly send webp).
func parsePreview(v, channel string) (*previewSpec, error) {
	parts := strings.Split(v, ";")
	p := &previewSpec{format: parts[0], quality: defaultPreviewQuality}
	if p.format != "webp" && p.format != "jpeg" {
		return nil, fmt.Errorf("Bad preview %q: format %q is not webp or jpeg (want preview=webp;90 or preview=jpeg;90)", v, parts[0])
	}
	if len(parts) > 2 {
		return nil, fmt.Errorf("Bad preview %q: want format;quality", v)
	}
	if len(parts) == 2 {
		q, err := strconv.Atoi(parts[1])
		if err != nil || q < 1 || q > 100 {
			return nil, fmt.Errorf("Bad preview %q: quality %q is not a whole number from 1 to 100", v, parts[1])
		}
		p.quality = q
	}
	if strings.Contains(channel, "a") {
		p.format = "webp"
	}
	return p, nil
}

// viewConverted decodes the file and answers it re-encoded: as a preview,
// or as a PNG of the requested channels.
func (s *server) viewConverted(w http.ResponseWriter, f io.ReadSeeker, base, channel string, preview *previewSpec) {
	cfg, _, err := image.DecodeConfig(f)
	if err != nil {
		writeError(w, http.StatusBadRequest, typeNotAnImage, "The file is not an image this server reads, so it has no preview or channel", err.Error())
		return
	}
	if err := s.opts.Limits.CheckSize(cfg.Width, cfg.Height); err != nil {
		verr := fmt.Sprintf("Image of %dx%d is over the limit: %s", cfg.Width, cfg.Height, strings.TrimPrefix(err.Error(), "protocol: "))
		var le *protocol.LimitError
		details := err.Error()
		if errors.As(err, &le) {
			details = fmt.Sprintf("%s %d over limit %d", le.What, le.Value, le.Limit)
		}
		writeError(w, http.StatusRequestEntityTooLarge, typeImageTooLarge, verr, details)
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", "Cannot rewind the file", err.Error())
		return
	}
	m, _, err := image.Decode(f)
	if err != nil {
		writeError(w, http.StatusBadRequest, typeNotAnImage, "The file does not decode", err.Error())
		return
	}
	px := sendimage.FromImage(m)
	// A preview keeps the image's channels unless rgb is asked for (JPEG
	// drops alpha by itself), as ComfyUI's preview path does.
	if preview == nil || channel == "rgb" {
		px = channelPixels(px, channel)
	}
	encoder, opts, ctype, name := "png", sendimage.EncoderOptions{}, "image/png", base
	if preview != nil {
		encoder, opts = preview.format, sendimage.EncoderOptions{Quality: preview.quality}
		ctype = "image/" + preview.format
		name = strings.ReplaceAll(base, "png", preview.format) // ComfyUI's own rename
	}
	enc, err := sendimage.NewEncoder(encoder, opts)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", "No encoder", err.Error())
		return
	}
	var buf bytes.Buffer
	if err := enc.Encode(&buf, px); err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", "Cannot encode the image", err.Error())
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", contentDisposition(name))
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// channelPixels picks channels as ComfyUI's /view does: rgb drops alpha
// (gray becomes RGB, as Pillow's convert("RGB")); a is an RGBA image whose
// colour is black and whose alpha is the image's (255 without one); rgba
// keeps the image.
func channelPixels(p *sendimage.Pixels, channel string) *sendimage.Pixels {
	switch channel {
	case "rgb":
		if p.C == 3 {
			return p
		}
		out := sendimage.NewPixels(p.W, p.H, 3)
		for i, j := 0, 0; i < len(out.Pix); i, j = i+3, j+p.C {
			if p.C == 1 {
				out.Pix[i], out.Pix[i+1], out.Pix[i+2] = p.Pix[j], p.Pix[j], p.Pix[j]
			} else {
				out.Pix[i], out.Pix[i+1], out.Pix[i+2] = p.Pix[j], p.Pix[j+1], p.Pix[j+2]
			}
		}
		return out
	case "a":
		out := sendimage.NewPixels(p.W, p.H, 4)
		for i, j := 3, 0; i < len(out.Pix); i, j = i+4, j+p.C {
			out.Pix[i] = 0xff
			if p.C == 4 {
				out.Pix[i] = p.Pix[j+3]
			}
		}
		return out
	}
	return p
}

// annotatedPath is ComfyUI's folder_paths.annotated_filepath: a name ending
// in " [input]", " [output]" or " [temp]" picks its folder type; otherwise
// typ does, output when empty.
func annotatedPath(filename, typ string) (string, string) {
	for _, t := range []string{"input", "output", "temp"} {
		if strings.HasSuffix(filename, " ["+t+"]") {
			filename, typ = strings.TrimSuffix(filename, " ["+t+"]"), t
		}
	}
	if typ == "" {
		typ = "output"
	}
	return filename, typ
}

// badFilename is ComfyUI's check of a file name that must stay in its
// folder (empty, a leading "/" or ".."), plus backslashes and NUL.
func badFilename(name string) bool {
	return name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "..") || strings.ContainsAny(name, "\\\x00")
}
