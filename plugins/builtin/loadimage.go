package builtin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/sendimage"
)

// loadImage is ComfyUI's LoadImage: a file from the input folder, as IMAGE
// and MASK. An animated GIF becomes a batch of its frames, as in ComfyUI.
// EXIF orientation is not applied (ComfyUI rotates JPEGs by it); images are
// used as stored.
type loadImage struct{ opts Options }

func (n *loadImage) Spec() plugins.Spec {
	return plugins.Spec{
		ClassType:   "LoadImage",
		DisplayName: "Load Image",
		Category:    categoryImage,
		Description: "Loads an image from the input folder. The mask is 1 - alpha, or a 64x64 zero mask when the image has no alpha.",
		Inputs: []plugins.Input{{
			Name:    "image",
			Type:    plugins.TypeCombo,
			Choices: listInputImages(n.opts.inputDir()),
			Options: map[string]any{"image_upload": true, "tooltip": "A file in the input folder: \"name.png\", \"subfolder/name.png\" or \"name.png [input]\"."},
		}},
		Outputs: []plugins.Output{imageOut, maskOut},
	}
}

// listInputImages lists the image files at the top of the input folder,
// sorted, as ComfyUI's LoadImage lists its choices. Subfolders are not
// listed, but "subfolder/name" is still accepted at run time.
func listInputImages(dir string) []string {
	if dir == "" {
		return []string{}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return []string{}
	}
	var names []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if sendimage.IsImageFile(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	if names == nil {
		names = []string{}
	}
	return names
}

func (n *loadImage) Run(ctx context.Context, call *plugins.Call) (plugins.Result, error) {
	name, err := call.String("image", "")
	if err != nil {
		return plugins.Result{}, err
	}
	if name == "" {
		return plugins.Result{}, &plugins.InputError{Node: call.NodeID, Input: "image", Reason: "missing"}
	}
	dir := n.opts.inputDir()
	if dir == "" {
		return plugins.Result{}, fmt.Errorf("%w: set %s to the folder LoadImage reads", ErrInputDir, plugins.InputDirEnv)
	}
	rel, err := inputRelPath(name)
	if err != nil {
		return plugins.Result{}, err
	}
	f, err := openInInputDir(dir, rel, name)
	if err != nil {
		return plugins.Result{}, err
	}
	defer f.Close()
	d, err := decodeImage(f, rel, call.Limits, n.opts)
	if err != nil {
		return plugins.Result{}, err
	}
	img, mask := imageTensors(d)
	return plugins.Result{Outputs: []any{img, mask}}, nil
}

// inputRelPath turns LoadImage's image input into a path relative to the
// input folder. It accepts ComfyUI's "name [input]" annotation, refuses the
// other folders' annotations, and refuses names that are absolute or climb
// out of the folder.
func inputRelPath(name string) (string, error) {
	rel := name
	switch {
	case strings.HasSuffix(rel, " [input]"):
		rel = strings.TrimSuffix(rel, " [input]")
	case strings.HasSuffix(rel, " [output]"), strings.HasSuffix(rel, " [temp]"):
		return "", &PathError{Name: name, Reason: "only the input folder is served"}
	}
	if rel == "" {
		return "", &PathError{Name: name, Reason: "empty file name"}
	}
	// Clients write ComfyUI paths with "/", and Windows clients with "\".
	rel = strings.ReplaceAll(rel, "\\", "/")
	if path.IsAbs(rel) || filepath.IsAbs(rel) || filepath.VolumeName(rel) != "" {
		return "", &PathError{Name: name, Reason: "absolute paths are refused; name a file inside the input folder"}
	}
	for _, elem := range strings.Split(rel, "/") {
		if elem == ".." {
			return "", &PathError{Name: name, Reason: "\"..\" is refused; name a file inside the input folder"}
		}
	}
	rel = path.Clean(rel)
	if !filepath.IsLocal(filepath.FromSlash(rel)) {
		return "", &PathError{Name: name, Reason: "not a file inside the input folder"}
	}
	return filepath.FromSlash(rel), nil
}

// openInInputDir opens rel inside dir through os.Root, which also refuses
// symbolic links that lead out of the folder.
func openInInputDir(dir, rel, name string) (*os.File, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, &PathError{Name: name, Reason: "cannot open the input folder " + dir, Err: err}
	}
	defer root.Close()
	f, err := root.Open(rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &PathError{Name: name, Reason: "no such file in the input folder", Err: err}
		}
		return nil, &PathError{Name: name, Reason: "cannot open it inside the input folder", Err: err}
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, &PathError{Name: name, Reason: "cannot stat it", Err: err}
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, &PathError{Name: name, Reason: "not a regular file"}
	}
	return f, nil
}
