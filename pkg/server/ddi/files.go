package ddi

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// ErrTooLarge: a file over the limit Put was given.
var ErrTooLarge = errors.New("file too large")

// Sums are a file's size and digests, lower-case hex.
type Sums struct {
	Size              int64
	SHA256, SHA1, MD5 string
}

// Files keeps the files attached to releases, each named by its SHA-256,
// so that a file attached twice is stored once.
type Files struct {
	dir string
	// mu is held for reading from a file's upload until its owner has
	// recorded it (Attach), and for writing while Collect decides what no
	// one uses: a file just stored is never collected before it is
	// recorded.
	mu sync.RWMutex
}

// OpenFiles opens (creating it if need be) the store in dir.
func OpenFiles(dir string) (*Files, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open artifact store: %w", err)
	}
	return &Files{dir: dir}, nil
}

// Attach stores what r holds, at most limit bytes (ErrTooLarge), and
// calls record with its sums, before any Collect can see the file. A file
// record refuses stays until a Collect finds no one uses it.
func (f *Files) Attach(r io.Reader, limit int64, record func(Sums) error) (Sums, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, err := f.put(r, limit)
	if err != nil {
		return s, err
	}
	return s, record(s)
}

// put stores what r holds, at most limit bytes, and returns its sums. The
// file appears under its name only once it is whole.
func (f *Files) put(r io.Reader, limit int64) (Sums, error) {
	tmp, err := os.CreateTemp(f.dir, ".upload-*")
	if err != nil {
		return Sums{}, fmt.Errorf("store artifact: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h256, h1, h5 := sha256.New(), sha1.New(), md5.New()
	n, err := io.Copy(io.MultiWriter(tmp, h256, h1, h5), io.LimitReader(r, limit+1))
	switch {
	case err != nil:
		return Sums{}, fmt.Errorf("store artifact: %w", err)
	case n > limit:
		return Sums{}, fmt.Errorf("%w: the most is %d bytes", ErrTooLarge, limit)
	}
	s := Sums{Size: n, SHA256: hex.EncodeToString(h256.Sum(nil)), SHA1: hex.EncodeToString(h1.Sum(nil)), MD5: hex.EncodeToString(h5.Sum(nil))}
	if err := tmp.Sync(); err != nil {
		return Sums{}, fmt.Errorf("store artifact: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.path(s.SHA256)); err != nil {
		return Sums{}, fmt.Errorf("store artifact: %w", err)
	}
	return s, nil
}

func (f *Files) path(sha256 string) string { return filepath.Join(f.dir, sha256) }

// Open opens the file whose SHA-256 is sha256.
func (f *Files) Open(sha256 string) (*os.File, error) {
	if _, err := hex.DecodeString(sha256); err != nil || len(sha256) != 64 {
		return nil, fmt.Errorf("open artifact: malformed SHA-256 %q", sha256)
	}
	return os.Open(f.path(sha256))
}

// Collect removes every file whose SHA-256 is not among those keep
// returns, and says how many it removed and their bytes. keep runs while
// no Attach can.
func (f *Files) Collect(ctx context.Context, keep func(context.Context) ([]string, error)) (files int, bytes int64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	live, err := keep(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("collect artifacts: %w", err)
	}
	keepSet := make(map[string]bool, len(live))
	for _, d := range live {
		keepSet[d] = true
	}
	ents, err := os.ReadDir(f.dir)
	if err != nil {
		return 0, 0, fmt.Errorf("collect artifacts: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || keepSet[name] {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return files, bytes, fmt.Errorf("collect artifacts: %w", err)
		}
		if err := os.Remove(filepath.Join(f.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return files, bytes, fmt.Errorf("collect artifacts: %w", err)
		}
		// A temporary (".upload-*") is what is left of an upload a crash
		// cut short: no Attach runs now. It is removed, not counted.
		if !strings.HasPrefix(name, ".") {
			files++
			bytes += info.Size()
		}
	}
	return files, bytes, nil
}
