package blockdev

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"

	"github.com/lifeboat-update/lifeboat/internal/testtool"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// sparseDisk is a disk of size bytes that holds head at its start, tail at
// its end, zeros between, and what was written over them, so that fuzz
// inputs model big disks in little memory.
type sparseDisk struct {
	size       int64
	head, tail []byte
	writes     []extent
}

type extent struct {
	off  int64
	data []byte
}

// overlay copies into p, which is at off, the part of e that it covers.
func overlay(p []byte, off int64, e extent) {
	lo, hi := max(off, e.off), min(off+int64(len(p)), e.off+int64(len(e.data)))
	if lo < hi {
		copy(p[lo-off:hi-off], e.data[lo-e.off:hi-e.off])
	}
}

func (d *sparseDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= d.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), d.size-off))
	q := p[:n]
	clear(q)
	overlay(q, off, extent{d.size - int64(len(d.tail)), d.tail})
	overlay(q, off, extent{0, d.head})
	for _, w := range d.writes {
		overlay(q, off, w)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (d *sparseDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > d.size {
		return 0, ErrOutOfRange
	}
	d.writes = append(d.writes, extent{off, bytes.Clone(p)})
	return len(p), nil
}

// seedKeep is how much of the start and of the end of a disk image a seed
// keeps: the protective MBR, a header and 128 entries of 4096-byte sectors.
const seedKeep = 6 * 4096

// FuzzReadGPT feeds ReadGPT hostile tables. Whatever it accepts, WriteGPT
// must write back and ReadGPT read again as the same table.
func FuzzReadGPT(f *testing.F) {
	imgs, _ := filepath.Glob("testdata/*.img.gz")
	for _, p := range imgs {
		img := testtool.ReadGzip(f, p)
		f.Add(int64(len(img)), bytes.Clone(img[:seedKeep]), bytes.Clone(img[len(img)-seedKeep:]))
	}
	for _, tc := range goldenLayouts {
		tab, err := tc.l.Plan(tc.size)
		if err != nil {
			f.Fatal(err)
		}
		d := &sparseDisk{size: tc.size}
		if err := WriteGPT(d, tc.size, tab); err != nil {
			f.Fatal(err)
		}
		head, tail := make([]byte, seedKeep), make([]byte, seedKeep)
		d.ReadAt(head, 0)
		d.ReadAt(tail, tc.size-seedKeep)
		f.Add(tc.size, head, tail)
	}
	f.Fuzz(func(t *testing.T, size int64, head, tail []byte) {
		if size < 0 || size > 1<<40 {
			return
		}
		disk := &sparseDisk{size: size, head: head, tail: tail}
		tab, err := ReadGPT(disk, size, 0)
		if err != nil {
			return
		}
		m := &sparseDisk{size: size}
		if err := WriteGPT(m, size, tab); err != nil {
			t.Fatalf("WriteGPT(a table ReadGPT accepted) = %v", err)
		}
		again, err := ReadGPT(m, size, tab.SectorSize)
		if err != nil {
			t.Fatalf("ReadGPT(rewritten) = %v", err)
		}
		if again.PrimaryErr != nil || again.BackupErr != nil {
			t.Fatalf("ReadGPT(rewritten): damage %v, %v", again.PrimaryErr, again.BackupErr)
		}
		if diff := cmp.Diff(tab, again, cmpopts.IgnoreFields(Table{}, "PrimaryErr", "BackupErr"), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("rewritten table differs (-read +reread):\n%s", diff)
		}
	})
}
