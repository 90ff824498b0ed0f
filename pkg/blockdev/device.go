package blockdev

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Errors callers branch on.
var (
	// ErrNotSupported is wrapped by the error of a Discard, SecureDiscard or
	// ZeroRange that the device (or file) cannot do, as when the kernel
	// answers ENOTTY, EOPNOTSUPP or EINVAL.
	ErrNotSupported = errors.New("not supported by the device")
	// ErrOutOfRange is wrapped by the error of an operation on bytes beyond
	// the end of a device or section.
	ErrOutOfRange = errors.New("beyond the end of the device")
)

// Device is a disk, a disk image or a part of one, addressed in bytes.
//
// Each call is one request to the kernel: callers covering a large range
// split it and check their context between the pieces (as [Zero] does).
// Implementations: [*File] over a block device or file, [*Mem] for tests,
// [Section] for a partition of another Device.
type Device interface {
	io.ReaderAt
	io.WriterAt
	// Size returns the size of the device in bytes.
	Size() int64
	// Discard tells the device that [off, off+n) holds nothing of value.
	// What the range reads as afterwards is up to the device: old data,
	// zeros or anything else.
	Discard(off, n int64) error
	// ZeroRange makes [off, off+n) read as zeros without the caller
	// writing them (BLKZEROOUT), or fails with ErrNotSupported.
	ZeroRange(off, n int64) error
	// Flush makes what was written durable and drops cached data, so that
	// later reads come from the device.
	Flush() error
	Close() error
}

// SecureDiscarder is a Device that can discard so that the old data cannot
// be recovered even from the device's internal copies (eMMC secure trim,
// BLKSECDISCARD). SecureDiscard fails with ErrNotSupported on the many
// devices that cannot.
type SecureDiscarder interface {
	SecureDiscard(off, n int64) error
}

// checkRange returns an error wrapping ErrOutOfRange unless [off, off+n) is
// within a device of size bytes.
func checkRange(op string, off, n, size int64) error {
	if off < 0 || n < 0 || off > size || n > size-off {
		return fmt.Errorf("%s [%d, +%d) of a %d-byte device: %w", op, off, n, size, ErrOutOfRange)
	}
	return nil
}

// Zeroing says how [Zero] zeroed a range.
type Zeroing struct {
	// Device is the number of bytes the device zeroed itself (ZeroRange).
	Device int64
	// Written is the number of bytes zeroed by writing zeros.
	Written int64
}

// zeroAlign is the alignment of the ranges Zero passes to ZeroRange: a
// multiple of every logical sector size (512 and 4096).
const zeroAlign = 4096

// zeroBuf is the size of the buffer of zeros Zero writes from.
const zeroBuf = 1 << 20

// Zero makes [off, off+n) of dev read as zeros: with dev.ZeroRange for the
// 4 KiB-aligned middle of the range, and by writing zeros, at most 1 MiB at
// a time, for its unaligned ends and wherever ZeroRange fails with
// ErrNotSupported. It checks ctx between writes.
func Zero(ctx context.Context, dev Device, off, n int64) (Zeroing, error) {
	var z Zeroing
	if err := checkRange("zero", off, n, dev.Size()); err != nil {
		return z, err
	}
	end := off + n
	mid := min((off+zeroAlign-1)/zeroAlign*zeroAlign, end)
	midEnd := max(end/zeroAlign*zeroAlign, mid)
	if err := writeZeros(ctx, dev, off, mid-off, &z); err != nil {
		return z, err
	}
	if midEnd > mid {
		err := dev.ZeroRange(mid, midEnd-mid)
		switch {
		case err == nil:
			z.Device += midEnd - mid
		case errors.Is(err, ErrNotSupported):
			if err := writeZeros(ctx, dev, mid, midEnd-mid, &z); err != nil {
				return z, err
			}
		default:
			return z, err
		}
	}
	return z, writeZeros(ctx, dev, midEnd, end-midEnd, &z)
}

// writeZeros writes n zero bytes at off.
func writeZeros(ctx context.Context, w io.WriterAt, off, n int64, z *Zeroing) error {
	if n == 0 {
		return nil
	}
	buf := make([]byte, min(n, zeroBuf))
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := min(n, int64(len(buf)))
		if _, err := w.WriteAt(buf[:k], off); err != nil {
			return fmt.Errorf("write zeros at %d: %w", off, err)
		}
		off, n, z.Written = off+k, n-k, z.Written+k
	}
	return nil
}

// Section returns the view of [off, off+size) of dev as a Device of its
// own, such as one partition of a disk. Closing it does not close dev.
func Section(dev Device, off, size int64) (Device, error) {
	if err := checkRange("section", off, size, dev.Size()); err != nil {
		return nil, err
	}
	return &section{dev: dev, off: off, size: size}, nil
}

type section struct {
	dev       Device
	off, size int64
}

var (
	_ Device          = (*section)(nil)
	_ SecureDiscarder = (*section)(nil)
)

func (s *section) Size() int64 { return s.size }

func (s *section) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at %d: %w", off, ErrOutOfRange)
	}
	if off >= s.size {
		return 0, io.EOF
	}
	if max := s.size - off; int64(len(p)) > max {
		n, err := s.dev.ReadAt(p[:max], s.off+off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return s.dev.ReadAt(p, s.off+off)
}

func (s *section) WriteAt(p []byte, off int64) (int, error) {
	if err := checkRange("write", off, int64(len(p)), s.size); err != nil {
		return 0, err
	}
	return s.dev.WriteAt(p, s.off+off)
}

func (s *section) Discard(off, n int64) error {
	if err := checkRange("discard", off, n, s.size); err != nil {
		return err
	}
	return s.dev.Discard(s.off+off, n)
}

func (s *section) SecureDiscard(off, n int64) error {
	if err := checkRange("secure discard", off, n, s.size); err != nil {
		return err
	}
	sd, ok := s.dev.(SecureDiscarder)
	if !ok {
		return fmt.Errorf("secure discard: %w", ErrNotSupported)
	}
	return sd.SecureDiscard(s.off+off, n)
}

func (s *section) ZeroRange(off, n int64) error {
	if err := checkRange("zero range", off, n, s.size); err != nil {
		return err
	}
	return s.dev.ZeroRange(s.off+off, n)
}

func (s *section) Flush() error { return s.dev.Flush() }
func (s *section) Close() error { return nil }
