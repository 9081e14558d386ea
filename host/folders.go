package host

import (
	"fmt"
	"os"
	"path/filepath"
)

// outputFolders makes the output and temp folders absolute, creates them,
// and empties the temp folder unless opts.KeepTempDir, as ComfyUI's start
// does. It refuses to empty a folder that holds anything else of value.
func outputFolders(opts *Options) (outputDir, tempDir string, err error) {
	if opts.OutputDir == "" {
		opts.OutputDir = "output"
	}
	if opts.TempDir == "" {
		opts.TempDir = "temp"
	}
	if outputDir, err = filepath.Abs(opts.OutputDir); err != nil {
		return "", "", fmt.Errorf("host: output folder: %w", err)
	}
	if tempDir, err = filepath.Abs(opts.TempDir); err != nil {
		return "", "", fmt.Errorf("host: temp folder: %w", err)
	}
	for _, d := range []string{outputDir, tempDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", "", fmt.Errorf("host: %w", err)
		}
	}
	opts.OutputDir, opts.TempDir = outputDir, tempDir
	if opts.KeepTempDir {
		return outputDir, tempDir, nil
	}
	home, _ := os.UserHomeDir()
	sysTemp, _ := filepath.Abs(os.TempDir())
	for what, d := range map[string]string{"the input folder": opts.InputDir, "the output folder": outputDir,
		"the root folder": "/", "the home folder": home, "the system's temp folder": sysTemp} {
		if d != "" && sameDir(d, tempDir) {
			return "", "", fmt.Errorf("host: temp folder %s is %s, which the host would empty at start: give it a folder of its own", tempDir, what)
		}
	}
	entries, err := os.ReadDir(tempDir)
	if err != nil {
		return "", "", fmt.Errorf("host: temp folder: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(tempDir, e.Name())); err != nil {
			return "", "", fmt.Errorf("host: emptying the temp folder: %w", err)
		}
	}
	return outputDir, tempDir, nil
}

// sameDir reports whether a and b name the same folder.
func sameDir(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}
