package assemble

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

// Seed is an image that may share chunks with the target: the running slot,
// an earlier release, the last image extracted.
type Seed struct {
	Name string
	R    io.ReaderAt
	Size int64
	// Index, if set, lists the seed's chunks, so it need not be chunked
	// again; each chunk is still verified as it is read. Without an index
	// the seed is chunked on the fly with the target index's parameters.
	Index *chunk.Index
}

// OpenSeed opens a file or block device as a seed. If indexPath is not
// empty, the seed's index is read from it, and a seed shorter than its index
// is an error.
func OpenSeed(path, indexPath string) (*Seed, io.Closer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open seed: %w", err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("seed %s: size: %w", path, err)
	}
	s := &Seed{Name: path, R: f, Size: size}
	if indexPath != "" {
		s.Index, err = chunk.ReadIndexFile(indexPath)
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("seed %s: %w", path, err)
		}
		if want := s.Index.Size(); uint64(size) < want {
			f.Close()
			return nil, nil, fmt.Errorf("seed %s is %d bytes, shorter than its index %s (%d bytes)", path, size, indexPath, want)
		}
	}
	return s, f, nil
}

// SeedIndexPath returns the seed image path for a seed index, by casync and
// desync's convention: the index path without its .caibx suffix.
func SeedIndexPath(indexPath string) (string, error) {
	img, ok := strings.CutSuffix(indexPath, ".caibx")
	if !ok || img == "" {
		return "", fmt.Errorf("seed index %q: want a path ending in .caibx next to its image", indexPath)
	}
	return img, nil
}

// fromSeed writes every chunk still wanted that seed s holds.
func (r *run) fromSeed(ctx context.Context, n int, s *Seed) error {
	if s.Index != nil {
		return r.fromIndexedSeed(ctx, n, s)
	}
	c, err := chunk.NewChunker(r.idx.Params)
	if err != nil {
		return err
	}
	// Only a chunk of a size the index has can be wanted: the others are
	// not worth a digest.
	sizes := make(map[int]bool)
	for _, w := range r.order {
		if !w.claimed.Load() {
			sizes[w.size] = true
		}
	}
	return chunk.ScanFunc(ctx, s.R, s.Size, c, chunk.ScanOptions{SectionSize: 16 << 20, Workers: 2 * cpuWorkers()},
		func(e chunk.Entry, data []byte) error {
			if !sizes[len(data)] {
				return nil
			}
			w := r.wants[r.idx.Digest.Sum(data)]
			if w == nil || w.size != len(data) || w.claimed.Load() || !w.claimed.CompareAndSwap(false, true) {
				return nil
			}
			r.seeds[n].add(int64(len(data)), 0)
			return r.write(w, data)
		})
}

// fromIndexedSeed reads the seed's chunks that are wanted, verifies each,
// and writes it. A chunk that does not match the seed's index is counted
// and left for the stores.
func (r *run) fromIndexedSeed(ctx context.Context, n int, s *Seed) error {
	if s.Index.Digest != r.idx.Digest {
		return fmt.Errorf("seed index uses %s, target index %s", s.Index.Digest, r.idx.Digest)
	}
	var todo []chunk.Entry
	seen := make(map[chunk.ID]bool)
	for _, e := range s.Index.Chunks {
		if w := r.wants[e.ID]; w != nil && !seen[e.ID] && uint64(w.size) == e.Size && !w.claimed.Load() {
			seen[e.ID] = true
			todo = append(todo, e)
		}
	}
	pool := newBufPool(int(r.idx.Params.Max))
	return parallel(ctx, len(todo), cpuWorkers(), func(ctx context.Context, k int) error {
		e := todo[k]
		buf := pool.get()
		defer pool.put(buf)
		data := buf[:e.Size]
		if _, err := s.R.ReadAt(data, int64(e.Start)); err != nil {
			return fmt.Errorf("read at %d: %w", e.Start, err)
		}
		if r.idx.Digest.Sum(data) != e.ID {
			r.mismatch.Add(1)
			return nil
		}
		w := r.wants[e.ID]
		if !w.claimed.CompareAndSwap(false, true) {
			return nil
		}
		r.seeds[n].add(int64(e.Size), 0)
		return r.write(w, data)
	})
}
