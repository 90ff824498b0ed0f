package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

// TestExtractInPlace updates an existing file that already holds most of
// the image: the chunks already in place are kept, and the result is the
// image exactly.
func TestExtractInPlace(t *testing.T) {
	requireTools(t, "e2fsck")
	imgs := ext4Pair(t)
	dir := t.TempDir()
	storeDir, index := filepath.Join(dir, "store"), filepath.Join(dir, "v2.caibx")
	makeIndex(t, storeDir, index, imgs.v2)
	x := readIndex(t, index)

	tests := []struct {
		name    string
		before  string // the target's content before the update
		damage  bool   // scribble over some of the target first
		fetched bool   // whether chunks must come from the store
	}{
		// The previous release: ext4 moves blocks when files change, so
		// much of the image is not where it was.
		{"v1 to v2", imgs.v1, false, true},
		// The image with a few damaged stretches: a repair.
		{"v2 damaged", imgs.v2, true, true},
		{"v2 again", imgs.v2, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "slot.img")
			copyFile(t, target, tt.before)
			if tt.damage {
				scribble(t, target, []int64{4 << 20, 20<<20 + 4321, 33 << 20}, 64<<10)
			}
			args := []string{"extract", "--json", "--progress=none", "--store=" + storeDir, index, target}
			r := lifeboat(t, args...)
			if r.code != 0 {
				t.Fatalf("lifeboat %s: exit status %d\n%s", strings.Join(args, " "), r.code, r.stderr)
			}
			sameFile(t, target, imgs.v2)
			if r := command(t, nil, "e2fsck", "-fn", target); r.code != 0 {
				t.Errorf("e2fsck -fn %s: exit status %d\n%s%s", target, r.code, r.stdout, r.stderr)
			}
			stats := decodeStats(t, r.stdout)
			t.Logf("%d chunks, %d bytes: %d chunks, %d bytes in place; %d zeros; %d from the store (%d bytes sent)",
				stats.Chunks, stats.Bytes, stats.InPlace.Chunks, stats.InPlace.Bytes, stats.Zero.Chunks, stats.Stores[0].Chunks, stats.Stores[0].Wire)
			if stats.InPlace.Chunks == 0 {
				t.Errorf("stats.in_place.chunks = 0, want > 0")
			}
			switch got := stats.Stores[0].Chunks; {
			case !tt.fetched && got != 0:
				t.Errorf("stats.stores[0].chunks = %d, want 0: the target held the image already", got)
			case tt.fetched && (got == 0 || got >= stats.Unique):
				t.Errorf("stats.stores[0].chunks = %d, want some but fewer than the %d distinct chunks", got, stats.Unique)
			}
			if !tt.fetched && stats.InPlace.Chunks != int64(len(x.Chunks)) {
				t.Errorf("stats.in_place.chunks = %d, want all %d", stats.InPlace.Chunks, len(x.Chunks))
			}
		})
	}
}

// scribble overwrites n bytes of noise at each offset of file path.
func scribble(t *testing.T, path string, offsets []int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, off := range offsets {
		if _, err := f.WriteAt(randomBytes(uint64(off), n), off); err != nil {
			t.Fatal(err)
		}
	}
}

// TestExtractInPlaceBadChunk updates an existing file from a store that
// holds a corrupt chunk: the update fails, and not a byte of the bad chunk
// reaches the target, whose content there stays what it was.
func TestExtractInPlaceBadChunk(t *testing.T) {
	old := randomImage(20, 4<<20)
	img := bytes.Clone(old)
	for _, off := range []int{512 << 10, 1 << 20, 2<<20 + 12345, 3 << 20} {
		copy(img[off:], randomBytes(uint64(off), 8<<10))
	}
	oldIndex := filepath.Join(t.TempDir(), "old.caibx")
	oldImg := filepath.Join(t.TempDir(), "old.img")
	writeFile(t, oldImg, old)
	makeIndex(t, filepath.Join(t.TempDir(), "old.castr"), oldIndex, oldImg)
	inOld := make(map[chunk.ID]bool)
	for _, e := range readIndex(t, oldIndex).Chunks {
		inOld[e.ID] = true
	}

	tests := []struct {
		name string
		http bool
	}{
		{"local store", false},
		{"http store", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBadRun(t, img)
			b.victim = pickVictim(t, b.x, inOld)
			corruptChunk(t, b.chunkFile(t, b.victim.ID), b.x.Digest, b.victim)
			st := b.store
			if tt.http {
				st = newChunkServer(t, b.store, nil).URL
			}
			target := filepath.Join(t.TempDir(), "slot.img")
			writeFile(t, target, old)
			args := []string{"extract", "--progress=none", "--store=" + st, b.index, target}
			r := lifeboat(t, args...)
			if r.code != 1 {
				t.Errorf("lifeboat %s: exit status %d, want 1\n%s", strings.Join(args, " "), r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, b.victim.ID.String()) {
				t.Errorf("lifeboat %s: stderr = %q, want it to name chunk %s", strings.Join(args, " "), r.stderr, b.victim.ID)
			}
			got := readFile(t, target)
			if len(got) != len(old) {
				t.Fatalf("after a failed update the target is %d bytes, want %d", len(got), len(old))
			}
			start, end := b.victim.Start, b.victim.End()
			if i := firstDiffBytes(got[start:end], old[start:end]); i >= 0 {
				t.Errorf("after a failed update the target differs from its old content at %d, inside the bad chunk %s [%d, %d)", start+uint64(i), b.victim.ID, start, end)
			}
			left, err := filepath.Glob(filepath.Join(filepath.Dir(target), ".*"))
			if err != nil {
				t.Fatal(err)
			}
			if len(left) > 0 {
				t.Errorf("after a failed in-place update, files are left beside the target: %q", left)
			}
		})
	}
}
