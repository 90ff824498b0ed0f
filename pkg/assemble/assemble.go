// Package assemble writes an image described by a chunk index into a target
// (a file or a block device), taking each chunk from the cheapest verified
// source: the target itself when the chunk is already there, a zero chunk
// without any I/O, a seed (an image on the device that shares content, such
// as the running slot), and last a chunk store, local or over the network.
//
// Every chunk is verified against its ID before a byte of it is written;
// a chunk that cannot be verified stops the run with an error naming it and
// its offset. Memory is bounded by the number of workers times the maximum
// chunk size, whatever the size of the image.
package assemble

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

// Target is where the image is written: an *os.File for a file or a block
// device, or a fake in tests.
type Target interface {
	io.ReaderAt
	io.WriterAt
}

// Options say where chunks may come from and how to report.
type Options struct {
	// Stores are asked for chunks no other source has, in order: a store
	// that fails or lacks a chunk is skipped for the next one.
	Stores []store.Store
	// Seeds are images that may share chunks with the target.
	Seeds []*Seed
	// InPlace says the target holds earlier content: a chunk that is already
	// right in the target is not written.
	InPlace bool
	// Fresh says the target reads as zeros (a new sparse file): zero chunks
	// are not written.
	Fresh bool
	// Workers bounds the chunks fetched and written at once; default 8.
	Workers int
	// Progress receives the bytes of the image as they are settled.
	Progress progress.Reporter
	// Log receives a line per phase; default discard.
	Log *slog.Logger
}

// Source counts what one source provided.
type Source struct {
	Name   string `json:"name"`
	Chunks int64  `json:"chunks"`
	Bytes  int64  `json:"bytes"`
	// Wire is the bytes read from a store: the compressed size of the
	// chunks it served.
	Wire int64 `json:"wire_bytes,omitempty"`
}

// Stats describe a finished (or failed) run.
type Stats struct {
	Chunks  int64    `json:"chunks"`
	Bytes   int64    `json:"bytes"`
	Unique  int64    `json:"unique_chunks"`
	InPlace Source   `json:"in_place"`
	Zero    Source   `json:"zero"`
	Seeds   []Source `json:"seeds"`
	Stores  []Source `json:"stores"`
	// SeedMismatches counts seed chunks whose content did not match their
	// index: they were taken from a store instead.
	SeedMismatches int64 `json:"seed_mismatches"`
	// Retries counts requests that stores repeated after a failure.
	Retries  int64         `json:"retries"`
	Duration time.Duration `json:"duration_ns"`
}

// Fetched is the bytes read from all stores, as stored (compressed).
func (s *Stats) Fetched() int64 {
	var n int64
	for _, st := range s.Stores {
		n += st.Wire
	}
	return n
}

// WriteSummary writes s for people: where the image's bytes came from and
// what crossed the wire.
func (s *Stats) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "image:     %d chunks (%d distinct), %s\n", s.Chunks, s.Unique, progress.Bytes(s.Bytes))
	line := func(label string, src Source) {
		fmt.Fprintf(w, "%-10s %d chunks, %s", label+":", src.Chunks, progress.Bytes(src.Bytes))
		if src.Wire > 0 {
			fmt.Fprintf(w, " (%s transferred)", progress.Bytes(src.Wire))
		}
		fmt.Fprintln(w)
	}
	line("in place", s.InPlace)
	line("zeros", s.Zero)
	for _, src := range s.Seeds {
		line("seed "+src.Name, src)
	}
	for _, src := range s.Stores {
		line("store "+src.Name, src)
	}
	if s.SeedMismatches > 0 {
		fmt.Fprintf(w, "seed chunks that did not match their index: %d\n", s.SeedMismatches)
	}
	fmt.Fprintf(w, "fetched:   %s from stores, %d retries, in %s\n", progress.Bytes(s.Fetched()), s.Retries, s.Duration.Round(1e6))
}

// ChunkError names the chunk of the index that could not be written.
type ChunkError struct {
	Index  int
	Offset uint64
	ID     chunk.ID
	Err    error
}

func (e *ChunkError) Error() string {
	return fmt.Sprintf("chunk %d (%s) at offset %d: %v", e.Index, e.ID, e.Offset, e.Err)
}

func (e *ChunkError) Unwrap() error { return e.Err }

// counter is a Source updated from several goroutines.
type counter struct{ chunks, bytes, wire atomic.Int64 }

