package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

func TestCacheMissThenHit(t *testing.T) {
	ctx := context.Background()
	id, b := testChunk(t, "cached")
	remote, local := memWith(t, "cached"), NewMem()
	c := NewCache(remote, local, chunk.SHA512256, 1<<10)
	if got, want := c.String(), "cache(mem, mem)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	for i, want := range []CacheStats{{Misses: 1}, {Hits: 1, Misses: 1}} {
		got, err := c.Get(ctx, id)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("Get(%s) #%d = %d bytes, %v, want %d bytes", id, i, len(got), err, len(b))
		}
		if st := c.Stats(); st != want {
			t.Errorf("Stats() after Get #%d = %+v, want %+v", i, st, want)
		}
	}
	if n := remote.Gets(); n != 1 {
		t.Errorf("remote Gets() = %d, want 1", n)
	}
	if has, _ := local.Has(ctx, id); !has {
		t.Errorf("local Has(%s) = false after a miss, want true", id)
	}
}

func TestCacheRejects(t *testing.T) {
	ctx := context.Background()
	id, b := testChunk(t, "the real content")
	_, other := testChunk(t, "other content")
	for _, tc := range []struct {
		name   string
		remote []byte // nil: remote lacks the chunk
		max    int
		is     error
	}{
		{name: "wrong content", remote: other, max: 1 << 10, is: chunk.ErrCorrupt},
		{name: "not zstd", remote: []byte("garbage"), max: 1 << 10, is: chunk.ErrCorrupt},
		{name: "over max size", remote: b, max: 4, is: chunk.ErrCorrupt},
		{name: "missing", remote: nil, max: 1 << 10, is: ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			remote, local := NewMem(), NewMem()
			if tc.remote != nil {
				remote.Put(ctx, id, tc.remote)
			}
			c := NewCache(remote, local, chunk.SHA512256, tc.max)
			if _, err := c.Get(ctx, id); !errors.Is(err, tc.is) {
				t.Errorf("Get(%s) = %v, want %v", id, err, tc.is)
			}
			if n := local.Len(); n != 0 {
				t.Errorf("local Len() = %d after a rejected chunk, want 0", n)
			}
		})
	}
}

func TestCacheLocalError(t *testing.T) {
	ctx := context.Background()
	id, _ := testChunk(t, "x")
	local, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(local.Path(id), 0o755); err != nil { // unreadable as a file
		t.Fatal(err)
	}
	remote := memWith(t, "x")
	c := NewCache(remote, local, chunk.SHA512256, 0)
	if _, err := c.Get(ctx, id); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Get(%s) with a broken local store = %v, want its error", id, err)
	}
	if n := remote.Gets(); n != 0 {
		t.Errorf("remote Gets() = %d, want 0", n)
	}
}

func TestCacheHas(t *testing.T) {
	ctx := context.Background()
	inLocal, b := testChunk(t, "local")
	inRemote, _ := testChunk(t, "remote")
	nowhere, _ := testChunk(t, "nowhere")
	local := NewMem()
	local.Put(ctx, inLocal, b)
	remote := memWith(t, "remote")
	c := NewCache(remote, local, chunk.SHA512256, 0)
	for _, tc := range []struct {
		id   chunk.ID
		want bool
	}{{inLocal, true}, {inRemote, true}, {nowhere, false}} {
		if got, err := c.Has(ctx, tc.id); got != tc.want || err != nil {
			t.Errorf("Has(%s) = %v, %v, want %v, nil", tc.id, got, err, tc.want)
		}
	}
}
