package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestWebRoutes: the live page at / and /viewer, the module at its stable
// address with a JavaScript type (browsers refuse a module served otherwise),
// revalidation by ETag, and nothing else under /nodecast/.
func TestWebRoutes(t *testing.T) {
	srv := httptest.NewServer(New(Options{}))
	defer srv.Close()
	get := func(path string, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct{ path, typ string }{
		{"/", "text/html"}, {"/viewer", "text/html"},
		{"/nodecast/client.js", "text/javascript"}, {"/nodecast/viewer.js", "text/javascript"},
		{"/nodecast/viewer.css", "text/css"}, {"/nodecast/client.d.ts", "text/plain"},
	} {
		resp := get(tc.path)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.typ) {
			t.Errorf("GET %s: %d %q, want 200 %s", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.typ)
		}
		if again := get(tc.path, "If-None-Match", resp.Header.Get("ETag")); again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d, want 304", tc.path, again.StatusCode)
		}
	}
	for _, path := range []string{"/nodecast/", "/nodecast/nope.js", "/nodecast/..%2fweb.go", "/unknown", "/api/"} {
		if resp := get(path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
}