func (c *counter) add(bytes, wire int64) {
	c.chunks.Add(1)
	c.bytes.Add(bytes)
	c.wire.Add(wire)
}

func (c *counter) source(name string) Source {
	return Source{Name: name, Chunks: c.chunks.Load(), Bytes: c.bytes.Load(), Wire: c.wire.Load()}
}

// want is one distinct chunk of the index and every place it goes.
type want struct {
	id   chunk.ID
	size int
	at   []int // positions in the index
	// claimed is set by the one goroutine that settles every position of
	// the chunk: it alone reads and writes their done flags from then on.
	claimed atomic.Bool
}

type run struct {
	idx    *chunk.Index
	target Target
	opt    Options
	log    *slog.Logger
	prog   progress.Reporter

	wants    map[chunk.ID]*want
	order    []*want // first-appearance order, for deterministic fetching
	done     []bool  // by index position; each written by one goroutine
	inPlace  counter
	zero     counter
	seeds    []counter
	stores   []counter
	mismatch atomic.Int64
}

// Assemble writes the image idx describes into target. The target must
// already be at least idx.Size() bytes long.
func Assemble(ctx context.Context, idx *chunk.Index, target Target, opt Options) (*Stats, error) {
	start := time.Now()
	r := newRun(idx, target, opt)
	r.prog.Start("assemble", int64(idx.Size()))
	err := r.assemble(ctx)
	r.prog.Done()
	return r.stats(start), err
}

