package api

import "net/http"

// The model routes that generic ComfyUI integrations probe. nodecast runs
// no models, so it has no model folders (ComfyUI's folder_paths
// folder_names_and_paths): /models is an empty list, every /models/{folder}
// is unknown, and /embeddings is an empty list.

// getModels is ComfyUI's GET /models (server.py list_model_types): the
// model folder names.
func (s *server) getModels(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []string{})
}

// getModelFolder is ComfyUI's GET /models/{folder} (server.py get_models):
// the files of a model folder, or 404 with an empty body for a folder it
// does not have, which here is every folder.
func (s *server) getModelFolder(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusNotFound)
}

// getEmbeddings is ComfyUI's GET /embeddings (server.py get_embeddings):
// the embedding names without their extension.
func (s *server) getEmbeddings(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []string{})
}
