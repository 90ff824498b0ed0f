package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

// testChunk returns the ID and .cacnk encoding of content.
func testChunk(t testing.TB, content string) (chunk.ID, []byte) {
	t.Helper()
	return chunk.SHA512256.Sum([]byte(content)), chunk.Compress(nil, []byte(content))
}

// chunkPath is the URL path of id in casync's layout.
func chunkPath(id chunk.ID) string {
	h := id.String()
	return "/" + h[:4] + "/" + h + ".cacnk"
}

// failStore fails every call with err, counting calls.
type failStore struct {
	name  string
	err   error
	calls int
}

func (f *failStore) Get(ctx context.Context, id chunk.ID) ([]byte, error) {
	f.calls++
	return nil, f.err
}

func (f *failStore) Has(ctx context.Context, id chunk.ID) (bool, error) {
	f.calls++
	return false, f.err
}

func (f *failStore) String() string { return f.name }

// memWith returns a Mem holding the given chunks.
func memWith(t testing.TB, contents ...string) *Mem {
	t.Helper()
	m := NewMem()
	for _, c := range contents {
		id, b := testChunk(t, c)
		if err := m.Put(context.Background(), id, b); err != nil {
			t.Fatalf("Mem.Put(%s) = %v", id, err)
		}
	}
	return m
}

func TestNotFoundError(t *testing.T) {
	id, _ := testChunk(t, "x")
	var err error = fmt.Errorf("wrapped: %w", &NotFoundError{ID: id, Store: "s"})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("errors.Is(%v, ErrNotFound) = false, want true", err)
	}
}
