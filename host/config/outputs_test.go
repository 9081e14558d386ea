package config_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/nodecast/nodecast/host/config"
)

func TestOutputAndTempFolders(t *testing.T) {
	dir := t.TempDir()
	c, err := config.Parse("n.yaml", []byte("output_dir: ./out\ntemp_dir: /var/tmp/nodecast\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.OutputDir != filepath.Join(dir, "out") || c.TempDir != "/var/tmp/nodecast" {
		t.Errorf("output_dir %q, temp_dir %q", c.OutputDir, c.TempDir)
	}
	_, err = config.Parse("n.yaml", []byte("output_dir: [a]\n"), dir)
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Key != "output_dir" || ce.Line != 1 {
		t.Errorf("a list as output_dir: %v", err)
	}
}
