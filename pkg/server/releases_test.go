package server

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/install"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/server/ddi"
	"github.com/lifeboat-update/lifeboat/pkg/server/repository"
	"github.com/lifeboat-update/lifeboat/pkg/server/store/storetest"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

const testBoard = "qemu-x86_64"

// testRepo is a repository made as lifeboat-release makes one.
type testRepo struct {
	t    *testing.T
	dir  string
	keys publish.KeySet
	r    *publish.Repo
	imgs map[string][]byte
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	keyDir := t.TempDir()
	ks := publish.KeySet{}
	for _, role := range release.Roles {
		s, err := release.GenerateKey(filepath.Join(keyDir, role+".key"))
		if err != nil {
			t.Fatal(err)
		}
		ks[role] = []release.Signer{s}
	}
	return newTestRepoWithKeys(t, ks)
}

// newTestRepoWithKeys makes another repository signed by the same keys.
func newTestRepoWithKeys(t *testing.T, ks publish.KeySet) *testRepo {
	t.Helper()
	dir := t.TempDir()
	r, err := publish.Init(dir, ks, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &testRepo{t: t, dir: dir, keys: ks, r: r, imgs: map[string][]byte{}}
}

func (r *testRepo) root() []byte {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, release.MetadataDir, "root.json"))
	if err != nil {
		r.t.Fatal(err)
	}
	return b
}

const imageSize = 512 << 10

