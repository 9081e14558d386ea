package builtin

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/sendimage"
)

// ErrOutputDir says the host gave the pack no output or temp folder.
var ErrOutputDir = errors.New("builtin: no output folder")

// PrefixError says why SaveImage refused a filename_prefix. It wraps ErrPath.
type PrefixError struct {
	Prefix string
	Reason string
}

func (e *PrefixError) Error() string {
	return fmt.Sprintf("builtin: filename_prefix %q: %s", e.Prefix, e.Reason)
}

func (e *PrefixError) Unwrap() error { return ErrPath }

// ExceptionType is what ComfyUI raises for a prefix outside the folder.
func (e *PrefixError) ExceptionType() string { return "Exception" }

// SaveLevel is SaveImage's PNG level, where ComfyUI uses Pillow at zlib
// level 4: level 3, or 7 for flat images, which is faster than Pillow's 4
// and within 5% of its size on both the photo and a flat image (see
// sendimage.LevelCompact for the figures).
const SaveLevel = sendimage.LevelCompact

// maxNameTries bounds the counters tried when other writers keep taking
// the next name.
const maxNameTries = 100000

// saveImage is ComfyUI's SaveImage (preview false: the output folder, PNG
// text chunks, compress level 4) and PreviewImage (preview true: the temp
// folder, a random suffix, compress level 1, which is nodecast's fast
// default).
type saveImage struct {
	opts    Options
	preview bool
}

var hiddenInputs = []plugins.Input{
	{Name: "prompt", Type: plugins.TypePrompt, Optional: true},
	{Name: "extra_pnginfo", Type: plugins.TypeExtraPNGInfo, Optional: true},
}

func (n *saveImage) Spec() plugins.Spec {
	if n.preview {
		return plugins.Spec{
			ClassType:   "PreviewImage",
			DisplayName: "Preview Image",
			Category:    categoryImage,
			Description: "Saves the input images to the temp folder, which is emptied when the host starts.",
			OutputNode:  true,
			Inputs:      append([]plugins.Input{imageInput("images", "The images to preview.")}, hiddenInputs...),
		}
	}
	def := "ComfyUI"
	prefix := stringInput("filename_prefix", &def,
		"The prefix for the file to save: \"name\" or \"subfolder/name\"; %width%, %height%, %year%, %month%, %day%, %hour%, %minute%, %second% and %batch_num% are replaced.")
	return plugins.Spec{
		ClassType:   "SaveImage",
		DisplayName: "Save Image",
		Category:    categoryImage,
		Description: "Saves the input images to your ComfyUI output directory.",
		OutputNode:  true,
		Inputs:      append([]plugins.Input{imageInput("images", "The images to save."), prefix}, hiddenInputs...),
	}
}

func (n *saveImage) Run(ctx context.Context, call *plugins.Call) (plugins.Result, error) {
	t, err := call.Tensor("images")
	if err != nil {
		return plugins.Result{}, err
	}
	prefix := "ComfyUI"
	if !n.preview {
		if prefix, err = call.String("filename_prefix", "ComfyUI"); err != nil {
			return plugins.Result{}, err
		}
	}
	dir, typ, level := n.opts.outputDir(), "output", SaveLevel
	if n.preview {
		dir, typ, level = n.opts.tempDir(), "temp", sendimage.LevelDefault
		prefix += "_temp_" + randomSuffix()
	}
	if dir == "" {
		env := plugins.OutputDirEnv
		if n.preview {
			env = plugins.TempDirEnv
		}
		return plugins.Result{}, fmt.Errorf("%w: set %s to the folder %s writes", ErrOutputDir, env, n.Spec().ClassType)
	}
	im, err := sendimage.NewImages(t, sendimage.ConvertOptions{Limits: call.Limits.Image})
	if err != nil {
		return plugins.Result{}, err
	}
	enc, err := n.opts.registry().New("png", sendimage.EncoderOptions{Level: level})
	if err != nil {
		return plugins.Result{}, err
	}
	te, ok := enc.(sendimage.TextEncoder)
	if !ok {
		return plugins.Result{}, fmt.Errorf("builtin: the registry's png encoder %T cannot write text chunks", enc)
	}
	text, err := pngText(call.Inputs["prompt"], call.Inputs["extra_pnginfo"])
	if err != nil {
		return plugins.Result{}, err
	}
	sub, base, err := savePath(prefix, im.Width, im.Height, time.Now())
	if err != nil {
		return plugins.Result{}, err
	}
	s, err := openSaver(dir, sub, base)
	if err != nil {
		return plugins.Result{}, err
	}
	defer s.close()
	results := make([]any, 0, im.Len())
	var px *sendimage.Pixels // one image's pixels at a time, reused
	bw := bufio.NewWriterSize(nil, 1<<20)
	for i := range im.Len() {
		if err := ctx.Err(); err != nil {
			return plugins.Result{}, err
		}
		if px, err = im.Pixels(i, px); err != nil {
			return plugins.Result{}, err
		}
		name, err := s.save(strings.ReplaceAll(base, "%batch_num%", strconv.Itoa(i)), func(f *os.File) error {
			bw.Reset(f)
			defer bw.Reset(nil)
			if err := te.EncodeText(bw, px, text); err != nil {
				return err
			}
			return bw.Flush()
		})
		if err != nil {
			return plugins.Result{}, err
		}
		results = append(results, map[string]any{"filename": name, "subfolder": sub, "type": typ})
		if call.Emitter != nil {
			_ = call.Emitter.Progress(ctx, i+1, im.Len())
		}
	}
	return plugins.Result{UI: map[string]any{"images": results}}, nil
}

