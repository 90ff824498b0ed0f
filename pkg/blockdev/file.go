package blockdev

import (
	"errors"
	"fmt"
	"os"
)

// File is a Device over a block device or a regular file (a disk image).
//
// On a regular file, Discard punches a hole, ZeroRange is
// fallocate(FALLOC_FL_ZERO_RANGE) where the file system has it, and
// SecureDiscard is not supported; the sector sizes are 512.
type File struct {
	f                 *os.File
	size              int64
	block             bool
	logical, physical int
}

var (
	_ Device          = (*File)(nil)
	_ SecureDiscarder = (*File)(nil)
)

// Open opens the block device or regular file at path with flag
// (os.O_RDONLY or os.O_RDWR, perhaps with os.O_EXCL, which for a block
// device refuses one that is mounted or otherwise in use).
func Open(path string, flag int) (*File, error) {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	d, err := newFile(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

func newFile(f *os.File) (*File, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	d := &File{f: f, logical: 512, physical: 512}
	switch {
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		d.block = true
		if d.size, err = blkSize64(f.Fd(), f.Name()); err != nil {
			return nil, err
		}
		if d.logical, d.physical, err = blkSectorSizes(f.Fd(), f.Name()); err != nil {
			return nil, err
		}
	case fi.Mode().IsRegular():
		d.size = fi.Size()
	default:
		return nil, fmt.Errorf("%s is neither a block device nor a regular file", f.Name())
	}
	return d, nil
}

// Name returns the path the device was opened with.
func (d *File) Name() string { return d.f.Name() }

// BlockDevice reports whether d is a block device rather than a file.
func (d *File) BlockDevice() bool { return d.block }

// Size returns the size of the device in bytes, as it was when opened.
func (d *File) Size() int64 { return d.size }

// SectorSizes returns the logical sector size, the unit of addressing
// (512 or 4096), and the physical sector size, the unit the device writes
// in.
func (d *File) SectorSizes() (logical, physical int) { return d.logical, d.physical }

// ReadAt reads from the device; a read past the end returns io.EOF.
func (d *File) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }

// WriteAt writes to the device; it never grows a file.
func (d *File) WriteAt(p []byte, off int64) (int, error) {
	if err := checkRange("write "+d.Name(), off, int64(len(p)), d.size); err != nil {
		return 0, err
	}
	return d.f.WriteAt(p, off)
}

// Discard discards [off, off+n). On a block device only the whole logical
// sectors within the range are discarded (BLKDISCARD); in a file the range
// is punched out and reads as zeros.
func (d *File) Discard(off, n int64) error {
	if err := checkRange("discard "+d.Name(), off, n, d.size); err != nil {
		return err
	}
	if !d.block {
		if n == 0 {
			return nil
		}
		return fallocate(d.f.Fd(), fallocPunchHole, "fallocate(PUNCH_HOLE)", d.Name(), off, n)
	}
	ls := int64(d.logical)
	start, end := (off+ls-1)/ls*ls, (off+n)/ls*ls
	if end <= start {
		return nil
	}
	return blkRange(d.f.Fd(), blkDiscard, "BLKDISCARD", d.Name(), start, end-start)
}

// SecureDiscard discards [off, off+n) securely (BLKSECDISCARD); the range
// must be whole logical sectors. Files and most devices do not support it.
func (d *File) SecureDiscard(off, n int64) error {
	if err := d.aligned("BLKSECDISCARD", off, n); err != nil {
		return err
	}
	if !d.block {
		return fmt.Errorf("BLKSECDISCARD %s: regular file: %w", d.Name(), ErrNotSupported)
	}
	return blkRange(d.f.Fd(), blkSecDiscard, "BLKSECDISCARD", d.Name(), off, n)
}

// ZeroRange zeroes [off, off+n), which must be whole logical sectors: with
// BLKZEROOUT on a block device (the kernel writes zeros itself where the
// device has no write-zeroes command), with fallocate(FALLOC_FL_ZERO_RANGE)
// in a file.
func (d *File) ZeroRange(off, n int64) error {
	if err := d.aligned("BLKZEROOUT", off, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	if !d.block {
		return fallocate(d.f.Fd(), fallocZeroRange, "fallocate(ZERO_RANGE)", d.Name(), off, n)
	}
	return blkRange(d.f.Fd(), blkZeroOut, "BLKZEROOUT", d.Name(), off, n)
}

// aligned checks that [off, off+n) is within the device and made of whole
// logical sectors; an unaligned range is not supported.
func (d *File) aligned(call string, off, n int64) error {
	if err := checkRange(call+" "+d.Name(), off, n, d.size); err != nil {
		return err
	}
	if ls := int64(d.logical); off%ls != 0 || n%ls != 0 {
		return fmt.Errorf("%s %s [%d, +%d): not whole %d-byte sectors: %w", call, d.Name(), off, n, ls, ErrNotSupported)
	}
	return nil
}

// Flush makes what was written durable (fsync) and, on a block device,
// drops the kernel's cache of it (BLKFLSBUF), so that reads come from the
// device.
func (d *File) Flush() error {
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", d.Name(), err)
	}
	if d.block {
		return blkFlushBuf(d.f.Fd(), d.Name())
	}
	return nil
}

// RereadPartitions makes the kernel read the partition table of d, a
// whole disk, again (BLKRRPART), as after writing a GPT: the partitions'
// device nodes then follow the new table. A regular file has no
// partitions for the kernel to read.
func (d *File) RereadPartitions() error {
	if !d.block {
		return fmt.Errorf("BLKRRPART %s: not a block device", d.Name())
	}
	return blkRRPart(d.f.Fd(), d.Name())
}

// Close closes the device.
func (d *File) Close() error {
	if err := d.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}
