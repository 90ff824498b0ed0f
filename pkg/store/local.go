package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

// chunkExt is the file name extension of a stored chunk.
const chunkExt = ".cacnk"

// tmpPrefix starts the name of a chunk file still being written. Walk skips
// such files; a crash can leave them behind and a later gc removes them.
const tmpPrefix = ".tmp-"

// Local is a chunk store in a directory, in casync's layout: chunk
// abcd… is the file DIR/abcd/abcd….cacnk.
//
// Put writes each chunk to a temporary file in its subdirectory and renames
// it into place, so readers never see a partial chunk and concurrent Puts of
// the same chunk are safe. Put does not fsync: a caller that needs the
// chunks to survive a power cut syncs the tree (or the file system) once
// after writing them, which is far cheaper on flash than a sync per chunk.
type Local struct {
	dir string
	seq atomic.Uint64 // numbers temporary files
}

var _ WriteStore = (*Local)(nil)

// NewLocal opens the store in dir, creating dir if it is missing.
func NewLocal(dir string) (*Local, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open local store: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("open local store: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open local store: %s is not a directory", dir)
	}
	return &Local{dir: dir}, nil
}

// String returns the store's directory.
func (l *Local) String() string { return l.dir }

// Path returns the file that holds chunk id, whether or not it exists.
func (l *Local) Path(id chunk.ID) string {
	h := id.String()
	return filepath.Join(l.dir, h[:4], h+chunkExt)
}

// Get reads chunk id.
func (l *Local) Get(ctx context.Context, id chunk.ID) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get chunk %s: %w", id, err)
	}
	b, err := os.ReadFile(l.Path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &NotFoundError{ID: id, Store: l.String()}
	}
	if err != nil {
		// The *PathError names the file.
		return nil, fmt.Errorf("get chunk: %w", err)
	}
	return b, nil
}

// Has reports whether the chunk's file exists.
func (l *Local) Has(ctx context.Context, id chunk.ID) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("has chunk %s: %w", id, err)
	}
	fi, err := os.Stat(l.Path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("has chunk: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("has chunk: %s is not a regular file", l.Path(id))
	}
	return true, nil
}

// Put writes chunk id through a temporary file and an atomic rename. It does
// not verify the chunk and does not fsync (see Local).
func (l *Local) Put(ctx context.Context, id chunk.ID, compressed []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put chunk %s: %w", id, err)
	}
	path := l.Path(id)
	// A unique temporary name, without CreateTemp's retries and chmod: a
	// chunk write is a handful of syscalls, and a store takes thousands.
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf("%s%s-%d-%d", tmpPrefix, id, os.Getpid(), l.seq.Add(1)))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
			f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		}
	}
	if err != nil {
		return fmt.Errorf("put chunk: %w", err)
	}
	_, err = f.Write(compressed)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("put chunk: %w", err)
	}
	return nil
}

// Walk calls fn with the ID and file size of every chunk in the store, in
// lexical order of their names. It skips temporary files and any file or
// directory that is not a chunk in casync's layout. It stops at the first
// error fn returns and returns that error unchanged; it checks ctx between
// directories.
func (l *Local) Walk(ctx context.Context, fn func(id chunk.ID, size int64) error) error {
	dirs, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("walk local store: %w", err)
	}
	for _, d := range dirs {
		if !d.IsDir() || !isPrefixDir(d.Name()) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("walk local store %s: %w", l.dir, err)
		}
		sub := filepath.Join(l.dir, d.Name())
		files, err := os.ReadDir(sub)
		if err != nil {
			return fmt.Errorf("walk local store: %w", err)
		}
		for _, f := range files {
			id, ok := chunkFileID(d.Name(), f.Name())
			if !ok || !f.Type().IsRegular() {
				continue
			}
			fi, err := f.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed since the listing, by a concurrent gc
			}
			if err != nil {
				return fmt.Errorf("walk local store: %w", err)
			}
			if err := fn(id, fi.Size()); err != nil {
				return err
			}
		}
	}
	return nil
}

// isPrefixDir reports whether name is four lower-case hex digits.
func isPrefixDir(name string) bool {
	return len(name) == 4 && isLowerHex(name)
}

// chunkFileID parses the name of a chunk file in prefix directory dir.
func chunkFileID(dir, name string) (chunk.ID, bool) {
	h, ok := strings.CutSuffix(name, chunkExt)
	if !ok || len(h) != 2*len(chunk.ID{}) || !isLowerHex(h) || h[:4] != dir {
		return chunk.ID{}, false
	}
	id, err := chunk.ParseID(h)
	return id, err == nil
}

// isLowerHex reports whether s is made only of the digits casync writes.
func isLowerHex(s string) bool {
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