// add publishes version for board: the same random image for every
// version, but for a region that differs, so that versions share most
// chunks.
func (r *testRepo) add(board, version string) {
	r.t.Helper()
	img := make([]byte, imageSize)
	rand.NewChaCha8([32]byte{1}).Read(img)
	rand.NewChaCha8([32]byte{byte(len(r.imgs) + 2)}).Read(img[128<<10 : 256<<10])
	path := filepath.Join(r.t.TempDir(), "rootfs.img")
	if err := os.WriteFile(path, img, 0o600); err != nil {
		r.t.Fatal(err)
	}
	im, err := r.r.AddImage(context.Background(), "rootfs", path, publish.ImageOptions{
		Params: chunk.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}, Digest: chunk.SHA512256,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.r.AddRelease(release.Release{Board: board, Version: version, Created: t0, Images: []release.Image{im}}, r.keys); err != nil {
		r.t.Fatal(err)
	}
	r.imgs[board+"/"+version] = img
}

// chunksOf returns the chunk IDs of board/version's image in dir.
func chunksOf(t *testing.T, dir, board, version string) map[chunk.ID]bool {
	t.Helper()
	var ts release.Targets
	pr := &publish.Repo{Dir: dir}
	tg, _, _, err := pr.Targets()
	if err != nil {
		t.Fatal(err)
	}
	ts = *tg
	ids := map[chunk.ID]bool{}
	for _, rel := range ts.Releases {
		if rel.Board != board || rel.Version != version {
			continue
		}
		for _, im := range rel.Images {
			idx, err := chunk.ReadIndexFile(filepath.Join(dir, filepath.FromSlash(im.Index.Path)))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range idx.Chunks {
				ids[e.ID] = true
			}
		}
	}
	if len(ids) == 0 {
		t.Fatalf("no chunks for %s %s in %s", board, version, dir)
	}
	return ids
}

// storedChunks lists the chunks of the server's storage.
func storedChunks(t *testing.T, data string) map[chunk.ID]bool {
	t.Helper()
	l, err := store.NewLocal(filepath.Join(data, release.StoreDir))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[chunk.ID]bool{}
	if err := l.Walk(context.Background(), func(id chunk.ID, _ int64) error { ids[id] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	return ids
}

// withRepos gives the fixture's server release storage trusting repo's
// root.
func (f *fixture) withRepos(repo *testRepo, repoURL string) string {
	f.t.Helper()
	data := f.t.TempDir()
	repos, err := repository.Open(data, repo.root(), func() time.Time { return f.now })
	if err != nil {
		f.t.Fatal(err)
	}
	f.srv = New(f.st, WithClock(func() time.Time { return f.now }), WithPollInterval(300e9, 60e9), WithRepositories(repos, repoURL))
	return data
}

func publishBody(name, path string) string {
	return fmt.Sprintf(`{"repository": %q, "path": %q}`, name, path)
}

// TestReleasesPublishServeCollect: a repository is published; its files
// are served with their caching headers and ranges; deleting one of two
// releases that share chunks removes only its own, and the other still
// installs from what the server serves.
func TestReleasesPublishServeCollect(t *testing.T) { storetest.Run(t, testReleasesPublishServeCollect) }

func testReleasesPublishServeCollect(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	repo := newTestRepo(t)
	repo.add(testBoard, "1.0")
	repo.add(testBoard, "2.0")
	data := f.withRepos(repo, "")

	w := f.do(req{method: "POST", path: "/api/v1/releases", token: f.op["operator"], ctype: "application/json", body: publishBody("main", repo.dir)})
	var list api.ReleaseList
	decodeJSON(t, w, &list)
	if w.Code != http.StatusCreated || len(list.Releases) != 2 || list.Releases[0].Version != "1.0" || list.Releases[1].Repository != "main" {
		t.Fatalf("publish = %d %s, want 201 and releases 1.0 and 2.0 of main", w.Code, w.Body)
	}
	w = f.do(req{method: "GET", path: "/api/v1/releases", token: f.op["viewer"]})
	decodeJSON(t, w, &list)
	if w.Code != 200 || len(list.Releases) != 2 {
		t.Errorf("list releases = %d %s, want both", w.Code, w.Body)
	}
	v1, v2 := chunksOf(t, repo.dir, testBoard, "1.0"), chunksOf(t, repo.dir, testBoard, "2.0")
	shared, only1 := 0, map[chunk.ID]bool{}
	for id := range v1 {
		if v2[id] {
			shared++
		} else {
			only1[id] = true
		}
	}
	if shared == 0 || len(only1) == 0 {
		t.Fatalf("versions share %d chunks, 1.0 has %d of its own: the test needs both", shared, len(only1))
	}
	stored := storedChunks(t, data)
	for id := range v1 {
		if !stored[id] {
			t.Fatalf("chunk %s of 1.0 not in the server's store", id)
		}
	}

	// Served: metadata revalidated, the rest immutable, ranges.
	srv := httptest.NewServer(f.srv)
	defer srv.Close()
	var anyChunk chunk.ID
	for id := range v2 {
		anyChunk = id
		break
	}
	chunkPath := "/repo/main/store/" + anyChunk.String()[:4] + "/" + anyChunk.String() + ".cacnk"
	for _, tc := range []struct{ path, cache string }{
		{"/repo/main/metadata/timestamp.json", "no-cache"},
		{"/repo/main/metadata/root.json", "no-cache"},
		{"/repo/main/metadata/1.root.json", repository.Immutable},
		{chunkPath, repository.Immutable},
	} {
		resp, err := srv.Client().Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != tc.cache || resp.Header.Get("Last-Modified") == "" {
			t.Errorf("GET %s = %d, Cache-Control %q, Last-Modified %q; want 200, %q and a date", tc.path, resp.StatusCode,
				resp.Header.Get("Cache-Control"), resp.Header.Get("Last-Modified"), tc.cache)
		}
		if tc.cache == "no-cache" && resp.Header.Get("ETag") == "" {
			t.Errorf("GET %s has no ETag", tc.path)
		}
	}
	whole, _ := os.ReadFile(filepath.Join(repo.dir, release.StoreDir, anyChunk.String()[:4], anyChunk.String()+".cacnk"))
	rq, _ := http.NewRequest("GET", srv.URL+chunkPath, nil)
	rq.Header.Set("Range", "bytes=10-19")
	resp, err := srv.Client().Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	part := new(bytes.Buffer)
	part.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part.Bytes(), whole[10:20]) {
		t.Errorf("range 10-19 of a chunk = %d %x, want 206 %x", resp.StatusCode, part.Bytes(), whole[10:20])
	}
	rq, _ = http.NewRequest("GET", srv.URL+"/repo/main/metadata/timestamp.json", nil)
	resp, _ = srv.Client().Do(rq)
	resp.Body.Close()
	rq.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	if resp, _ = srv.Client().Do(rq); resp.StatusCode != http.StatusNotModified {
		t.Errorf("timestamp with its ETag in If-None-Match = %d, want 304", resp.StatusCode)
	}
	resp.Body.Close()
	for _, p := range []string{"/repo/main/metadata/../../../etc/passwd", "/repo/other/metadata/root.json", "/repo/main/store/abcd/xyz.cacnk", "/repo/main/secrets/x"} {
		resp, err := srv.Client().Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 && resp.StatusCode != 400 {
			t.Errorf("GET %s = %d, want 404", p, resp.StatusCode)
		}
	}

	// Delete 1.0 (admin only): its own chunks go, the shared stay.
	if w := f.do(req{method: "DELETE", path: "/api/v1/releases/" + testBoard + "/1.0", token: f.op["operator"]}); w.Code != 403 {
		t.Errorf("delete by an operator = %d, want 403", w.Code)
	}
	w = f.do(req{method: "DELETE", path: "/api/v1/releases/" + testBoard + "/1.0", token: f.op["admin"]})
	var col api.Collected
	decodeJSON(t, w, &col)
	if w.Code != 200 || col.Chunks != len(only1) || col.Bytes <= 0 {
		t.Errorf("delete 1.0 = %d %s, want 200 and %d chunks collected", w.Code, w.Body, len(only1))
	}
	t.Logf("1.0 and 2.0 share %d chunks; 1.0 has %d of its own; the delete collected %d chunks, %d bytes", shared, len(only1), col.Chunks, col.Bytes)
	stored = storedChunks(t, data)
	for id := range v1 {
		if stored[id] == only1[id] {
			t.Errorf("chunk %s (only in 1.0: %v) stored after the delete: %v", id, only1[id], stored[id])
		}
	}
	for id := range v2 {
		if !stored[id] {
			t.Errorf("chunk %s of 2.0 removed", id)
		}
	}

	// 2.0 installs from the server, as a device reads it.
	state := t.TempDir()
	if err := release.Provision(durable.OS(state), repo.root()); err != nil {
		t.Fatal(err)
	}
	fetch, err := release.NewHTTPFetcher(srv.URL+"/repo/main/", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	cs, err := store.NewHTTP(srv.URL + "/repo/main/store/")
	if err != nil {
		t.Fatal(err)
	}
	c := &release.Client{State: durable.OS(state), Fetch: fetch, Board: testBoard, Now: func() time.Time { return f.now }}
	slot := filepath.Join(t.TempDir(), "slot-b")
	res, err := install.Install(context.Background(), c, map[string]string{"rootfs": slot}, install.Options{Stores: []store.Store{cs}})
	if err != nil || res.Version != "2.0" {
		t.Fatalf("install from the served repository = %+v, %v; want 2.0", res, err)
	}
	got, _ := os.ReadFile(slot)
	if !bytes.Equal(got, repo.imgs[testBoard+"/2.0"]) {
		t.Errorf("installed slot differs from release 2.0's image")
	}
}

// TestPublishRefusals: a repository that does not verify against the
// server's root, or is not one, is refused naming why, and nothing is
// registered.
func TestPublishRefusals(t *testing.T) { storetest.Run(t, testPublishRefusals) }

func testPublishRefusals(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	trusted := newTestRepo(t)
	trusted.add(testBoard, "1.0")
	other := newTestRepo(t) // signed by other keys
	other.add(testBoard, "1.0")
	empty := newTestRepoWithKeys(t, trusted.keys)
	data := f.withRepos(trusted, "")
	broken := newTestRepoWithKeys(t, trusted.keys)
	broken.add(testBoard, "1.0")
	// Remove the last chunk of the index, so that others are copied
	// before the import finds it missing.
	var victim string
	filepath.Walk(filepath.Join(broken.dir, release.StoreDir), func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".cacnk") {
			victim = p
		}
		return nil
	})
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	corrupt := newTestRepoWithKeys(t, trusted.keys)
	corrupt.add(testBoard, "1.0")
	filepath.Walk(filepath.Join(corrupt.dir, release.StoreDir), func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".cacnk") {
			victim = p
		}
		return nil
	})
	if err := os.WriteFile(victim, []byte("not a chunk"), 0o644); err != nil {
		t.Fatal(err)
	}
	const js = "application/json"
	for _, tc := range []struct {
		name, body string
		token      string
		status     int
		msg        string
	}{
		{"other root", publishBody("main", other.dir), f.op["operator"], 400, "does not verify against the server's root"},
		{"no repository", publishBody("main", t.TempDir()), f.op["operator"], 400, "not a repository made by lifeboat-release"},
		{"no releases", publishBody("main", empty.dir), f.op["operator"], 400, "list no release"},
		{"missing chunk", publishBody("main", broken.dir), f.op["operator"], 400, "not in the repository's store"},
		{"corrupt chunk", publishBody("main", corrupt.dir), f.op["operator"], 400, "chunk " + strings.TrimSuffix(filepath.Base(victim), ".cacnk")},
		{"relative path", publishBody("main", "repo"), f.op["operator"], 400, "want a clean absolute path"},
		{"unclean path", publishBody("main", trusted.dir+"/../x"), f.op["operator"], 400, "want a clean absolute path"},
		{"bad name", publishBody("a/b", trusted.dir), f.op["operator"], 400, `repository "a/b"`},
		{"name ..", publishBody("..", trusted.dir), f.op["operator"], 400, `repository "..": want 1 to 64`},
		{"viewer", publishBody("main", trusted.dir), f.op["viewer"], 403, "needs role operator"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := f.do(req{method: "POST", path: "/api/v1/releases", token: tc.token, ctype: js, body: tc.body})
			var e api.Error
			decodeJSON(t, w, &e)
			if w.Code != tc.status || !strings.Contains(e.Error, tc.msg) {
				t.Errorf("publish %s = %d %q, want %d naming %q", tc.name, w.Code, e.Error, tc.status, tc.msg)
			}
		})
	}
	if rels, _ := f.st.Releases(context.Background()); len(rels) != 0 {
		t.Errorf("refused publishes registered %v", rels)
	}
	if n := len(storedChunks(t, data)); n != 0 {
		t.Errorf("refused publishes left %d chunks in the store", n)
	}
	if ents, _ := os.ReadDir(filepath.Join(data, "repos")); len(ents) != 0 {
		t.Errorf("refused publishes left repositories %v", ents)
	}
	// Published once; a second time is a conflict that registers nothing.
	if w := f.do(req{method: "POST", path: "/api/v1/releases", token: f.op["operator"], ctype: js, body: publishBody("main", trusted.dir)}); w.Code != 201 {
		t.Fatalf("publish = %d %s", w.Code, w.Body)
	}
	w := f.do(req{method: "POST", path: "/api/v1/releases", token: f.op["operator"], ctype: js, body: publishBody("again", trusted.dir)})
	if w.Code != 409 || !strings.Contains(w.Body.String(), "release qemu-x86_64 1.0: already exists") {
		t.Errorf("second publish = %d %s, want 409 naming the release", w.Code, w.Body)
	}
	if rels, _ := f.st.Releases(context.Background()); len(rels) != 1 || rels[0].Repository != "main" {
		t.Errorf("releases after the conflict = %+v, want only main's", rels)
	}

	// The release side adds 2.0 and publishes again: 2.0 alone is
	// registered.
	trusted.add(testBoard, "2.0")
	w = f.do(req{method: "POST", path: "/api/v1/releases", token: f.op["operator"], ctype: js, body: publishBody("main", trusted.dir)})
	var list api.ReleaseList
	decodeJSON(t, w, &list)
	if w.Code != 201 || len(list.Releases) != 1 || list.Releases[0].Version != "2.0" {
		t.Errorf("publish after adding 2.0 = %d %s, want 201 registering 2.0 alone", w.Code, w.Body)
	}
	// Metadata that no longer lists a registered release is refused.
	other2 := newTestRepoWithKeys(t, trusted.keys)
	other2.add(testBoard, "3.0")
	other2.add(testBoard, "3.1")
	other2.add(testBoard, "3.2")
	before := f.snapshot()
	w = f.do(req{method: "POST", path: "/api/v1/releases", token: f.op["operator"], ctype: js, body: publishBody("main", other2.dir)})
	if w.Code != 409 || !strings.Contains(w.Body.String(), "release qemu-x86_64 1.0 of repository main is registered, and the new metadata does not list it") {
		t.Errorf("publish dropping 1.0 = %d %s, want 409 naming it", w.Code, w.Body)
	}
	if diff := cmp.Diff(before, f.snapshot()); diff != "" {
		t.Errorf("the refused publish changed the store: -before +after\n%s", diff)
	}
	served, _ := os.ReadFile(filepath.Join(data, "repos", "main", release.MetadataDir, "timestamp.json"))
	if want, _ := os.ReadFile(filepath.Join(trusted.dir, release.MetadataDir, "timestamp.json")); !bytes.Equal(served, want) {
		t.Error("the refused publish replaced the served metadata")
	}
}