func newRun(idx *chunk.Index, target Target, opt Options) *run {
	r := &run{
		idx:    idx,
		target: target,
		opt:    opt,
		log:    opt.Log,
		prog:   opt.Progress,
		wants:  make(map[chunk.ID]*want),
		done:   make([]bool, len(idx.Chunks)),
		seeds:  make([]counter, len(opt.Seeds)),
		stores: make([]counter, len(opt.Stores)),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.prog == nil {
		r.prog = progress.Discard
	}
	for i, e := range idx.Chunks {
		w := r.wants[e.ID]
		if w == nil {
			w = &want{id: e.ID, size: int(e.Size)}
			r.wants[e.ID] = w
			r.order = append(r.order, w)
		}
		w.at = append(w.at, i)
	}
	return r
}

func (r *run) assemble(ctx context.Context) error {
	if r.opt.InPlace {
		if err := r.checkInPlace(ctx); err != nil {
			return err
		}
		for _, w := range r.order {
			if !r.pending(w) {
				w.claimed.Store(true)
			}
		}
	}
	if err := r.zeros(ctx); err != nil {
		return err
	}
	for i, s := range r.opt.Seeds {
		if err := r.fromSeed(ctx, i, s); err != nil {
			return fmt.Errorf("seed %s: %w", s.Name, err)
		}
	}
	return r.fromStores(ctx)
}

func (r *run) stats(start time.Time) *Stats {
	s := &Stats{
		Chunks:         int64(len(r.idx.Chunks)),
		Bytes:          int64(r.idx.Size()),
		Unique:         int64(len(r.order)),
		InPlace:        r.inPlace.source("target"),
		Zero:           r.zero.source("zero"),
		SeedMismatches: r.mismatch.Load(),
		Duration:       time.Since(start),
	}
	for i, sd := range r.opt.Seeds {
		s.Seeds = append(s.Seeds, r.seeds[i].source(sd.Name))
	}
	for i, st := range r.opt.Stores {
		s.Stores = append(s.Stores, r.stores[i].source(st.String()))
		if h, ok := st.(*store.HTTP); ok {
			s.Retries += h.Stats().Retries
		}
	}
	return s
}

// parallel runs fn(i) for i in [0, n) on workers goroutines and returns the
// first error, cancelling the rest.
func parallel(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

func cpuWorkers() int { return runtime.GOMAXPROCS(0) }

// checkInPlace marks the positions whose chunk the target already holds.
func (r *run) checkInPlace(ctx context.Context) error {
	pool := newBufPool(int(r.idx.Params.Max))
	return parallel(ctx, len(r.idx.Chunks), cpuWorkers(), func(ctx context.Context, i int) error {
		e := r.idx.Chunks[i]
		buf := pool.get()
		defer pool.put(buf)
		data := buf[:e.Size]
		if _, err := r.target.ReadAt(data, int64(e.Start)); err != nil {
			if errors.Is(err, io.EOF) {
				return nil // a target shorter than before: nothing to keep
			}
			return fmt.Errorf("read target at %d: %w", e.Start, err)
		}
		if r.idx.Digest.Sum(data) == e.ID {
			r.done[i] = true
			r.inPlace.add(int64(e.Size), 0)
			r.prog.Add(int64(e.Size))
		}
		return nil
	})
}

// zeros settles the chunks made of zero bytes (chunk.Index.ZeroIDs).
func (r *run) zeros(ctx context.Context) error {
	var zeroIDs []*want
	for id := range r.idx.ZeroIDs() {
		if w := r.wants[id]; w != nil {
			zeroIDs = append(zeroIDs, w)
		}
	}
	if len(zeroIDs) == 0 {
		return nil
	}
	zero := make([]byte, r.idx.Params.Max)
	for _, w := range zeroIDs {
		w.claimed.Store(true)
		for _, i := range w.at {
			if r.done[i] {
				continue
			}
			e := r.idx.Chunks[i]
			if !r.opt.Fresh {
				if err := ctx.Err(); err != nil {
					return err
				}
				if _, err := r.target.WriteAt(zero[:e.Size], int64(e.Start)); err != nil {
					return &ChunkError{Index: i, Offset: e.Start, ID: e.ID, Err: fmt.Errorf("write zeros: %w", err)}
				}
			}
			r.done[i] = true
			r.zero.add(int64(e.Size), 0)
			r.prog.Add(int64(e.Size))
		}
	}
	return nil
}

// write puts verified data at every position of w not yet settled.
func (r *run) write(w *want, data []byte) error {
	for _, i := range w.at {
		if r.done[i] {
			continue
		}
		e := r.idx.Chunks[i]
		if _, err := r.target.WriteAt(data, int64(e.Start)); err != nil {
			return &ChunkError{Index: i, Offset: e.Start, ID: e.ID, Err: fmt.Errorf("write target: %w", err)}
		}
		r.done[i] = true
		r.prog.Add(int64(e.Size))
	}
	return nil
}

// pending reports whether some position of w still needs writing.
func (r *run) pending(w *want) bool {
	for _, i := range w.at {
		if !r.done[i] {
			return true
		}
	}
	return false
}

// fromStores fetches, verifies and writes every chunk still missing.
func (r *run) fromStores(ctx context.Context) error {
	var todo []*want
	for _, w := range r.order {
		if !w.claimed.Load() {
			todo = append(todo, w)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if len(r.opt.Stores) == 0 {
		w := todo[0]
		i := w.at[0]
		return &ChunkError{Index: i, Offset: r.idx.Chunks[i].Start, ID: w.id,
			Err: fmt.Errorf("%d chunks are in no seed and no store was given", len(todo))}
	}
	workers := r.opt.Workers
	if workers <= 0 {
		workers = 8
	}
	pool := newBufPool(int(r.idx.Params.Max))
	return parallel(ctx, len(todo), workers, func(ctx context.Context, k int) error {
		w := todo[k]
		buf := pool.get()
		defer pool.put(buf)
		data, err := r.fetch(ctx, w, buf)
		if err != nil {
			i := w.at[0]
			return &ChunkError{Index: i, Offset: r.idx.Chunks[i].Start, ID: w.id, Err: err}
		}
		return r.write(w, data)
	})
}

// fetch asks each store in turn for w and returns its verified content.
func (r *run) fetch(ctx context.Context, w *want, buf []byte) ([]byte, error) {
	var errs []error
	for s, st := range r.opt.Stores {
		compressed, err := st.Get(ctx, w.id)
		if err == nil {
			var data []byte
			data, err = chunk.Decode(buf, r.idx.Digest, w.id, compressed, w.size)
			if err == nil && len(data) != w.size {
				err = &chunk.CorruptError{ID: w.id, Reason: fmt.Sprintf("%d bytes, index says %d", len(data), w.size)}
			}
			if err == nil {
				r.stores[s].add(int64(w.size), int64(len(compressed)))
				return data, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, store.ErrNotFound) {
			err = store.ErrNotFound // the chunk and the store are named already
		}
		errs = append(errs, fmt.Errorf("%s: %w", st, err))
	}
	return nil, errors.Join(errs...)
}

// bufPool hands out buffers of one chunk's maximum size.
type bufPool struct {
	size int
	p    sync.Pool
}

func newBufPool(size int) *bufPool {
	b := &bufPool{size: size}
	b.p.New = func() any { s := make([]byte, size); return &s }
	return b
}

func (b *bufPool) get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufPool) put(s []byte) { s = s[:cap(s)]; b.p.Put(&s) }
