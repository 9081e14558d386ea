package api

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // upload checks: the formats ComfyUI's loaders read
	_ "image/jpeg"
	_ "image/png"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/tiff"
	_ "golang.org/x/image/webp"

	"github.com/nodecast/nodecast/host/executor"
	"github.com/nodecast/nodecast/protocol"
)

// maxCollisions bounds the " (n)" names tried for one upload.
const maxCollisions = 10000

// Error types of file routes.
const (
	typeNotAnImage    = "not_an_image"
	typeImageTooLarge = "image_too_large"
	typeBadPath       = "bad_path"
)

// dirFor returns the folder of a ComfyUI file type ("" = input for uploads).
func (s *server) dirFor(typ string) (string, bool) {
	dir, ok := s.dirs[typ]
	if ok && dir == "" && typ == "temp" {
		dir = filepath.Join(s.own(), "temp")
	}
	return dir, ok
}

// stagingDir holds uploads while they stream in.
func (s *server) stagingDir() string {
	if s.opts.StagingDir != "" {
		return s.opts.StagingDir
	}
	return filepath.Join(s.own(), "uploads")
}

// checkName refuses names that could leave their folder.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("empty or special file name %q", name)
	case strings.ContainsAny(name, "/\\\x00"):
		return fmt.Errorf("file name %q contains a path separator", name)
	}
	return nil
}

// checkSubfolder refuses subfolders that leave their folder.
func checkSubfolder(sub string) error {
	if sub == "" {
		return nil
	}
	if strings.HasPrefix(sub, "/") || strings.Contains(sub, "..") || strings.ContainsAny(sub, "\\\x00") || !filepath.IsLocal(filepath.FromSlash(sub)) {
		return fmt.Errorf("subfolder %q leaves its folder", sub)
	}
	return nil
}

// maxUploadField bounds each form field of an upload besides the image.
const maxUploadField = 4096

// postUploadImage stores an uploaded image: multipart fields image, type
// (input|temp|output), subfolder and overwrite. Without overwrite, a name that
// exists gets " (1)", " (2)" ... unless the file is the same. The image
// streams to a file in the staging folder as it arrives, so no upload is held
// in memory, and the body limit is enforced while it streams.
func (s *server) postUploadImage(w http.ResponseWriter, r *http.Request) {
	up, ok := s.receiveUpload(w, r)
	if !ok {
		return
	}
	defer up.close()
	s.storeAndAnswer(w, up, up.file)
}

// upload is a received and checked upload (upload/image, upload/mask).
type upload struct {
	file      *os.File // the image, in the staging folder
	filename  string
	fields    map[string]string // type, subfolder, overwrite, original_ref
	typ, dir  string
	subfolder string
	overwrite bool
	cfg       image.Config
	format    string
}

func (u *upload) close() {
	u.file.Close()
	_ = os.Remove(u.file.Name())
}

// uploadFields are the form fields an upload keeps (each at most
// maxUploadField bytes); others are read past.
var uploadFields = map[string]bool{"type": true, "subfolder": true, "overwrite": true, "original_ref": true}

// receiveUpload streams the form of an upload into the staging folder and
// checks it: fields, folder, names and the image's header against the pixel
// limits, before anything is decoded. On false it has answered.
func (s *server) receiveUpload(w http.ResponseWriter, r *http.Request) (*upload, bool) {
	mr, err := r.MultipartReader()
	if err != nil {
		s.bodyError(w, err, "Bad multipart form")
		return nil, false
	}
	var (
		staged   *os.File
		filename string
		fields   = map[string]string{}
		done     bool
	)
	defer func() {
		if staged != nil && !done {
			staged.Close()
			_ = os.Remove(staged.Name())
		}
	}()
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.bodyError(w, err, "Bad multipart form")
			return nil, false
		}
		name := part.FormName()
		switch {
		case name == "image" && staged == nil:
			filename = part.FileName()
			if staged, err = s.stage(part); err != nil {
				part.Close()
				var mbe *http.MaxBytesError
				if !errors.As(err, &mbe) {
					s.log.Error("upload staging failed", "dir", s.stagingDir(), "err", err)
					writeError(w, http.StatusInternalServerError, "internal_error", "Cannot store the upload", err.Error())
					return nil, false
				}
				s.bodyError(w, err, "Cannot read the upload")
				return nil, false
			}
		case uploadFields[name]:
			b, err := io.ReadAll(io.LimitReader(part, maxUploadField+1))
			if err != nil {
				part.Close()
				s.bodyError(w, err, "Bad multipart form")
				return nil, false
			}
			if len(b) > maxUploadField {
				part.Close()
				writeError(w, http.StatusBadRequest, typeInvalidRequest, fmt.Sprintf("Form field %q is over %d bytes", name, maxUploadField), "")
				return nil, false
			}
			fields[name] = string(b)
		default: // other fields and files are read past, not kept
			if _, err := io.Copy(io.Discard, part); err != nil {
				part.Close()
				s.bodyError(w, err, "Bad multipart form")
				return nil, false
			}
		}
		part.Close()
	}
	if staged == nil {
		writeError(w, http.StatusBadRequest, typeInvalidRequest, `No file in the "image" field`, "")
		return nil, false
	}
	for k := range uploadFields { // r.FormValue's fallback, as before
		if _, ok := fields[k]; !ok && r.URL.Query().Has(k) {
			fields[k] = r.URL.Query().Get(k)
		}
	}
	typ := fields["type"]
	if typ == "" {
		typ = "input"
	}
	dir, ok := s.dirFor(typ)
	if !ok {
		writeError(w, http.StatusBadRequest, typeInvalidRequest, fmt.Sprintf("Unknown type %q (want input, temp or output)", typ), "")
		return nil, false
	}
	subfolder := fields["subfolder"]
	if err := checkSubfolder(subfolder); err != nil {
		writeError(w, http.StatusBadRequest, typeBadPath, "Bad subfolder", err.Error())
		return nil, false
	}
	if err := checkName(filename); err != nil {
		writeError(w, http.StatusBadRequest, typeBadPath, "Bad file name", err.Error())
		return nil, false
	}
	overwrite := fields["overwrite"] == "true" || fields["overwrite"] == "1"

	f := staged
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", "Cannot rewind the upload", err.Error())
		return nil, false
	}
	// Only the header is read: an image is refused before it is decoded.
	cfg, format, err := image.DecodeConfig(bufio.NewReader(f))
	if err != nil {
		writeError(w, http.StatusBadRequest, typeNotAnImage, "The upload is not an image this server reads (png, jpeg, gif, webp, bmp, tiff)", err.Error())
		return nil, false
	}
	if !s.checkPixels(w, cfg) {
		return nil, false
	}
	done = true
	return &upload{file: f, filename: filename, fields: fields, typ: typ, dir: dir, subfolder: subfolder,
		overwrite: overwrite, cfg: cfg, format: format}, true
}