// tarOf writes dir as a tar stream, as `tar -C dir -c .` would, with
// extra entries appended.
func tarOf(t *testing.T, dir string, extra func(*tar.Writer)) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = "./" + filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			tw.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if extra != nil {
		extra(tw)
	}
	tw.Close()
	return b.Bytes()
}

// TestPublishUpload: a repository uploaded as a tar stream is published as
// one pointed at; a stream with anything but the repository's files, or
// over the limit, is refused naming why, and leaves nothing behind.
func TestPublishUpload(t *testing.T) { storetest.Run(t, testPublishUpload) }

func testPublishUpload(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	repo := newTestRepo(t)
	repo.add(testBoard, "1.0")
	data := f.withRepos(repo, "")
	const tarType = "application/x-tar"
	good := tarOf(t, repo.dir, nil)
	with := func(name string, typ byte, body string) []byte {
		return tarOf(t, repo.dir, func(tw *tar.Writer) {
			tw.WriteHeader(&tar.Header{Name: name, Typeflag: typ, Size: int64(len(body)), Mode: 0o644, Linkname: "/etc/passwd"})
			tw.Write([]byte(body))
		})
	}
	for _, tc := range []struct {
		name, path string
		body       []byte
		status     int
		msg        string
	}{
		{"no repository", "/api/v1/releases", good, 400, `repository ""`},
		{"unknown parameter", "/api/v1/releases?repository=main&path=/x", good, 400, `unknown query parameter "path"`},
		{"escaping path", "/api/v1/releases?repository=main", with("../../etc/x", tar.TypeReg, "x"), 400, `tar entry "../../etc/x": want a clean path`},
		{"other directory", "/api/v1/releases?repository=main", with("secrets/key", tar.TypeReg, "x"), 400, `tar entry "secrets/key"`},
		{"symlink", "/api/v1/releases?repository=main", with("metadata/evil.json", tar.TypeSymlink, ""), 400, `"metadata/evil.json" is a symbolic link: want a directory or a regular file`},
		{"twice", "/api/v1/releases?repository=main", with("metadata/timestamp.json", tar.TypeReg, "{}"), 400, "given twice"},
		{"truncated", "/api/v1/releases?repository=main", good[:len(good)/2], 400, "tar"},
		{"not tar", "/api/v1/releases?repository=main", []byte("hello"), 400, "tar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := f.do(req{method: "POST", path: tc.path, token: f.op["operator"], ctype: tarType, body: string(tc.body)})
			var e api.Error
			decodeJSON(t, w, &e)
			if w.Code != tc.status || !strings.Contains(e.Error, tc.msg) {
				t.Errorf("upload %s = %d %q, want %d naming %q", tc.name, w.Code, e.Error, tc.status, tc.msg)
			}
		})
	}
	f.t = t
	small := New(f.st, WithRepositories(f.srv.repos, ""), WithMaxUpload(int64(len(good)-1)))
	for _, chunked := range []bool{false, true} {
		r := httptest.NewRequest("POST", "/api/v1/releases?repository=main", bytes.NewReader(good))
		if chunked {
			r = httptest.NewRequest("POST", "/api/v1/releases?repository=main", io.MultiReader(bytes.NewReader(good)))
		}
		r.Header.Set("Authorization", "Bearer "+f.op["operator"])
		r.Header.Set("Content-Type", tarType)
		w := httptest.NewRecorder()
		small.ServeHTTP(w, r)
		if w.Code != 413 || !strings.Contains(w.Body.String(), "upload over") {
			t.Errorf("upload over the limit (streamed %v) = %d %s, want 413", chunked, w.Code, w.Body)
		}
	}
	if rels, _ := f.st.Releases(context.Background()); len(rels) != 0 {
		t.Errorf("refused uploads registered %v", rels)
	}
	if n := len(storedChunks(t, data)); n != 0 {
		t.Errorf("refused uploads left %d chunks", n)
	}
	if ents, _ := os.ReadDir(filepath.Join(data, "uploads")); len(ents) != 0 {
		t.Errorf("refused uploads left %v", ents)
	}

	w := f.do(req{method: "POST", path: "/api/v1/releases?repository=main", token: f.op["operator"], ctype: tarType, body: string(good)})
	var list api.ReleaseList
	decodeJSON(t, w, &list)
	if w.Code != 201 || len(list.Releases) != 1 || list.Releases[0].Version != "1.0" {
		t.Fatalf("upload = %d %s, want 201 and release 1.0", w.Code, w.Body)
	}
	for id := range chunksOf(t, repo.dir, testBoard, "1.0") {
		if !storedChunks(t, data)[id] {
			t.Errorf("chunk %s of the upload not stored", id)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(data, "uploads")); len(ents) != 0 {
		t.Errorf("upload left %v", ents)
	}
}