func (o Options) outputDir() string {
	if o.OutputDir != "" {
		return o.OutputDir
	}
	return os.Getenv(plugins.OutputDirEnv)
}

func (o Options) tempDir() string {
	if o.TempDir != "" {
		return o.TempDir
	}
	return os.Getenv(plugins.TempDirEnv)
}

// previewLetters are the letters of PreviewImage's random suffix, as
// ComfyUI spells them (its list has two p and no w).
const previewLetters = "abcdefghijklmnopqrstupvxyz"

func randomSuffix() string {
	b := make([]byte, 5)
	for i := range b {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(previewLetters))))
		b[i] = previewLetters[n.Int64()]
	}
	return string(b)
}

// pngText is what ComfyUI's SaveImage stores: "prompt" with the prompt's
// JSON, then one chunk per key of extra_pnginfo (the workflow, usually)
// with that value's JSON. Keys come sorted: the prompt's own key order was
// lost when it was decoded.
func pngText(prompt, extra any) ([]sendimage.TextChunk, error) {
	var text []sendimage.TextChunk
	if prompt != nil {
		j, err := asciiJSON(prompt)
		if err != nil {
			return nil, fmt.Errorf("builtin: the prompt does not encode as JSON: %w", err)
		}
		text = append(text, sendimage.TextChunk{Keyword: "prompt", Text: j})
	}
	m, ok := extra.(map[string]any)
	if extra != nil && !ok {
		return nil, &plugins.InputError{Input: "extra_pnginfo", Reason: fmt.Sprintf("want a JSON object, got %T", extra)}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		j, err := asciiJSON(m[k])
		if err != nil {
			return nil, fmt.Errorf("builtin: extra_pnginfo %q does not encode as JSON: %w", k, err)
		}
		text = append(text, sendimage.TextChunk{Keyword: k, Text: j})
	}
	return text, nil
}

// asciiJSON is v as JSON with every non-ASCII character escaped, as
// Python's json.dumps writes it: the text then fits a tEXt chunk.
func asciiJSON(v any) (string, error) {
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	s := strings.TrimSuffix(sb.String(), "\n")
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return s, nil
	}
	out := make([]byte, 0, len(s)+32)
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf:
			out = append(out, byte(r))
		case r > 0xffff:
			r -= 0x10000
			out = fmt.Appendf(out, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
	}
	return string(out), nil
}

