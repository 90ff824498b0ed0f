// Package repository is the fleet server's release storage: the
// repositories lifeboat-release makes, copied in after their metadata
// verifies against the server's trusted root, and served to devices.
//
// On disk, under one directory:
//
//	store/                 one chunk store (casync layout) for every repository
//	repos/NAME/metadata/   each repository's signed metadata
//	repos/NAME/indexes/    the chunk indexes of its registered releases
//
// Chunks are content-addressed, so releases that share chunks, in one
// repository or across several, store them once. Collect removes the chunks
// and indexes no registered release uses.
//
// Devices read a repository at NAME/ in the layout pkg/release expects
// (metadata/, indexes/, store/): Handler serves it with caching headers
// and byte ranges, and a CDN or static server can serve a copy of the same
// tree instead.
package repository

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
	chunks "github.com/lifeboat-update/lifeboat/pkg/store"
)

// ErrRefused is wrapped by Import's errors about the repository offered:
// missing, malformed, not verifying against the root, older than the copy
// served.
var ErrRefused = errors.New("repository refused")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// Repositories is the release storage in a directory.
type Repositories struct {
	dir    string
	root   []byte
	chunks *chunks.Local
	now    func() time.Time
	// mu orders imports and collections: a collection never sees chunks
	// an import copied before the import has registered their releases.
	mu sync.Mutex
}