// TestDeleteCollectsArtifacts: deleting a release removes the DDI files
// only it had, and keeps one another release shares.
func TestDeleteCollectsArtifacts(t *testing.T) { storetest.Run(t, testDeleteCollectsArtifacts) }

func testDeleteCollectsArtifacts(t *testing.T, dsn string) {
	f := newFixture(t, dsn)
	repo := newTestRepo(t)
	repo.add(testBoard, "1.0")
	repo.add(testBoard, "2.0")
	f.withRepos(repo, "")
	dir := filepath.Join(t.TempDir(), "artifacts")
	files, err := ddi.OpenFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = New(f.st, WithClock(func() time.Time { return f.now }), WithRepositories(f.srv.repos, ""), WithArtifacts(files), WithMaxUpload(1<<20))
	if w := f.do(req{method: "POST", path: "/api/v1/releases", token: f.op["operator"], ctype: "application/json", body: publishBody("main", repo.dir)}); w.Code != http.StatusCreated {
		t.Fatalf("publish = %d %s", w.Code, w.Body)
	}
	attach := func(version, name, body string) {
		t.Helper()
		w := f.do(req{method: "POST", path: "/api/v1/releases/" + testBoard + "/" + version + "/artifacts?name=" + name, token: f.op["operator"], ctype: "application/octet-stream", body: body})
		if w.Code != http.StatusCreated {
			t.Fatalf("attach %s to %s = %d %s", name, version, w.Code, w.Body)
		}
	}
	own, shared := "bytes only 1.0 has", "bytes both have"
	attach("1.0", "own.swu", own)
	attach("1.0", "shared.swu", shared)
	attach("2.0", "update.swu", shared)

	w := f.do(req{method: "DELETE", path: "/api/v1/releases/" + testBoard + "/1.0", token: f.op["admin"]})
	var col api.Collected
	decodeJSON(t, w, &col)
	if w.Code != http.StatusOK || col.Artifacts != 1 || col.ArtifactBytes != int64(len(own)) {
		t.Errorf("delete 1.0 = %d %s, want 200 and 1 artifact of %d bytes collected", w.Code, w.Body, len(own))
	}
	ownSum, sharedSum := sha256.Sum256([]byte(own)), sha256.Sum256([]byte(shared))
	if _, err := os.Stat(filepath.Join(dir, hex.EncodeToString(ownSum[:]))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("1.0's own artifact after the delete: %v, want it removed", err)
	}
	if _, err := os.Stat(filepath.Join(dir, hex.EncodeToString(sharedSum[:]))); err != nil {
		t.Errorf("the artifact 2.0 shares: %v, want it kept", err)
	}
}