// savePath splits a filename_prefix into its subfolder and file name base
// as ComfyUI's folder_paths.get_save_image_path does: %width%, %height% and
// the date fields are replaced, the path is normalized, and a path that
// leaves the folder is refused.
func savePath(prefix string, w, h int, now time.Time) (sub, base string, err error) {
	p := prefix
	if strings.Contains(p, "%") {
		p = strings.NewReplacer(
			"%width%", strconv.Itoa(w), "%height%", strconv.Itoa(h),
			"%year%", strconv.Itoa(now.Year()), "%month%", fmt.Sprintf("%02d", int(now.Month())),
			"%day%", fmt.Sprintf("%02d", now.Day()), "%hour%", fmt.Sprintf("%02d", now.Hour()),
			"%minute%", fmt.Sprintf("%02d", now.Minute()), "%second%", fmt.Sprintf("%02d", now.Second()),
		).Replace(p)
	}
	// Windows clients write "\"; ComfyUI on Windows takes it as a separator.
	p = strings.ReplaceAll(p, "\\", "/")
	if strings.ContainsRune(p, 0) {
		return "", "", &PrefixError{Prefix: prefix, Reason: "contains a NUL byte"}
	}
	if path.IsAbs(p) || filepath.VolumeName(p) != "" {
		return "", "", &PrefixError{Prefix: prefix, Reason: "saving outside the output folder is not allowed: the path is absolute"}
	}
	clean := path.Clean(p)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", "", &PrefixError{Prefix: prefix, Reason: "saving outside the output folder is not allowed: the path climbs out with \"..\""}
	}
	sub, base = path.Dir(clean), path.Base(clean)
	if sub == "." {
		sub = ""
	}
	if base == "." || base == "" || strings.HasPrefix(base, ".nodecast-") {
		return "", "", &PrefixError{Prefix: prefix, Reason: "no file name left after the folder"}
	}
	if len(base) > 200 {
		return "", "", &PrefixError{Prefix: prefix, Reason: "file name base is " + strconv.Itoa(len(base)) + " bytes, more than 200"}
	}
	return sub, base, nil
}

// saver writes files into one subfolder of a folder, through an os.Root so
// that symbolic links cannot lead outside it either.
type saver struct {
	root    *os.Root
	sub     string // OS path relative to the root, "" for the root itself
	counter int    // the next counter to try
}

// openSaver opens dir/sub, creating sub, and finds the first counter as
// ComfyUI does: one more than the largest "{base}_{counter}" there.
func openSaver(dir, sub, base string) (*saver, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("builtin: output folder %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("builtin: output folder %s: %w", dir, err)
	}
	s := &saver{root: root, sub: filepath.FromSlash(sub), counter: 1}
	if s.sub != "" {
		if err := root.MkdirAll(s.sub, 0o755); err != nil {
			root.Close()
			return nil, &PrefixError{Prefix: sub + "/" + base, Reason: "cannot make the subfolder inside the output folder: " + err.Error()}
		}
	}
	d, err := root.Open(s.dir())
	if err != nil {
		root.Close()
		return nil, &PrefixError{Prefix: sub + "/" + base, Reason: "cannot open the subfolder inside the output folder: " + err.Error()}
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("builtin: listing %s: %w", filepath.Join(dir, s.sub), err)
	}
	s.counter = nextCounter(names, base)
	return s, nil
}

func (s *saver) dir() string {
	if s.sub == "" {
		return "."
	}
	return s.sub
}

func (s *saver) close() { s.root.Close() }

// nextCounter is get_save_image_path's counter: for names that start with
// base + "_", the number up to the next "_" (0 when it is not one), and one
// more than the largest; 1 when no name matches.
func nextCounter(names []string, base string) int {
	most := 0
	for _, name := range names {
		if len(name) <= len(base) || name[:len(base)] != base || name[len(base)] != '_' {
			continue
		}
		digits, _, _ := strings.Cut(name[len(base)+1:], "_")
		n, err := strconv.Atoi(strings.TrimSpace(digits))
		if err != nil || n < 0 {
			n = 0
		}
		most = max(most, n)
	}
	if most >= maxCounter {
		return maxCounter
	}
	return most + 1
}

// maxCounter keeps counters far from overflowing an int.
const maxCounter = 1 << 40

// save writes one file, named "{base}_{counter:05}_.png" with the first
// free counter, and returns that name. The bytes go to a hidden temporary
// file first, which is then hard-linked under its name: the link fails
// when the name exists, so two writers never take the same name, and a
// reader sees either no file or the whole of it.
func (s *saver) save(base string, write func(*os.File) error) (string, error) {
	tmp := filepath.Join(s.sub, ".nodecast-"+protocol.RandomHex(8)+".png.tmp")
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("builtin: creating a file in the output folder: %w", err)
	}
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	defer s.root.Remove(tmp)
	if err != nil {
		return "", err
	}
	for range maxNameTries {
		name := fmt.Sprintf("%s_%05d_.png", base, s.counter)
		s.counter++
		err := s.root.Link(tmp, filepath.Join(s.sub, name))
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("builtin: saving %s: %w", name, err)
		}
	}
	return "", &protocol.LimitError{What: "file names tried for " + base, Value: maxNameTries, Limit: maxNameTries}
}
