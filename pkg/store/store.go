// Package store holds casync chunk stores and the decorators that compose
// them: a local directory in casync's layout, an HTTP client, a cache, a
// failover router, and an http.Handler that serves any store.
//
// Stores move chunks in their stored (.cacnk, zstd) encoding and do not
// verify them: the reader of a chunk verifies it against its ID
// (chunk.Decode) before using a byte of it. Decorators that keep a copy
// (Cache) verify before they keep it.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

// ErrNotFound is wrapped by every store's error for a chunk it does not hold.
var ErrNotFound = errors.New("chunk not found")

// Store reads chunks.
type Store interface {
	// Get returns the stored (.cacnk) encoding of chunk id, or an error
	// wrapping ErrNotFound.
	Get(ctx context.Context, id chunk.ID) ([]byte, error)
	// Has reports whether the store holds chunk id.
	Has(ctx context.Context, id chunk.ID) (bool, error)
	// String names the store for errors and statistics.
	String() string
}

// WriteStore is a Store that can also keep chunks.
type WriteStore interface {
	Store
	// Put stores the .cacnk encoding of chunk id. Putting a chunk the store
	// already holds is not an error.
	Put(ctx context.Context, id chunk.ID, compressed []byte) error
}

// NotFoundError names a chunk a store does not hold.
type NotFoundError struct {
	ID    chunk.ID
	Store string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("chunk %s not found in %s", e.ID, e.Store)
}

// Unwrap makes errors.Is(err, ErrNotFound) hold.
func (e *NotFoundError) Unwrap() error { return ErrNotFound }
