package inplace

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

// power is the one power supply of a test's device, spill area and data
// partition: after left steps (device and spill writes and flushes, journal
// file operations) it goes off, and everything fails with ErrPowerCut.
type power struct {
	left  int // -1: never
	steps int
	off   bool
	fs    *durable.Crash
}

func (p *power) check(op string) error {
	if p.off {
		return fmt.Errorf("%s: %w", op, durable.ErrPowerCut)
	}
	return nil
}

func (p *power) tick() {
	p.steps++
	if p.left >= 0 && p.steps >= p.left {
		p.off = true
		p.fs.CutAfter(p.fs.Steps())
	}
}

// crashDisk is a device whose writes are volatile until Flush, like
// durable.Crash's files: a power cut drops them (or, with a worse reboot,
// keeps any subset of them, the last torn).
type crashDisk struct {
	pw      *power
	data    []byte
	pending []pwrite
	writes  int
}

type pwrite struct {
	off  int64
	data []byte
}

var _ Target = (*crashDisk)(nil)

func (d *crashDisk) Size() int64 { return int64(len(d.data)) }

func (d *crashDisk) ReadAt(p []byte, off int64) (int, error) {
	if err := d.pw.check("read"); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, blockdev.ErrOutOfRange
	}
	if off >= int64(len(d.data)) {
		return 0, io.EOF
	}
	n := copy(p, d.data[off:])
	for _, w := range d.pending {
		lo, hi := max(off, w.off), min(off+int64(n), w.off+int64(len(w.data)))
		if lo < hi {
			copy(p[lo-off:hi-off], w.data[lo-w.off:])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (d *crashDisk) WriteAt(p []byte, off int64) (int, error) {
	if err := d.pw.check("write"); err != nil {
		return 0, err
	}
	if off < 0 || off+int64(len(p)) > int64(len(d.data)) {
		return 0, fmt.Errorf("write [%d, +%d): %w", off, len(p), blockdev.ErrOutOfRange)
	}
	d.pending = append(d.pending, pwrite{off, slices.Clone(p)})
	d.writes++
	d.pw.tick()
	return len(p), nil
}

func (d *crashDisk) Flush() error {
	if err := d.pw.check("flush"); err != nil {
		return err
	}
	for _, w := range d.pending {
		copy(d.data[w.off:], w.data)
	}
	d.pending = nil
	d.pw.tick()
	return nil
}

// reboot returns the disk as it is at power-on, on power pw. With rng,
// each unflushed write survives or not at random, and one may be torn.
func (d *crashDisk) reboot(pw *power, rng *rand.Rand) *crashDisk {
	data := d.data
	if rng != nil {
		for _, w := range d.pending {
			switch rng.IntN(3) {
			case 0:
				copy(data[w.off:], w.data)
			case 1:
				copy(data[w.off:], w.data[:rng.IntN(len(w.data)+1)])
			}
		}
	}
	return &crashDisk{pw: pw, data: data}
}

// powerFS is a durable.FS on power pw: each change is a step.
type powerFS struct {
	c  *durable.Crash
	pw *power
}

func (f powerFS) ReadFile(name string) ([]byte, error) {
	if err := f.pw.check("read " + name); err != nil {
		return nil, err
	}
	return f.c.ReadFile(name)
}

func (f powerFS) ReadDir(dir string) ([]fs.DirEntry, error) {
	if err := f.pw.check("readdir " + dir); err != nil {
		return nil, err
	}
	return f.c.ReadDir(dir)
}

func (f powerFS) step(op string, do func() error) error {
	if err := f.pw.check(op); err != nil {
		return err
	}
	err := do()
	f.pw.tick()
	return err
}

func (f powerFS) OpenFile(name string, flag int, perm fs.FileMode) (durable.File, error) {
	var file durable.File
	err := f.step("open", func() (err error) { file, err = f.c.OpenFile(name, flag, perm); return err })
	if err != nil {
		return nil, err
	}
	return powerFile{file, f}, nil
}

func (f powerFS) Rename(o, n string) error {
	return f.step("rename", func() error { return f.c.Rename(o, n) })
}
func (f powerFS) Remove(n string) error {
	return f.step("remove", func() error { return f.c.Remove(n) })
}
func (f powerFS) MkdirAll(d string, p fs.FileMode) error {
	return f.step("mkdir", func() error { return f.c.MkdirAll(d, p) })
}
func (f powerFS) SyncDir(d string) error {
	return f.step("syncdir", func() error { return f.c.SyncDir(d) })
}

type powerFile struct {
	durable.File
	fs powerFS
}

func (f powerFile) Write(p []byte) (n int, err error) {
	err = f.fs.step("write", func() error { n, err = f.File.Write(p); return err })
	return n, err
}
func (f powerFile) Sync() error  { return f.fs.step("sync", f.File.Sync) }
func (f powerFile) Close() error { return f.fs.step("close", f.File.Close) }

// countingStore counts the requests for each chunk.
type countingStore struct {
	store.Store
	mu   sync.Mutex
	gets map[chunk.ID]int
}

func newCountingStore(s store.Store) *countingStore {
	return &countingStore{Store: s, gets: make(map[chunk.ID]int)}
}

func (s *countingStore) Get(ctx context.Context, id chunk.ID) ([]byte, error) {
	s.mu.Lock()
	s.gets[id]++
	s.mu.Unlock()
	return s.Store.Get(ctx, id)
}

func (s *countingStore) total() int {
	n := 0
	for _, c := range s.gets {
		n += c
	}
	return n
}
