package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/assemble"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

// TestExtractHTTPSeed updates an ext4 image over HTTP with the previous
// release as seed, and checks that exactly the chunks the seed lacks cross
// the wire and that the statistics say so. The expectation comes from the
// two indexes and the store directory alone.
func TestExtractHTTPSeed(t *testing.T) {
	imgs := ext4Pair(t)
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	// The seed index lies beside its image, as --seed-index wants.
	seedImg := filepath.Join(dir, "v1.img")
	if err := os.Symlink(imgs.v1, seedImg); err != nil {
		t.Fatal(err)
	}
	v1, v2 := seedImg+".caibx", filepath.Join(dir, "v2.caibx")
	makeIndex(t, storeDir, v1, imgs.v1)
	makeIndex(t, storeDir, v2, imgs.v2)
	x1, x2 := readIndex(t, v1), readIndex(t, v2)
	want := newChunks(x1, x2)
	if len(want) == 0 {
		t.Fatal("v2 has no chunk v1 lacks: the test would prove nothing")
	}
	sizes := chunkSizes(t, storeDir)
	wantBytes := storedSize(t, sizes, want)

	tests := []struct {
		name string
		seed string
	}{
		{"seed", "--seed=" + imgs.v1},        // chunked on the fly
		{"seed-index", "--seed-index=" + v1}, // read by its index
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newChunkServer(t, storeDir, nil)
			out := filepath.Join(t.TempDir(), "out.img")
			args := []string{"extract", "--json", "--progress=none", "--store=" + srv.URL, tt.seed, v2, out}
			r := lifeboat(t, args...)
			if r.code != 0 {
				t.Fatalf("lifeboat %s: exit status %d\n%s", strings.Join(args, " "), r.code, r.stderr)
			}
			sameFile(t, out, imgs.v2)
			stats := decodeStats(t, r.stdout)
			t.Logf("v2: %d chunks, %d distinct; %d not in v1 and not zeros, %d bytes stored", stats.Chunks, stats.Unique, len(want), wantBytes)

			// What the server sent must be what the client counted, whatever it fetched.
			fetched := srv.fetched()
			sent := srv.sent.Load()
			if got, want := srv.requests.Load(), int64(len(fetched)); got != want {
				t.Errorf("server got %d requests for %d distinct chunks, want one each", got, want)
			}
			if got, want := sent, storedSize(t, sizes, fetched); got != want {
				t.Errorf("server sent %d body bytes, want %d, the .cacnk sizes of the %d chunks asked for", got, want, len(fetched))
			}
			if len(stats.Stores) != 1 {
				t.Fatalf("stats.stores has %d entries, want 1: %+v", len(stats.Stores), stats.Stores)
			}
			if got := stats.Stores[0]; got.Wire != sent || got.Chunks != int64(len(fetched)) {
				t.Errorf("stats.stores[0] = %d chunks, wire_bytes %d; the server sent %d chunks, %d bytes", got.Chunks, got.Wire, len(fetched), sent)
			}
			if stats.Retries != 0 {
				t.Errorf("stats.retries = %d, want 0", stats.Retries)
			}

			// The acceptance: exactly the non-zero chunks of v2 that v1 lacks.
			if sent == wantBytes && slices.Equal(fetched, want) && stats.Stores[0].Wire == wantBytes {
				return
			}
			t.Errorf("server sent %d bytes, want %d", sent, wantBytes)
			for _, id := range missing(want, fetched) {
				t.Errorf("chunk %s of v2 is in neither v1 nor zeros but was not fetched", id)
			}
			for _, id := range missing(fetched, want) {
				e := entryOf(x2, id)
				t.Errorf("chunk %s (%d bytes at %d) fetched, want it from the seed or zeros (zero: %v)", id, e.Size, e.Start, isZero(x2, e))
			}
		})
	}
}

// newChunks returns the distinct chunks of index to, in order, that index
// from lacks and that are not all zeros: what an update from a seed that
// holds from must fetch.
func newChunks(from, to *chunk.Index) []chunk.ID {
	have := make(map[chunk.ID]bool)
	for _, e := range from.Chunks {
		have[e.ID] = true
	}
	var ids []chunk.ID
	for _, e := range to.Chunks {
		if !have[e.ID] && !isZero(to, e) {
			have[e.ID] = true
			ids = append(ids, e.ID)
		}
	}
	slices.SortFunc(ids, compareIDs)
	return ids
}

// storedSize sums the stored sizes of chunks ids.
func storedSize(t *testing.T, sizes map[chunk.ID]int64, ids []chunk.ID) int64 {
	t.Helper()
	var n int64
	for _, id := range ids {
		size, ok := sizes[id]
		if !ok {
			t.Fatalf("chunk %s is not in the store", id)
		}
		n += size
	}
	return n
}

// missing returns the IDs of sorted list a that sorted list b lacks.
func missing(a, b []chunk.ID) []chunk.ID {
	var out []chunk.ID
	for _, id := range a {
		if _, ok := slices.BinarySearchFunc(b, id, compareIDs); !ok {
			out = append(out, id)
		}
	}
	return out
}

func compareIDs(a, b chunk.ID) int { return strings.Compare(string(a[:]), string(b[:])) }

// entryOf returns the first entry of x with id, or the zero Entry.
func entryOf(x *chunk.Index, id chunk.ID) chunk.Entry {
	for _, e := range x.Chunks {
		if e.ID == id {
			return e
		}
	}
	return chunk.Entry{}
}

// isZero reports whether chunk e of x is all zeros.
func isZero(x *chunk.Index, e chunk.Entry) bool {
	return x.Digest.Sum(make([]byte, e.Size)) == e.ID
}

// decodeStats parses the statistics `lifeboat extract --json` prints.
func decodeStats(t *testing.T, out string) *assemble.Stats {
	t.Helper()
	var s assemble.Stats
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("extract --json printed %q: %v", out, err)
	}
	return &s
}
