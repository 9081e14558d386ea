package api

import (
	"net/http"

	"github.com/nodecast/nodecast/host/web"
)

// webRoutes serves the live page at / and /viewer and the browser client and
// the page's assets under /nodecast/ (web.Prefix). They are static, public
// files: no Origin check, as for any page a browser loads.
func (s *server) webRoutes(mux *http.ServeMux) {
	page := func(w http.ResponseWriter, r *http.Request) { web.Serve(w, r, web.Page) }
	mux.HandleFunc("GET /{$}", page)
	mux.HandleFunc("GET /viewer", page)
	mux.HandleFunc("GET "+web.Prefix+"{file}", func(w http.ResponseWriter, r *http.Request) {
		web.Serve(w, r, r.PathValue("file"))
	})
}
