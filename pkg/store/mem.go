package store

import (
	"context"
	"fmt"
	"sync"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

// Mem is a WriteStore in memory, the fake for other packages' tests. It
// copies chunks in and out, so callers may reuse their buffers. It does not
// verify chunks, so tests can plant corrupt ones with Put.
type Mem struct {
	mu     sync.Mutex
	chunks map[chunk.ID][]byte
	gets   int
}

var _ WriteStore = (*Mem)(nil)

// NewMem returns an empty Mem.
func NewMem() *Mem {
	return &Mem{chunks: make(map[chunk.ID][]byte)}
}

// String returns "mem".
func (m *Mem) String() string { return "mem" }

// Get returns a copy of chunk id.
func (m *Mem) Get(ctx context.Context, id chunk.ID) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get chunk %s: %w", id, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets++
	b, ok := m.chunks[id]
	if !ok {
		return nil, &NotFoundError{ID: id, Store: m.String()}
	}
	return append([]byte(nil), b...), nil
}

// Has reports whether m holds chunk id.
func (m *Mem) Has(ctx context.Context, id chunk.ID) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("has chunk %s: %w", id, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.chunks[id]
	return ok, nil
}

// Put stores a copy of compressed as chunk id, replacing any earlier one.
func (m *Mem) Put(ctx context.Context, id chunk.ID, compressed []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put chunk %s: %w", id, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.chunks[id] = append([]byte(nil), compressed...)
	return nil
}

// Len returns the number of chunks in m.
func (m *Mem) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.chunks)
}

// Gets returns the number of Get calls so far, found or not.
func (m *Mem) Gets() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gets
}
