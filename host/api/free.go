package api

import (
	"encoding/json"
	"net/http"
)

// postFree is ComfyUI's POST /free: {"unload_models": bool, "free_memory":
// bool}. nodecast has no models; either flag empties the output cache, so
// the next prompt runs every node and the plugins release the cached
// tensors. An empty body, as some clients send, empties it too.
func (s *server) postFree(w http.ResponseWriter, r *http.Request) {
	raw, ok := s.controlBody(w, r)
	if !ok {
		return
	}
	body := struct {
		UnloadModels bool `json:"unload_models"`
		FreeMemory   bool `json:"free_memory"`
	}{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			http.Error(w, "free: the body must be JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	if len(raw) == 0 || body.UnloadModels || body.FreeMemory {
		s.opts.Executor.FreeCache(r.Context())
	}
	w.WriteHeader(http.StatusOK)
}
