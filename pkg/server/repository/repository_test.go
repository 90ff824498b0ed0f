package repository

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
)

func newRepo(t *testing.T) (dir string, root []byte) {
	t.Helper()
	ks := publish.KeySet{}
	for _, role := range release.Roles {
		s, err := release.GenerateKey(filepath.Join(t.TempDir(), role+".key"))
		if err != nil {
			t.Fatal(err)
		}
		ks[role] = []release.Signer{s}
	}
	dir = t.TempDir()
	r, err := publish.Init(dir, ks, nil)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "img")
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i * 7 / 3)
	}
	os.WriteFile(img, b, 0o600)
	im, err := r.AddImage(context.Background(), "rootfs", img, publish.ImageOptions{Params: chunk.Params{Min: 4 << 10, Avg: 8 << 10, Max: 16 << 10}, Digest: chunk.SHA512256})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddRelease(release.Release{Board: "b", Version: "1", Created: time.Now().UTC(), Images: []release.Image{im}}, ks); err != nil {
		t.Fatal(err)
	}
	root, err = os.ReadFile(filepath.Join(dir, release.MetadataDir, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return dir, root
}

func TestOpenRefusesBadRoot(t *testing.T) {
	_, root := newRepo(t)
	for _, bad := range [][]byte{nil, []byte("{}"), root[:len(root)/2], []byte(strings.Replace(string(root), `"threshold":1`, `"threshold":2`, 1))} {
		if _, err := Open(t.TempDir(), bad, time.Now); err == nil || !strings.Contains(err.Error(), "trusted root") {
			t.Errorf("Open with root %.40q = %v, want an error about the trusted root", bad, err)
		}
	}
}

func TestFile(t *testing.T) {
	src, root := newRepo(t)
	data := t.TempDir()
	r, err := Open(data, root, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Import(context.Background(), "main", src, Registrar{Check: func([]store.Release) error { return nil }, Register: func([]store.Release) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		path, file, cache string
	}{
		{"/main/metadata/timestamp.json", "repos/main/metadata/timestamp.json", "no-cache"},
		{"/main/metadata/root.json", "repos/main/metadata/root.json", "no-cache"},
		{"/main/metadata/2.snapshot.json", "repos/main/metadata/2.snapshot.json", Immutable},
		{"/main/metadata/x.snapshot.json", "repos/main/metadata/x.snapshot.json", "no-cache"},
		{"/main/indexes/abc.caibx", "repos/main/indexes/abc.caibx", Immutable},
		{"/main/store/abab/" + id + ".cacnk", "store/abab/" + id + ".cacnk", Immutable},
		{"/main/metadata/../../../etc/passwd", "", ""},
		{"/main/metadata/.hidden", "", ""},
		{"/main/other/x", "", ""},
		{"/main/metadata", "", ""},
		{"/nope/metadata/root.json", "", ""},
		{"/../metadata/root.json", "", ""},
		{"/main/store/abcd/" + id + ".cacnk", "", ""},
	} {
		file, cache, err := r.file(tc.path)
		want := ""
		if tc.file != "" {
			want = filepath.Join(data, tc.file)
		}
		if (err != nil) != (tc.file == "") || (err == nil && (file != want || cache != tc.cache)) {
			t.Errorf("file(%q) = %q, %q, %v; want %q, %q", tc.path, file, cache, err, want, tc.cache)
		}
	}
}

// TestCollectKeepsAllWithoutAnIndex: a registered release whose index is
// gone stops the collection before it removes anything.
func TestCollectKeepsAllWithoutAnIndex(t *testing.T) {
	src, root := newRepo(t)
	data := t.TempDir()
	r, err := Open(data, root, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	var rels []store.Release
	if err := r.Import(context.Background(), "main", src, Registrar{Check: func([]store.Release) error { return nil }, Register: func(rs []store.Release) error { rels = rs; return nil }}); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		n := 0
		r.chunks.Walk(context.Background(), func(chunk.ID, int64) error { n++; return nil })
		return n
	}
	before := count()
	if before == 0 {
		t.Fatal("import stored no chunk")
	}
	os.Remove(filepath.Join(data, "repos", "main", filepath.FromSlash(rels[0].Indexes[0])))
	keep := func(context.Context) ([]store.Release, error) { return rels, nil }
	if _, err := r.Collect(context.Background(), keep); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Collect with an index missing = %v, want an error naming it", err)
	}
	if n := count(); n != before {
		t.Errorf("Collect removed %d chunks though an index was missing", before-n)
	}
	// With no release left, everything goes.
	st, err := r.Collect(context.Background(), func(context.Context) ([]store.Release, error) { return nil, nil })
	if err != nil || st.Chunks != before || count() != 0 {
		t.Errorf("Collect of everything = %+v, %v, %d left; want %d removed", st, err, count(), before)
	}
}
