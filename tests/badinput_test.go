package tests

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

// badRun is the material of one bad-input case: its own copies of an image,
// its index and a store holding its chunks, and the chunk to spoil.
type badRun struct {
	dir, img, index, store string
	x                      *chunk.Index
	victim                 chunk.Entry // occurs once, not zeros, mid-image
}

// chunkFile returns the store's file for chunk id.
func (b *badRun) chunkFile(t *testing.T, id chunk.ID) string {
	t.Helper()
	l, err := store.NewLocal(b.store)
	if err != nil {
		t.Fatal(err)
	}
	return l.Path(id)
}

// newBadRun makes a fresh image, index and store below a new directory.
func newBadRun(t *testing.T, data []byte) *badRun {
	t.Helper()
	dir := t.TempDir()
	b := &badRun{dir: dir, img: filepath.Join(dir, "image"), index: filepath.Join(dir, "image.caibx"), store: filepath.Join(dir, "store")}
	writeFile(t, b.img, data)
	makeIndex(t, b.store, b.index, b.img)
	b.x = readIndex(t, b.index)
	b.victim = pickVictim(t, b.x, nil)
	return b
}

// pickVictim returns a chunk near the middle of x that occurs once, is not
// all zeros and is not in avoid.
func pickVictim(t *testing.T, x *chunk.Index, avoid map[chunk.ID]bool) chunk.Entry {
	t.Helper()
	count := make(map[chunk.ID]int)
	for _, e := range x.Chunks {
		count[e.ID]++
	}
	n := len(x.Chunks)
	for k := range n {
		e := x.Chunks[(n/2+k)%n]
		if count[e.ID] == 1 && !avoid[e.ID] && !isZero(x, e) {
			return e
		}
	}
	t.Fatal("no chunk occurs once and differs from zeros and the old image")
	return chunk.Entry{}
}

// corruptChunk flips one bit of a chunk's content in its store file and
// writes it back validly compressed, so only its digest gives it away.
func corruptChunk(t *testing.T, file string, d chunk.Digest, e chunk.Entry) {
	t.Helper()
	data, err := chunk.Decode(nil, d, e.ID, readFile(t, file), int(e.Size))
	if err != nil {
		t.Fatalf("chunk.Decode(%s) = %v", file, err)
	}
	data[len(data)/2] ^= 0x10
	writeFile(t, file, chunk.Compress(nil, data))
}

