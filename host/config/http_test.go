package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nodecast/nodecast/host/config"
)

// TestHTTPSection: http.enable_cors_header is ComfyUI's --enable-cors-header
// value: "*" or one origin; anything else is refused with key and line.
func TestHTTPSection(t *testing.T) {
	for _, origin := range []string{"*", "https://app.example", "http://127.0.0.1:5173"} {
		c, err := config.Parse("c.yaml", []byte("http:\n  enable_cors_header: \""+origin+"\"\n"), "")
		if err != nil || c.HTTP.EnableCORSHeader != origin {
			t.Errorf("%s: %+v %v", origin, c, err)
		}
	}
	for _, tc := range []struct{ text, key string }{
		{"http:\n  enable_cors_header: ftp://x\n", "http.enable_cors_header"},
		{"http:\n  enable_cors_header: https://app.example/path\n", "http.enable_cors_header"},
		{"http:\n  enable_cors_header: app.example\n", "http.enable_cors_header"},
		{"http:\n  enable_cors_header: [1]\n", "http.enable_cors_header"},
		{"http:\n  cors: \"*\"\n", "http.cors"},
	} {
		_, err := config.Parse("c.yaml", []byte(tc.text), "")
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != tc.key || ce.Line != 2 {
			t.Errorf("%q: %v, want an error at %s line 2", tc.text, err, tc.key)
		}
		if err != nil && tc.key == "http.enable_cors_header" && !strings.Contains(err.Error(), "origin") && !strings.Contains(err.Error(), "want a string") {
			t.Errorf("%q: %v does not say what an origin is", tc.text, err)
		}
	}
}
