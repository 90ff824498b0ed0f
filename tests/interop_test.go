package tests

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

// TestInteropCasync checks that Lifeboat and the real casync agree both
// ways: for the same image and parameters `lifeboat-release make` and
// `casync make` write byte-identical indexes and stores holding the same
// chunks, casync extracts our index from our store, and `lifeboat extract`
// extracts casync's index from casync's store.
func TestInteropCasync(t *testing.T) {
	requireTools(t, "casync")
	random := filepath.Join(t.TempDir(), "random.img")
	writeFile(t, random, randomImage(1, 6<<20))
	// 1:64:100 makes a chunk per ~75 bytes: a small image keeps the stores
	// to some thousands of files.
	tiny := filepath.Join(t.TempDir(), "tiny.img")
	writeFile(t, tiny, randomImage(2, 256<<10))

	tests := []struct {
		name   string
		image  string // "" for the ext4 image
		sizes  string
		digest string
	}{
		{"random/default", random, chunk.DefaultParams.String(), "sha512-256"},
		{"random/4K:16K:64K", random, "4K:16K:64K", "sha512-256"},
		{"random/64K:256K:1M", random, "64K:256K:1M", "sha512-256"},
		{"random/1:64:100", tiny, "1:64:100", "sha512-256"},
		{"random/sha256", random, chunk.DefaultParams.String(), "sha256"},
		{"ext4/default", "", chunk.DefaultParams.String(), "sha512-256"},
		{"ext4/4K:16K:64K", "", "4K:16K:64K", "sha512-256"},
		{"ext4/64K:256K:1M", "", "64K:256K:1M", "sha512-256"},
		{"ext4/sha256", "", "4K:16K:64K", "sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, ext4 := tt.image, tt.image == ""
			if ext4 {
				requireTools(t, "e2fsck")
				img = ext4Pair(t).v1
			}
			dir := t.TempDir()
			ours, theirs := filepath.Join(dir, "ours.caibx"), filepath.Join(dir, "theirs.caibx")
			ourStore, theirStore := filepath.Join(dir, "ours.castr"), filepath.Join(dir, "theirs.castr")
			flags := []string{"--chunk-size=" + tt.sizes, "--digest=" + tt.digest}

			makeIndex(t, ourStore, ours, img, flags...)
			mustRun(t, nil, "casync", append([]string{"make", "--store=" + theirStore}, append(flags, theirs, img)...)...)
			sameIndex(t, ours, theirs)
			sameChunks(t, ourStore, theirStore)

			// casync reads what we wrote.
			out := filepath.Join(dir, "casync.out")
			mustRun(t, nil, "casync", "extract", "--store="+ourStore, ours, out)
			sameFile(t, out, img)

			// We read what casync wrote.
			out = filepath.Join(dir, "lifeboat.out")
			if r := lifeboat(t, "extract", "--progress=none", "--store="+theirStore, theirs, out); r.code != 0 {
				t.Fatalf("lifeboat extract --store=%s %s: exit status %d\n%s", theirStore, theirs, r.code, r.stderr)
			}
			sameFile(t, out, img)
			if ext4 {
				if r := command(t, nil, "e2fsck", "-fn", out); r.code != 0 {
					t.Errorf("e2fsck -fn %s: exit status %d\n%s%s", out, r.code, r.stdout, r.stderr)
				}
			}
		})
	}
}

// sameIndex fails the test unless index files ours and theirs are
// byte-identical, naming the first chunk where they part.
func sameIndex(t *testing.T, ours, theirs string) {
	t.Helper()
	a, b := readFile(t, ours), readFile(t, theirs)
	if bytes.Equal(a, b) {
		return
	}
	x, y := readIndex(t, ours), readIndex(t, theirs)
	switch {
	case x.Flags != y.Flags || x.Params != y.Params:
		t.Fatalf("index header: ours has flags %#x, sizes %s; casync's %#x, %s", x.Flags, x.Params, y.Flags, y.Params)
	case len(x.Chunks) != len(y.Chunks):
		t.Errorf("index: ours has %d chunks, casync's %d", len(x.Chunks), len(y.Chunks))
	}
	for i := range min(len(x.Chunks), len(y.Chunks)) {
		if x.Chunks[i] != y.Chunks[i] {
			t.Fatalf("index chunk %d: ours %+v, casync's %+v", i, x.Chunks[i], y.Chunks[i])
		}
	}
	t.Fatalf("%s (%d bytes) and %s (%d bytes) differ at byte %d", ours, len(a), theirs, len(b), firstDiffBytes(a, b))
}

// sameChunks fails the test unless two stores hold the same chunk IDs.
func sameChunks(t *testing.T, ours, theirs string) {
	t.Helper()
	a, b := chunkSizes(t, ours), chunkSizes(t, theirs)
	for id := range a {
		if _, ok := b[id]; !ok {
			t.Errorf("chunk %s is in our store but not in casync's", id)
		}
	}
	for id := range b {
		if _, ok := a[id]; !ok {
			t.Errorf("chunk %s is in casync's store but not in ours", id)
		}
	}
}

// chunkSizes returns the stored (.cacnk) size of every chunk in a store
// directory.
func chunkSizes(t *testing.T, dir string) map[chunk.ID]int64 {
	t.Helper()
	l, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	sizes := make(map[chunk.ID]int64)
	err = l.Walk(context.Background(), func(id chunk.ID, size int64) error {
		sizes[id] = size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sizes
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readIndex parses an index file.
func readIndex(t *testing.T, path string) *chunk.Index {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	x, err := chunk.ReadIndex(f)
	if err != nil {
		t.Fatalf("chunk.ReadIndex(%s) = %v", path, err)
	}
	return x
}
