package sendimage_test

import (
	"testing"

	"github.com/nodecast/nodecast/sendimage"
)

func TestIsImageFile(t *testing.T) {
	for name, want := range map[string]bool{
		"a.png": true, "b.JPG": true, "c.jpeg": true, "d.webp": true, "e.gif": true,
		"f.bmp": true, "g.tif": true, "h.TIFF": true,
		"notes.txt": false, "png": false, "archive.png.zip": false, "": false,
	} {
		if got := sendimage.IsImageFile(name); got != want {
			t.Errorf("IsImageFile(%q) = %v, want %v", name, got, want)
		}
	}
}