// checkPixels answers 413 naming the limit when an image's header says it
// is over the pixel limits.
func (s *server) checkPixels(w http.ResponseWriter, cfg image.Config) bool {
	if err := s.opts.Limits.CheckSize(cfg.Width, cfg.Height); err != nil {
		verr := executor.NewValidationError(typeImageTooLarge,
			fmt.Sprintf("Image of %dx%d is over the limit: %s", cfg.Width, cfg.Height, strings.TrimPrefix(err.Error(), "protocol: ")), err.Error())
		var le *protocol.LimitError
		if errors.As(err, &le) {
			verr.Detail.ExtraInfo["limit"] = le.Limit
			verr.Detail.ExtraInfo["value"] = le.Value
			verr.Detail.ExtraInfo["what"] = le.What
		}
		writeJSON(w, http.StatusRequestEntityTooLarge, verr)
		return false
	}
	return true
}

// storeAndAnswer stores src as up's file and answers ComfyUI's
// {"name","subfolder","type"}.
func (s *server) storeAndAnswer(w http.ResponseWriter, up *upload, src io.ReadSeeker) {
	name, err := storeUpload(up.dir, up.subfolder, up.filename, src, up.overwrite)
	if err != nil {
		s.log.Error("upload failed", "dir", up.dir, "subfolder", up.subfolder, "name", up.filename, "err", err)
		writeError(w, http.StatusInternalServerError, "internal_error", "Cannot store the upload", err.Error())
		return
	}
	s.log.Debug("upload stored", "name", name, "subfolder", up.subfolder, "type", up.typ, "format", up.format,
		"width", up.cfg.Width, "height", up.cfg.Height)
	writeJSON(w, http.StatusOK, map[string]string{"name": name, "subfolder": up.subfolder, "type": up.typ})
}

// stage copies an uploaded file into a new file of the staging folder. On
// error no file is left.
func (s *server) stage(src io.Reader) (*os.File, error) {
	dir := s.stagingDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "upload-*")
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		_ = os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// storeUpload writes src into dir/subfolder under name (or the first free
// "name (n).ext") through an os.Root, so symbolic links cannot lead outside
// dir either. It returns the name used.
func storeUpload(dir, subfolder, name string, src io.ReadSeeker, overwrite bool) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	sub := filepath.FromSlash(subfolder)
	if sub != "" {
		if err := root.MkdirAll(sub, 0o755); err != nil {
			return "", err
		}
	}
	rel := func(n string) string { return filepath.Join(sub, n) }
	if overwrite {
		tmp := rel(".upload-" + protocol.RandomHex(8))
		if err := writeNew(root, tmp, src); err != nil {
			return "", err
		}
		if err := root.Rename(tmp, rel(name)); err != nil {
			_ = root.Remove(tmp)
			return "", err
		}
		return name, nil
	}
	ext := filepath.Ext(name)
	base := strings.TrimSuffix(name, ext)
	for i := 0; i < maxCollisions; i++ {
		candidate := name
		if i > 0 {
			candidate = fmt.Sprintf("%s (%d)%s", base, i, ext)
		}
		err := writeNew(root, rel(candidate), src)
		if err == nil {
			return candidate, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
		same, err := sameContent(root, rel(candidate), src)
		if err != nil {
			return "", err
		}
		if same { // the same image uploaded again keeps its name (ComfyUI #3465)
			return candidate, nil
		}
	}
	return "", fmt.Errorf("%d files named like %q already exist", maxCollisions, name)
}

// writeNew creates name (failing with fs.ErrExist when it exists) and copies
// src into it from the start; a failed copy leaves no file.
func writeNew(root *os.Root, name string, src io.ReadSeeker) error {
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return err
	}
	out, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, src)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = root.Remove(name)
	}
	return err
}

// sameContent reports whether the file name holds exactly src.
func sameContent(root *os.Root, name string, src io.ReadSeeker) (bool, error) {
	f, err := root.Open(name)
	if err != nil {
		return false, err
	}
	defer f.Close()
	a, b := sha256.New(), sha256.New()
	if _, err := io.Copy(a, f); err != nil {
		return false, err
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	if _, err := io.Copy(b, src); err != nil {
		return false, err
	}
	return bytes.Equal(a.Sum(nil), b.Sum(nil)), nil
}
