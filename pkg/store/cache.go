package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

// CacheStats counts a cache's lookups.
type CacheStats struct {
	Hits   int64 // chunks found in the local store
	Misses int64 // chunks fetched from the remote store
}

// Cache reads chunks from a local store and fetches those it lacks from a
// remote one, keeping a copy. It verifies every fetched chunk before keeping
// it, so a corrupt or forged chunk from the remote never enters the local
// store; chunks already local are returned as they are (the reader verifies
// them, as for any store). A Cache is safe for concurrent use.
type Cache struct {
	remote  Store
	local   WriteStore
	digest  chunk.Digest
	maxSize int
	bufs    sync.Pool // *[]byte of capacity maxSize, for verifying

	hits, misses atomic.Int64
}

var _ Store = (*Cache)(nil)

// NewCache returns a cache of remote in local. Chunks are verified with
// digest d and may decode to at most maxChunkSize bytes (chunk.SizeLimitMax
// if maxChunkSize is not positive); callers should pass the index's maximum
// chunk size, as verifying holds a buffer of that size per concurrent miss.
func NewCache(remote Store, local WriteStore, d chunk.Digest, maxChunkSize int) *Cache {
	if maxChunkSize <= 0 {
		maxChunkSize = chunk.SizeLimitMax
	}
	return &Cache{remote: remote, local: local, digest: d, maxSize: maxChunkSize}
}

// String returns "cache(LOCAL, REMOTE)".
func (c *Cache) String() string { return fmt.Sprintf("cache(%s, %s)", c.local, c.remote) }

// Stats returns the cache's counters so far.
func (c *Cache) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load()}
}

// Get returns chunk id from the local store or, failing that, from the
// remote one, verifying and storing it locally. An error reading the local
// store other than ErrNotFound is returned, not hidden by a fetch; so is an
// error storing the fetched chunk.
func (c *Cache) Get(ctx context.Context, id chunk.ID) ([]byte, error) {
	b, err := c.local.Get(ctx, id)
	if err == nil {
		c.hits.Add(1)
		return b, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c.misses.Add(1)
	b, err = c.remote.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := c.verify(id, b); err != nil {
		return nil, fmt.Errorf("cache: chunk from %s: %w", c.remote, err)
	}
	if err := c.local.Put(ctx, id, b); err != nil {
		return nil, fmt.Errorf("cache: keep chunk %s: %w", id, err)
	}
	return b, nil
}

// verify decodes compressed into a pooled buffer and checks it against id.
func (c *Cache) verify(id chunk.ID, compressed []byte) error {
	p, _ := c.bufs.Get().(*[]byte)
	if p == nil {
		p = new([]byte)
	}
	out, err := chunk.Decode(*p, c.digest, id, compressed, c.maxSize)
	if out != nil {
		*p = out[:0]
	}
	c.bufs.Put(p)
	return err
}

// Has reports whether either store holds chunk id, asking the local one
// first.
func (c *Cache) Has(ctx context.Context, id chunk.ID) (bool, error) {
	ok, err := c.local.Has(ctx, id)
	if err != nil {
		return false, fmt.Errorf("cache: %w", err)
	}
	if ok {
		return true, nil
	}
	return c.remote.Has(ctx, id)
}