// Open opens (creating it if need be) the storage in dir. root is the
// trusted root metadata (a root.json) every repository must verify
// against; it must carry its own threshold of signatures. now is the
// clock metadata expiry is checked with.
func Open(dir string, root []byte, now func() time.Time) (*Repositories, error) {
	tmp, err := os.MkdirTemp("", "lifeboat-root-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := release.Provision(durable.OS(tmp), root); err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	l, err := chunks.NewLocal(filepath.Join(dir, release.StoreDir))
	if err != nil {
		return nil, fmt.Errorf("release storage: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "repos"), 0o755); err != nil {
		return nil, fmt.Errorf("release storage: %w", err)
	}
	return &Repositories{dir: dir, root: root, chunks: l, now: now}, nil
}

// verify reads src's metadata as a device would, trusting the root only,
// and returns the verified targets.
func (r *Repositories) verify(ctx context.Context, src string) (*release.Targets, error) {
	tmp, err := os.MkdirTemp("", "lifeboat-verify-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	state := durable.OS(tmp)
	if err := release.Provision(state, r.root); err != nil {
		return nil, err
	}
	c := &release.Client{State: state, Fetch: release.DirFetcher{Dir: src}, Now: r.now}
	targets, err := c.Refresh(ctx)
	if err != nil {
		return nil, refuse("%s: metadata does not verify against the server's root: %v", src, err)
	}
	return targets, nil
}

// indexOf reads and checks the index im names in src.
func indexOf(ctx context.Context, src string, im release.Image) ([]byte, *chunk.Index, error) {
	p := im.Index.Path
	if !strings.HasPrefix(p, release.IndexDir+"/") || !fs.ValidPath(p) || strings.Count(p, "/") != 1 {
		return nil, nil, refuse("index path %q: want %s/NAME", p, release.IndexDir)
	}
	b, err := release.DirFetcher{Dir: src}.Fetch(ctx, p, im.Index.Length)
	if err != nil {
		return nil, nil, refuse("index %s: %v", p, err)
	}
	if got := release.HashOf(b); got != im.Index.SHA256 {
		return nil, nil, refuse("index %s hashes to %s, the release signed %s", p, got, im.Index.SHA256)
	}
	idx, err := chunk.ReadIndex(bytes.NewReader(b))
	if err != nil {
		return nil, nil, refuse("index %s: %v", p, err)
	}
	return b, idx, nil
}

// Registrar is what an import asks the release registry, while no other
// import or collection runs: Check sees the releases a verified repository
// lists before anything is copied, and refuses the import by returning an
// error; Register records them once every file is in place.
type Registrar struct {
	Check    func([]store.Release) error
	Register func([]store.Release) error
}

// Import verifies the repository in src, asks reg.Check, and copies what
// devices need of it into the storage as repository name: every chunk its
// releases' indexes list (those the storage lacks, each checked against
// its ID), the indexes, and the metadata, timestamp last. It then calls
// reg.Register. An error from either is Import's, and takes back the
// chunks the import copied. Errors about src itself wrap ErrRefused.
func (r *Repositories) Import(ctx context.Context, name, src string, reg Registrar) error {
	if err := api.CheckName("repository", name); err != nil {
		return err
	}
	if fi, err := os.Stat(filepath.Join(src, release.MetadataDir)); err != nil || !fi.IsDir() {
		return refuse("%s: no %s directory: not a repository made by lifeboat-release", src, release.MetadataDir)
	}
	targets, err := r.verify(ctx, src)
	if err != nil {
		return err
	}
	if len(targets.Releases) == 0 {
		return refuse("%s: its targets list no release", src)
	}
	if fi, err := os.Stat(filepath.Join(src, release.StoreDir)); err != nil || !fi.IsDir() {
		return refuse("%s: no %s directory", src, release.StoreDir)
	}
	srcChunks, err := chunks.NewLocal(filepath.Join(src, release.StoreDir))
	if err != nil {
		return refuse("%s: chunk store: %v", src, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	dst := filepath.Join(r.dir, "repos", name)
	if err := checkNewer(src, dst); err != nil {
		return err
	}
	_, statErr := os.Stat(dst)
	var copied []chunk.ID
	err = r.importFrom(ctx, name, src, dst, targets, srcChunks, &copied, reg)
	if err != nil {
		// Take back what this import added: chunks no release uses, and
		// a repository directory that was not there.
		for _, id := range copied {
			os.Remove(r.chunks.Path(id))
		}
		if errors.Is(statErr, fs.ErrNotExist) {
			os.RemoveAll(dst)
		}
	}
	return err
}

func (r *Repositories) importFrom(ctx context.Context, name, src, dst string, targets *release.Targets, srcChunks *chunks.Local, copied *[]chunk.ID, reg Registrar) error {
	var rels []store.Release
	for _, rel := range targets.Releases {
		sr := store.Release{Board: rel.Board, Version: rel.Version, Repository: name, Created: r.now().UTC()}
		for _, im := range rel.Images {
			sr.Indexes = append(sr.Indexes, im.Index.Path)
		}
		rels = append(rels, sr)
	}
	if err := reg.Check(rels); err != nil {
		return err
	}
	indexes := map[string][]byte{}
	for _, rel := range targets.Releases {
		for _, im := range rel.Images {
			b, idx, err := indexOf(ctx, src, im)
			if err != nil {
				return fmt.Errorf("release %s %s: %w", rel.Board, rel.Version, err)
			}
			for _, e := range idx.Chunks {
				ok, err := r.copyChunk(ctx, srcChunks, idx.Digest, e.ID)
				if err != nil {
					return fmt.Errorf("release %s %s: %w", rel.Board, rel.Version, err)
				}
				if ok {
					*copied = append(*copied, e.ID)
				}
			}
			indexes[im.Index.Path] = b
		}
	}
	if err := os.MkdirAll(filepath.Join(dst, release.IndexDir), 0o755); err != nil {
		return err
	}
	out := durable.OS(dst)
	for p, b := range indexes {
		if err := durable.WriteFile(out, p, b, 0o644); err != nil {
			return err
		}
	}
	if err := copyMetadata(src, dst); err != nil {
		return err
	}
	return reg.Register(rels)
}

// checkNewer refuses metadata older than the copy already served: a
// device that saw the newer timestamp would refuse the older.
func checkNewer(src, dst string) error {
	version := func(dir string) (int64, error) {
		b, err := os.ReadFile(filepath.Join(dir, release.MetadataDir, "timestamp.json"))
		if err != nil {
			return 0, err
		}
		var ts release.Timestamp
		err = release.Decode(b, release.RoleTimestamp, &ts)
		return ts.Version, err
	}
	have, err := version(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	got, err := version(src)
	if err != nil {
		return refuse("%s: timestamp: %v", src, err)
	}
	if got < have {
		return refuse("%s: timestamp version %d is older than the %d served", src, got, have)
	}
	return nil
}

// copyChunk copies chunk id from src, checked against its ID, unless the
// storage has it, and says whether it did.
func (r *Repositories) copyChunk(ctx context.Context, src *chunks.Local, d chunk.Digest, id chunk.ID) (bool, error) {
	if ok, err := r.chunks.Has(ctx, id); err != nil || ok {
		return false, err
	}
	b, err := src.Get(ctx, id)
	if errors.Is(err, chunks.ErrNotFound) {
		return false, refuse("chunk %s: not in the repository's store", id)
	}
	if err != nil {
		return false, err
	}
	if _, err := chunk.Decode(nil, d, id, b, chunk.SizeLimitMax); err != nil {
		return false, refuse("chunk %s: %v", id, err)
	}
	return true, r.chunks.Put(ctx, id, b)
}

// copyMetadata copies the metadata files of src into dst, timestamp.json
// last: a device polling meanwhile sees the old timestamp until every
// file the new one leads to is there.
func copyMetadata(src, dst string) error {
	from := filepath.Join(src, release.MetadataDir)
	ents, err := os.ReadDir(from)
	if err != nil {
		return refuse("%s: %v", src, err)
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json") && e.Name() != "timestamp.json" {
			names = append(names, e.Name())
		}
	}
	names = append(names, "timestamp.json")
	if err := os.MkdirAll(filepath.Join(dst, release.MetadataDir), 0o755); err != nil {
		return err
	}
	out := durable.OS(dst)
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(from, n))
		if err != nil {
			return refuse("%s: %v", src, err)
		}
		if err := durable.WriteFile(out, path.Join(release.MetadataDir, n), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Collect removes from the storage every chunk and index that no release
// keep returns uses, and says what it removed. keep runs while no import
// can.
func (r *Repositories) Collect(ctx context.Context, keep func(context.Context) ([]store.Release, error)) (api.Collected, error) {
	var st api.Collected
	r.mu.Lock()
	defer r.mu.Unlock()
	rels, err := keep(ctx)
	if err != nil {
		return st, err
	}
	live := map[chunk.ID]bool{}
	liveIndex := map[string]bool{}
	for _, rel := range rels {
		for _, p := range rel.Indexes {
			f := filepath.Join(r.dir, "repos", rel.Repository, filepath.FromSlash(p))
			liveIndex[f] = true
			idx, err := chunk.ReadIndexFile(f)
			if err != nil {
				// Without the index its chunks are unknown: remove
				// nothing rather than break a release.
				return st, fmt.Errorf("collect: release %s %s: %w", rel.Board, rel.Version, err)
			}
			for _, e := range idx.Chunks {
				live[e.ID] = true
			}
		}
	}
	err = r.chunks.Walk(ctx, func(id chunk.ID, size int64) error {
		if live[id] {
			return nil
		}
		if err := os.Remove(r.chunks.Path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		st.Chunks++
		st.Bytes += size
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("collect: %w", err)
	}
	indexes, err := filepath.Glob(filepath.Join(r.dir, "repos", "*", release.IndexDir, "*"))
	if err != nil {
		return st, err
	}
	for _, f := range indexes {
		if !liveIndex[f] {
			if err := os.Remove(f); err != nil {
				return st, fmt.Errorf("collect: %w", err)
			}
		}
	}
	return st, nil
}

// Immutable is the Cache-Control of content-addressed files: chunks and
// indexes, named by their hashes, and the versioned metadata files
// (N.root.json), which are never rewritten.
const Immutable = "public, max-age=31536000, immutable"

// Handler serves the storage: NAME/metadata/FILE, NAME/indexes/FILE and
// NAME/store/XXXX/ID.cacnk, GET and HEAD, with byte ranges and
// conditional requests (http.ServeContent). Chunks, indexes and versioned
// metadata are immutable; root.json and timestamp.json are revalidated at
// every use (no-cache, with ETag and Last-Modified). To serve below a
// prefix, wrap it in http.StripPrefix.
func (r *Repositories) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		file, cache, err := r.file(req.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		f, err := os.Open(file)
		if err != nil {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		h := w.Header()
		h.Set("Cache-Control", cache)
		h.Set("Content-Type", "application/octet-stream")
		if strings.HasSuffix(file, ".json") {
			h.Set("Content-Type", "application/json")
		}
		if cache != Immutable {
			h.Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.ModTime().UnixNano(), fi.Size()))
		}
		http.ServeContent(w, req, "", fi.ModTime(), f)
	})
}

// file maps a request path to the file that holds it and its caching.
func (r *Repositories) file(p string) (string, string, error) {
	name, rest, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	if api.CheckName("repository", name) != nil {
		return "", "", fmt.Errorf("no repository %q", name)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "repos", name)); err != nil {
		return "", "", fmt.Errorf("no repository %q", name)
	}
	dir, base, ok := strings.Cut(rest, "/")
	if !ok {
		return "", "", fmt.Errorf("no file %q", p)
	}
	switch dir {
	case release.MetadataDir, release.IndexDir:
		if !fs.ValidPath(base) || strings.Contains(base, "/") || strings.HasPrefix(base, ".") {
			return "", "", fmt.Errorf("no file %q", p)
		}
		cache := Immutable
		if dir == release.MetadataDir && !versioned(base) {
			cache = "no-cache"
		}
		return filepath.Join(r.dir, "repos", name, dir, base), cache, nil
	case release.StoreDir:
		id, err := chunks.ParseChunkPath("/" + base)
		if err != nil {
			return "", "", err
		}
		return r.chunks.Path(id), Immutable, nil
	}
	return "", "", fmt.Errorf("no file %q", p)
}

// versioned says whether a metadata file is one of the N.role.json files,
// which are never rewritten (root.json and timestamp.json are).
func versioned(name string) bool {
	v, role, ok := strings.Cut(name, ".")
	return ok && v != "" && strings.Trim(v, "0123456789") == "" && slices.Contains([]string{"root.json", "targets.json", "snapshot.json"}, role)
}
