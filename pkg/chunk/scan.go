package chunk

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// ScanOptions tune a parallel scan. The zero value is ready to use.
type ScanOptions struct {
	// Workers is the number of goroutines; default GOMAXPROCS.
	Workers int
	// SectionSize is the span each worker chunks at a time; default 32 MiB,
	// and never less than 16 maximum-size chunks.
	SectionSize int64
	// Progress, if set, is called with the number of bytes just scanned.
	// It is called from several goroutines.
	Progress func(n int64)
}

func (o ScanOptions) workers() int {
	if o.Workers > 0 {
		return o.Workers
	}
	return runtime.GOMAXPROCS(0)
}

func (o ScanOptions) sectionSize(maxChunk int) int64 {
	s := o.SectionSize
	if s <= 0 {
		s = 32 << 20
	}
	return max(s, 16*int64(maxChunk))
}

// Scan chunks r[0:size) and returns its chunks in order, exactly as a
// serial casync chunker would cut them.
//
// Workers chunk sections of the input in parallel, each starting a chunk at
// its section's start. Since a cut depends only on the bytes since the
// previous cut, the serial chain of cuts, once it meets a cut a worker also
// made, follows that worker's cuts from there on; the merge re-cuts
// serially only the few chunks before each meeting point.
func Scan(ctx context.Context, r io.ReaderAt, size int64, c *Chunker, d Digest, opt ScanOptions) ([]Entry, error) {
	return scan(ctx, r, size, c, &d, opt, nil)
}

// ScanFunc is Scan for callers that want the chunks' bytes, such as a seed
// being searched for content: it calls fn with every chunk of the serial
// chain and its bytes (valid only during the call), from several goroutines
// and in no particular order. fn may also see a few extra chunks, cut from
// section starts before the chains met.
//
// The entries carry no ID: fn hashes the chunks it has a use for, so that a
// seed's chunks of sizes nobody wants cost no digest.
func ScanFunc(ctx context.Context, r io.ReaderAt, size int64, c *Chunker, opt ScanOptions, fn func(e Entry, data []byte) error) error {
	_, err := scan(ctx, r, size, c, nil, opt, fn)
	return err
}

// scan cuts r, hashing each chunk with d unless d is nil.
func scan(ctx context.Context, r io.ReaderAt, size int64, c *Chunker, d *Digest, opt ScanOptions, fn func(Entry, []byte) error) ([]Entry, error) {
	secs := sections(size, opt.sectionSize(c.max))
	results := make([][]Entry, len(secs))
	err := forEachSection(ctx, secs, opt.workers(), c.max, func(i int, buf []byte) error {
		return scanSection(ctx, r, size, secs[i], c, d, buf, opt.Progress, func(e Entry, data []byte) error {
			results[i] = append(results[i], e)
			if fn != nil {
				return fn(e, data)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return merge(ctx, r, size, c, d, results, fn)
}

type span struct{ start, end int64 }

func sections(size, secSize int64) []span {
	var secs []span
	for s := int64(0); s < size; s += secSize {
		secs = append(secs, span{s, min(s+secSize, size)})
	}
	return secs
}

// forEachSection runs fn for every section on a pool of workers, each with
// its own read buffer, and returns the first error.
func forEachSection(ctx context.Context, secs []span, workers, maxChunk int, fn func(i int, buf []byte) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, len(secs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, readBufSize(maxChunk))
			for i := range next {
				if err := fn(i, buf); err != nil {
					cancel(err)
				}
			}
		}()
	}
feed:
	for i := range secs {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

func readBufSize(maxChunk int) int { return max(1<<20, 2*maxChunk) }

// scanSection cuts chunks from sec.start until a cut at or past sec.end.
func scanSection(ctx context.Context, r io.ReaderAt, size int64, sec span, c *Chunker, d *Digest, buf []byte, progress func(int64), fn func(Entry, []byte) error) error {
	w := window{r: r, size: size, buf: buf}
	for pos := sec.start; pos < sec.end; {
		data, err := w.at(ctx, pos, c.max)
		if err != nil {
			return err
		}
		n := c.Cut(data)
		e := entry(pos, data[:n], d)
		if err := fn(e, data[:n]); err != nil {
			return err
		}
		if progress != nil {
			progress(int64(n))
		}
		pos += int64(n)
	}
	return nil
}

// merge joins the sections' chunks into the serial chain of cuts, passing
// the chunks it cuts itself to fn, if set.
func merge(ctx context.Context, r io.ReaderAt, size int64, c *Chunker, d *Digest, results [][]Entry, fn func(Entry, []byte) error) ([]Entry, error) {
	if len(results) == 0 {
		return nil, nil
	}
	out := results[0]
	var w *window
	cut := func(pos int64) (Entry, error) {
		if w == nil {
			w = &window{r: r, size: size, buf: make([]byte, readBufSize(c.max))}
		}
		data, err := w.at(ctx, pos, c.max)
		if err != nil {
			return Entry{}, err
		}
		n := c.Cut(data)
		e := entry(pos, data[:n], d)
		if fn != nil {
			if err := fn(e, data[:n]); err != nil {
				return Entry{}, err
			}
		}
		return e, nil
	}
	end := func() int64 {
		if len(out) == 0 {
			return 0
		}
		return int64(out[len(out)-1].End())
	}
	for _, list := range results[1:] {
		j := 0
		for pos := end(); pos < size; pos = end() {
			for j < len(list) && int64(list[j].Start) < pos {
				j++
			}
			if j == len(list) {
				break // passed this section without meeting it
			}
			if int64(list[j].Start) == pos {
				out = append(out, list[j:]...)
				break
			}
			e, err := cut(pos)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
	}
	for pos := end(); pos < size; pos = end() {
		e, err := cut(pos)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// entry describes the chunk data at pos, with its ID if d is set.
func entry(pos int64, data []byte, d *Digest) Entry {
	e := Entry{Start: uint64(pos), Size: uint64(len(data))}
	if d != nil {
		e.ID = d.Sum(data)
	}
	return e
}

// window serves the bytes of r from pos on, reading ahead in large blocks.
type window struct {
	r     io.ReaderAt
	size  int64
	buf   []byte
	start int64 // file offset of buf[0]
	n     int   // valid bytes in buf
}

// at returns r[pos:pos+min(want, size-pos)], reading whatever is missing.
func (w *window) at(ctx context.Context, pos int64, want int) ([]byte, error) {
	need := int(min(int64(want), w.size-pos))
	if pos >= w.start && pos+int64(need) <= w.start+int64(w.n) {
		off := int(pos - w.start)
		return w.buf[off : off+need], nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Keep what overlaps, then fill the rest of the buffer.
	keep := 0
	if pos >= w.start && pos < w.start+int64(w.n) {
		keep = copy(w.buf, w.buf[pos-w.start:w.n])
	}
	fill := int(min(int64(len(w.buf)), w.size-pos))
	if _, err := w.r.ReadAt(w.buf[keep:fill], pos+int64(keep)); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read at %d: %w", pos+int64(keep), err)
	}
	w.start, w.n = pos, fill
	return w.buf[:need], nil
}
