package store

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
)

// AddStats counts what AddChunks did.
type AddStats struct {
	// Chunks and Bytes are the distinct chunks of the image.
	Chunks int64 `json:"chunks"`
	Bytes  int64 `json:"bytes"`
	// New and NewBytes are the chunks the store lacked; Stored is their
	// compressed size.
	New      int64 `json:"new_chunks"`
	NewBytes int64 `json:"new_bytes"`
	Stored   int64 `json:"stored_bytes"`
}

// AddChunks puts into ws every distinct chunk of r listed in entries that
// ws does not already hold, compressing on 2×GOMAXPROCS workers. The chunks
// are not hashed again: r must be the input the entries were cut from,
// unchanged (the make command checks the image did not change meanwhile).
func AddChunks(ctx context.Context, ws WriteStore, r io.ReaderAt, entries []chunk.Entry, prog progress.Reporter) (AddStats, error) {
	if prog == nil {
		prog = progress.Discard
	}
	seen := make(map[chunk.ID]bool, len(entries))
	var todo []chunk.Entry
	var total int64
	for _, e := range entries {
		if !seen[e.ID] {
			seen[e.ID] = true
			todo = append(todo, e)
			total += int64(e.Size)
		}
	}
	st := AddStats{Chunks: int64(len(todo)), Bytes: total}
	var newChunks, newBytes, stored atomic.Int64
	prog.Start("store", total)
	defer prog.Done()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	// Twice the cores: a worker blocked creating a chunk file leaves its core
	// to another that compresses.
	for range min(2*runtime.GOMAXPROCS(0), len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var data, out []byte
			for ctx.Err() == nil {
				k := int(next.Add(1) - 1)
				if k >= len(todo) {
					return
				}
				e := todo[k]
				err := func() error {
					has, err := ws.Has(ctx, e.ID)
					if err != nil || has {
						return err
					}
					if cap(data) < int(e.Size) {
						data = make([]byte, e.Size)
					}
					data = data[:e.Size]
					if _, err := r.ReadAt(data, int64(e.Start)); err != nil {
						return fmt.Errorf("read image at %d: %w", e.Start, err)
					}
					out = chunk.Compress(out[:0], data)
					if err := ws.Put(ctx, e.ID, out); err != nil {
						return err
					}
					newChunks.Add(1)
					newBytes.Add(int64(e.Size))
					stored.Add(int64(len(out)))
					return nil
				}()
				if err != nil {
					cancel(fmt.Errorf("chunk %s at offset %d: %w", e.ID, e.Start, err))
					return
				}
				prog.Add(int64(e.Size))
			}
		}()
	}
	wg.Wait()
	st.New, st.NewBytes, st.Stored = newChunks.Load(), newBytes.Load(), stored.Load()
	return st, context.Cause(ctx)
}
