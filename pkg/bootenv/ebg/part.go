package ebg

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

// Part is one config partition's BGENV.DAT: a file of fixed size that is
// only ever rewritten in place, never truncated or grown, so that a write
// touches its data sectors and nothing else of the file system.
// Implementations: [*File] (a path on a mounted vfat partition), [*FATFile]
// (inside a FAT image or partition, without mounting), [*Mem] (tests).
type Part interface {
	io.ReaderAt
	io.WriterAt
	// Size is the size of the file.
	Size() int64
	// Sync makes what was written durable.
	Sync() error
	// String names the file for errors and logs.
	String() string
}

var (
	_ Part = (*File)(nil)
	_ Part = (*FATFile)(nil)
	_ Part = (*Mem)(nil)
)

// ErrFileSize is wrapped by the error of a write to a BGENV.DAT smaller
// than [Size]: EBG's own file is exactly that size, and growing it in
// place is not safe.
var ErrFileSize = errors.New("BGENV.DAT has the wrong size")

// readConfig reads and parses p. A file EBG would not use (short, bad CRC)
// gives an error wrapping bootenv.ErrCorrupt.
func readConfig(p Part) (*Config, error) {
	c, err := ParseEnv(io.NewSectionReader(p, 0, p.Size()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return c, nil
}

// writeConfig writes c over p in place, whole, and syncs it.
func writeConfig(p Part, c *Config) error {
	b, err := c.MarshalBinary()
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if p.Size() < Size {
		return fmt.Errorf("%s: %d bytes, want %d: %w", p, p.Size(), Size, ErrFileSize)
	}
	if _, err := p.WriteAt(b, 0); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := p.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", p, err)
	}
	return nil
}

// File is a BGENV.DAT reached by path, as on a mounted config partition.
type File struct {
	path string
}

// OpenFile returns the BGENV.DAT at path, which must exist; it is opened
// for each access and never truncated.
func OpenFile(path string) (*File, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, bootenv.ErrNoEnv)
	}
	return &File{path: path}, nil
}

func (f *File) String() string { return f.path }

// Size returns the file's current size (0 if it cannot be read).
func (f *File) Size() int64 {
	st, err := os.Stat(f.path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// ReadAt reads from the file.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	h, err := os.Open(f.path)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	return h.ReadAt(p, off)
}

// WriteAt writes into the file in place and fsyncs it before closing, so
// that Sync has nothing left to do.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	h, err := os.OpenFile(f.path, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	n, err := h.WriteAt(p, off)
	if err == nil {
		err = h.Sync()
	}
	if cerr := h.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// Sync is a no-op: WriteAt has synced.
func (f *File) Sync() error { return nil }

// Mem is a BGENV.DAT in memory, for tests. The zero value is an empty
// file; [NewMem] makes one holding a config.
type Mem struct {
	mu   sync.Mutex
	Name string
	b    []byte
}

// NewMem returns a Mem holding c (or Size zero bytes, a file with a bad
// CRC, for nil).
func NewMem(name string, c *Config) *Mem {
	m := &Mem{Name: name, b: make([]byte, Size)}
	if c != nil {
		b, err := c.MarshalBinary()
		if err != nil {
			panic(err)
		}
		m.b = b
	}
	return m
}

// NewMemBytes returns a Mem holding a copy of b.
func NewMemBytes(name string, b []byte) *Mem { return &Mem{Name: name, b: bytes.Clone(b)} }

func (m *Mem) String() string { return "mem:" + m.Name }

// Bytes returns a copy of the content.
func (m *Mem) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.b)
}

// Size returns the size of the content.
func (m *Mem) Size() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.b))
}

// ReadAt reads from the content.
func (m *Mem) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off > int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt writes into the content; it never grows it.
func (m *Mem) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("write [%d, +%d) of %d bytes: %w", off, len(p), len(m.b), ErrFileSize)
	}
	return copy(m.b[off:], p), nil
}

// Sync does nothing.
func (m *Mem) Sync() error { return nil }
