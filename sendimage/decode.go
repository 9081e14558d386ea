package sendimage

import (
	"path/filepath"
	"slices"
	"strings"

	// Decoders for image.Decode and image.DecodeConfig: the formats ComfyUI's
	// LoadImage reads through Pillow that Go can decode. Registered here,
	// beside the list of their file extensions, so that every program that
	// turns files into images (the built-in pack, the host's /view) reads
	// the same set.
	_ "image/gif"
	_ "image/jpeg"
	_ "image/png"

	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/tiff"
	_ "golang.org/x/image/webp"
)

// imageExtensions are the file extensions of the formats registered above.
var imageExtensions = []string{".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"}

// IsImageFile reports whether name has the extension (in any case) of a
// format that image.Decode reads in a program importing sendimage: the files
// LoadImage offers from the input folder.
func IsImageFile(name string) bool {
	return slices.Contains(imageExtensions, strings.ToLower(filepath.Ext(name)))
}
