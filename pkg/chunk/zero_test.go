package chunk

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
)

// TestZeroIDs: an image with zero runs in the middle and at its end; every
// chunk of zeros is found, and no other.
func TestZeroIDs(t *testing.T) {
	p := Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}
	img := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{7}).Read(img)
	clear(img[200<<10 : 500<<10]) // a run in the middle
	clear(img[900<<10:])          // a run that ends the image
	c, err := NewChunker(p)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := Scan(context.Background(), bytes.NewReader(img), int64(len(img)), c, SHA512256, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	x := NewIndex(p, SHA512256)
	x.Chunks = entries
	got := x.ZeroIDs()
	want := map[ID]bool{}
	for _, e := range entries {
		if bytes.Count(img[e.Start:e.End()], []byte{0}) == int(e.Size) {
			want[e.ID] = true
		}
	}
	if len(want) < 2 {
		t.Fatalf("the image has %d distinct zero chunks; the test needs at least 2", len(want))
	}
	if len(got) != len(want) {
		t.Errorf("ZeroIDs found %d, want %d", len(got), len(want))
	}
	for id := range want {
		if !got[id] {
			t.Errorf("zero chunk %s not found", id)
		}
	}
}
