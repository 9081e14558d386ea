package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/nodecast/nodecast/host/executor"
)

// FilesBucket is the object store that carries uploads and outputs to every
// host: an object "input/sub/name.png" is written to each host's input
// folder as sub/name.png.
const FilesBucket = "nodecast_files"

// fileName is an object's name for a file of a folder type.
func fileName(typ, subfolder, name string) string {
	return path.Join(typ, filepath.ToSlash(subfolder), name)
}

// localPath resolves an object name in dirs (by folder type), refusing
// names that would leave their folder.
func localPath(dirs map[string]string, object string) (string, error) {
	typ, rest, ok := strings.Cut(object, "/")
	dir := dirs[typ]
	if !ok || dir == "" || rest == "" || !filepath.IsLocal(filepath.FromSlash(rest)) {
		return "", fmt.Errorf("%w: object %q names no file of a shared folder", ErrCluster, object)
	}
	return filepath.Join(dir, filepath.FromSlash(rest)), nil
}

// ShareFile puts a file of this host's folder of type typ in the object
// store, for every other host to write into its own folder.
func (n *Node) ShareFile(ctx context.Context, typ, subfolder, name string) error {
	obj := fileName(typ, subfolder, name)
	p, err := localPath(n.dirs, obj)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	_, err = n.files.Put(ctx, n.objectMeta(obj, map[string]string{"host": n.id}), f)
	return err
}

// mirrorFiles writes every object another host shares into this host's
// folders: the ones there at start, then each new one.
func (n *Node) mirrorFiles(dirs map[string]string) error {
	ctx, cancel := context.WithCancel(context.Background())
	n.onClose(cancel)
	w, err := n.files.Watch(ctx)
	if err != nil {
		return fmt.Errorf("%w: watching %s: %v", ErrCluster, FilesBucket, err)
	}
	go func() {
		for info := range w.Updates() {
			if info == nil || info.Deleted || info.Metadata["host"] == n.id {
				continue
			}
			if err := n.fetchFile(ctx, info.Name); err != nil {
				n.log.Warn("cluster: shared file not written here", "object", info.Name, "err", err)
			}
		}
	}()
	return nil
}

func (n *Node) fetchFile(ctx context.Context, object string) error {
	p, err := localPath(n.dirs, object)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	res, err := n.files.Get(ctx, object)
	if err != nil {
		return err
	}
	defer res.Close()
	tmp, err := os.CreateTemp(filepath.Dir(p), ".nodecast-shared-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(tmp, res) // the digest is checked at the end of the read
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// ShareUploads wraps the API handler: an upload answered with 200 is put in
// the object store before the answer leaves, so a prompt posted to any host
// right after it finds the file.
func (n *Node) ShareUploads(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/upload/image") && !strings.HasSuffix(r.URL.Path, "/upload/mask") {
			next.ServeHTTP(w, r)
			return
		}
		rec := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		if rec.status == http.StatusOK {
			var up struct{ Name, Subfolder, Type string }
			if err := json.Unmarshal(rec.body.Bytes(), &up); err == nil && up.Name != "" {
				if up.Type == "" {
					up.Type = "input"
				}
				if err := n.ShareFile(r.Context(), up.Type, up.Subfolder, up.Name); err != nil {
					n.log.Warn("cluster: upload not shared with the other hosts", "name", up.Name, "err", err)
					http.Error(w, "the upload was stored on this host but not shared with the cluster: "+err.Error(), http.StatusServiceUnavailable)
					return
				}
			}
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		w.Write(rec.body.Bytes())
	})
}

// bufferedResponse holds an answer (a small JSON) until it is sent.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) WriteHeader(code int)        { b.status = code }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }

// shareOutputs puts the files a finished prompt lists in its outputs
// ("images": [{filename, subfolder, type}]) in the object store, so /view
// serves them on every host. Only type "output" (SaveImage): previews in
// the temp folder are emptied at start and would only fill the store.
func (n *Node) shareOutputs(entry executor.HistoryEntry) {
	for _, ui := range entry.Outputs {
		imgs, _ := ui["images"].([]any)
		for _, im := range imgs {
			m, _ := im.(map[string]any)
			name, _ := m["filename"].(string)
			sub, _ := m["subfolder"].(string)
			typ, _ := m["type"].(string)
			if name == "" || typ != "output" || n.dirs[typ] == "" {
				continue
			}
			if err := n.ShareFile(context.Background(), typ, sub, name); err != nil {
				n.log.Warn("cluster: output not shared with the other hosts", "file", name, "err", err)
			}
		}
	}
}

// FetchInputs (executor.ClusterInputs) writes the shared input files a prompt names into this
// host's input folder before it runs, so a prompt that reaches this host
// before the mirror wrote its upload still finds it. Only string inputs
// that look like file names are looked up.
func (n *Node) FetchInputs(ctx context.Context, prompt map[string]any) {
	if n.dirs["input"] == "" {
		return
	}
	for _, node := range prompt {
		nm, _ := node.(map[string]any)
		inputs, _ := nm["inputs"].(map[string]any)
		for _, v := range inputs {
			s, ok := v.(string)
			if !ok || len(s) > 512 || !strings.Contains(s, ".") || strings.ContainsAny(s, "\n\r") {
				continue
			}
			s = strings.TrimSuffix(s, " [input]")
			obj := path.Join("input", filepath.ToSlash(s))
			p, err := localPath(n.dirs, obj)
			if err != nil {
				continue
			}
			info, err := n.files.GetInfo(ctx, obj)
			if err != nil || info.Deleted {
				continue
			}
			if fi, err := os.Stat(p); err == nil && fi.Size() == int64(info.Size) {
				continue
			}
			if err := n.fetchFile(ctx, obj); err != nil {
				n.log.Warn("cluster: shared input not written here", "object", obj, "err", err)
			}
		}
	}
}