// TestExtractBadInput feeds `lifeboat extract` broken indexes, stores,
// servers and seeds. Each run must fail with a non-zero status and an
// error naming what was wrong, and must leave no file at the new target
// path, not even a temporary one.
func TestExtractBadInput(t *testing.T) {
	data := randomImage(10, 3<<20)
	// Answer the victim chunk badly, the rest from the store.
	onVictim := func(b *badRun, answer func(w http.ResponseWriter, n int) bool) fault {
		victim := b.victim.ID.String()
		return func(w http.ResponseWriter, r *http.Request, id string, n int) bool {
			return id == victim && answer(w, n)
		}
	}
	tests := []struct {
		name string
		// setup breaks something and returns the flags extract runs with
		// (before INDEX and TARGET) and what stderr must say.
		setup func(t *testing.T, b *badRun) (flags, want []string)
	}{
		{"corrupt chunk", func(t *testing.T, b *badRun) ([]string, []string) {
			corruptChunk(t, b.chunkFile(t, b.victim.ID), b.x.Digest, b.victim)
			return []string{"--store=" + b.store}, []string{b.victim.ID.String(), fmt.Sprintf("offset %d", b.victim.Start), "content hashes to"}
		}},
		{"chunk not zstd", func(t *testing.T, b *badRun) ([]string, []string) {
			writeFile(t, b.chunkFile(t, b.victim.ID), []byte("not a zstd frame"))
			return []string{"--store=" + b.store}, []string{b.victim.ID.String(), fmt.Sprintf("offset %d", b.victim.Start), "zstd"}
		}},
		{"truncated index", func(t *testing.T, b *badRun) ([]string, []string) {
			truncate(t, b.index, fileSize(t, b.index)/2)
			return []string{"--store=" + b.store}, []string{b.index, "bad index", "unexpected EOF"}
		}},
		{"bad magic", func(t *testing.T, b *badRun) ([]string, []string) {
			idx := readFile(t, b.index)
			idx[8] ^= 0xff
			writeFile(t, b.index, idx)
			return []string{"--store=" + b.store}, []string{b.index, "bad index", "not a casync index"}
		}},
		{"missing chunk", func(t *testing.T, b *badRun) ([]string, []string) {
			if err := os.Remove(b.chunkFile(t, b.victim.ID)); err != nil {
				t.Fatal(err)
			}
			return []string{"--store=" + b.store}, []string{b.victim.ID.String(), fmt.Sprintf("offset %d", b.victim.Start), "not found"}
		}},
		{"http 404", func(t *testing.T, b *badRun) ([]string, []string) {
			srv := newChunkServer(t, b.store, onVictim(b, func(w http.ResponseWriter, n int) bool {
				http.NotFound(w, nil)
				return true
			}))
			return []string{"--store=" + srv.URL}, []string{b.victim.ID.String(), fmt.Sprintf("offset %d", b.victim.Start), srv.URL + "/: chunk not found"}
		}},
		{"http 500", func(t *testing.T, b *badRun) ([]string, []string) {
			srv := newChunkServer(t, b.store, onVictim(b, func(w http.ResponseWriter, n int) bool {
				http.Error(w, "broken", http.StatusInternalServerError)
				return true
			}))
			t.Cleanup(func() { wantRequests(t, srv, b.victim.ID, 5) })
			return []string{"--store=" + srv.URL}, []string{b.victim.ID.String(), "giving up after 5 attempts", "500 Internal Server Error"}
		}},
		{"http body cut", func(t *testing.T, b *badRun) ([]string, []string) {
			body := readFile(t, b.chunkFile(t, b.victim.ID))
			srv := newChunkServer(t, b.store, onVictim(b, func(w http.ResponseWriter, n int) bool {
				cutBody(t, w, body)
				return true
			}))
			t.Cleanup(func() { wantRequests(t, srv, b.victim.ID, 5) })
			return []string{"--store=" + srv.URL}, []string{b.victim.ID.String(), "giving up after 5 attempts", "unexpected EOF"}
		}},
		{"seed shorter than its index", func(t *testing.T, b *badRun) ([]string, []string) {
			seed := filepath.Join(b.dir, "seed.img")
			copyFile(t, seed, b.img)
			copyFile(t, seed+".caibx", b.index)
			truncate(t, seed, fileSize(t, seed)-1)
			return []string{"--store=" + b.store, "--seed-index=" + seed + ".caibx"}, []string{seed, "shorter than its index"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBadRun(t, data)
			flags, want := tt.setup(t, b)
			target := filepath.Join(t.TempDir(), "target.img")
			args := append(append([]string{"extract", "--progress=none"}, flags...), b.index, target)
			r := lifeboat(t, args...)
			if r.code != 1 {
				t.Errorf("lifeboat %s: exit status %d, want 1\n%s", strings.Join(args, " "), r.code, r.stderr)
			}
			for _, w := range want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("lifeboat %s: stderr = %q, want it to contain %q", strings.Join(args, " "), r.stderr, w)
				}
			}
			t.Logf("stderr: %s", r.stderr)
			noTarget(t, target)
		})
	}
}

// noTarget fails the test if a failed extract left target, or a temporary
// file for it, behind.
func noTarget(t *testing.T, target string) {
	t.Helper()
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Errorf("after a failed extract, os.Lstat(%s) = %v, want it not to exist", target, err)
	}
	left, err := filepath.Glob(filepath.Join(filepath.Dir(target), "."+filepath.Base(target)+".partial-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("after a failed extract, temporary files are left: %q", left)
	}
}

// wantRequests checks that the server was asked for chunk id n times.
func wantRequests(t *testing.T, srv *chunkServer, id chunk.ID, n int) {
	t.Helper()
	if got := srv.requestsFor(id.String()); got != n {
		t.Errorf("server got %d requests for chunk %s, want %d (one and the retries)", got, id, n)
	}
}

// cutBody answers with a Content-Length of the whole body, sends half of
// it and closes the connection.
func cutBody(t *testing.T, w http.ResponseWriter, body []byte) {
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	defer conn.Close()
	fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", len(body))
	rw.Write(body[:len(body)/2])
	rw.Flush()
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}
