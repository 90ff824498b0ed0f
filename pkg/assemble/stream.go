package assemble

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

// Stream writes the image idx describes to w, in order, taking every chunk
// from the stores and verifying it before a byte of it is written: for
// checking a release end to end (hashing the stream) or for writing to
// something that cannot seek. Chunks are fetched ahead by opt.Workers
// goroutines; memory stays at about twice that many chunks. Seeds and the
// in-place and zero shortcuts do not apply.
func Stream(ctx context.Context, idx *chunk.Index, w io.Writer, opt Options) (*Stats, error) {
	start := time.Now()
	r := newRun(idx, nil, opt)
	workers := opt.Workers
	if workers <= 0 {
		workers = 8
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type result struct {
		buf  []byte
		data []byte
		err  error
	}
	pool := newBufPool(int(idx.Params.Max))
	pending := make(chan chan result, 2*workers)
	sem := make(chan struct{}, workers)
	go func() {
		defer close(pending)
		for i, e := range idx.Chunks {
			c := make(chan result, 1)
			select {
			case pending <- c:
			case <-ctx.Done():
				return
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				c <- result{err: ctx.Err()}
				return
			}
			go func() {
				defer func() { <-sem }()
				buf := pool.get()
				data, err := r.fetch(ctx, r.wants[e.ID], buf)
				if err != nil {
					err = &ChunkError{Index: i, Offset: e.Start, ID: e.ID, Err: err}
				}
				c <- result{buf: buf, data: data, err: err}
			}()
		}
	}()

	r.prog.Start("stream", int64(idx.Size()))
	defer r.prog.Done()
	for c := range pending {
		res := <-c
		if res.err != nil {
			cancel()
			for c := range pending { // let the fetchers finish
				if res := <-c; res.buf != nil {
					pool.put(res.buf)
				}
			}
			return r.stats(start), res.err
		}
		_, err := w.Write(res.data)
		pool.put(res.buf)
		if err != nil {
			cancel()
			for c := range pending {
				<-c
			}
			return r.stats(start), fmt.Errorf("write stream: %w", err)
		}
		r.prog.Add(int64(len(res.data)))
	}
	return r.stats(start), ctx.Err()
}
