package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// Files are the browser assets, by the name they are served under
// (/nodecast/NAME).
//
//go:embed client.js client.d.ts viewer.js viewer.css index.html README.md
var Files embed.FS

// Prefix is where the assets are served: the module's stable address is
// Prefix + "client.js".
const Prefix = "/nodecast/"

// Page is the live page's file, served at / and /viewer.
const Page = "index.html"

// types by extension: the module must be served as JavaScript or browsers
// refuse to run it.
var types = map[string]string{
	".js":   "text/javascript; charset=utf-8",
	".ts":   "text/plain; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".html": "text/html; charset=utf-8",
	".md":   "text/markdown; charset=utf-8",
}

// asset is one file, read once, with its ETag.
type asset struct {
	body []byte
	typ  string
	etag string
}

var assets = func() map[string]asset {
	m := map[string]asset{}
	entries, _ := fs.ReadDir(Files, ".")
	for _, e := range entries {
		b, err := Files.ReadFile(e.Name())
		if err != nil {
			panic("web: embedded file " + e.Name() + ": " + err.Error())
		}
		sum := sha256.Sum256(b)
		m[e.Name()] = asset{body: b, typ: types[path.Ext(e.Name())], etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return m
}()

// Serve writes the asset named name (a file of Files), or 404. Assets are
// revalidated on every load (no-cache + ETag), so a new binary's page is
// never mixed with an old cached module.
func Serve(w http.ResponseWriter, r *http.Request, name string) {
	a, ok := assets[name]
	if !ok || strings.Contains(name, "/") {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.typ)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Header.Get("If-None-Match") == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Write(a.body)
}
