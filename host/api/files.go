package api

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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

// uploadMemory is how much of a multipart form is held in memory; larger
// files spill to temporary files.
const uploadMemory = 32 << 20

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
	return dir, ok
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

// postUploadImage stores an uploaded image: multipart fields image, type
// (input|temp|output), subfolder and overwrite. Without overwrite, a name that
// exists gets " (1)", " (2)" ... unless the file is the same.
func (s *server) postUploadImage(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseMultipartForm(uploadMemory); err != nil {
		if strings.Contains(err.Error(), "request body too large") {
			s.tooLarge(w, 0, s.opts.MaxUploadBytes)
			return
		}
		s.bodyError(w, err, "Bad multipart form")
		return
	}
	defer func() { _ = r.MultipartForm.RemoveAll() }()
	files := r.MultipartForm.File["image"]
	if len(files) == 0 {
		writeError(w, http.StatusBadRequest, typeInvalidRequest, `No file in the "image" field`, "")
		return
	}
	fh := files[0]
	typ := r.FormValue("type")
	if typ == "" {
		typ = "input"
	}
	dir, ok := s.dirFor(typ)
	if !ok {
		writeError(w, http.StatusBadRequest, typeInvalidRequest, fmt.Sprintf("Unknown type %q (want input, temp or output)", typ), "")
		return
	}
	subfolder := r.FormValue("subfolder")
	if err := checkSubfolder(subfolder); err != nil {
		writeError(w, http.StatusBadRequest, typeBadPath, "Bad subfolder", err.Error())
		return
	}
	if err := checkName(fh.Filename); err != nil {
		writeError(w, http.StatusBadRequest, typeBadPath, "Bad file name", err.Error())
		return
	}
	overwrite := r.FormValue("overwrite") == "true" || r.FormValue("overwrite") == "1"

	f, err := fh.Open()
	if err != nil {
		writeError(w, http.StatusBadRequest, typeInvalidRequest, "Cannot read the uploaded file", err.Error())
		return
	}
	defer f.Close()
	// Only the header is read: an image is refused before it is decoded.
	cfg, format, err := image.DecodeConfig(f)
	if err != nil {
		writeError(w, http.StatusBadRequest, typeNotAnImage, "The upload is not an image this server reads (png, jpeg, gif, webp, bmp, tiff)", err.Error())
		return
	}
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
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", "Cannot rewind the upload", err.Error())
		return
	}
	name, err := storeUpload(dir, subfolder, fh.Filename, f, overwrite)
	if err != nil {
		s.log.Error("upload failed", "dir", dir, "subfolder", subfolder, "name", fh.Filename, "err", err)
		writeError(w, http.StatusInternalServerError, "internal_error", "Cannot store the upload", err.Error())
		return
	}
	s.log.Debug("upload stored", "name", name, "subfolder", subfolder, "type", typ, "format", format, "width", cfg.Width, "height", cfg.Height)
	writeJSON(w, http.StatusOK, map[string]string{"name": name, "subfolder": subfolder, "type": typ})
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
		tmp := rel(".upload-" + randomHex())
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

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
