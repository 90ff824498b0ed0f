package blockdev

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Block-device ioctls not in x/sys/unix for every architecture, from
// include/uapi/linux/fs.h: _IO(0x12, 125) and _IO(0x12, 127).
const (
	blkSecDiscard = 0x127d // BLKSECDISCARD
	blkZeroOut    = 0x127f // BLKZEROOUT
)

// blkSize64 returns the size of the block device fd in bytes
// (BLKGETSIZE64).
func blkSize64(fd uintptr, name string) (int64, error) {
	n, err := unix.IoctlGetUint64(int(fd), unix.BLKGETSIZE64)
	if err != nil {
		return 0, fmt.Errorf("BLKGETSIZE64 %s: %w", name, err)
	}
	return int64(n), nil
}

// blkSectorSizes returns the logical (BLKSSZGET) and physical (BLKPBSZGET)
// sector sizes of the block device fd.
func blkSectorSizes(fd uintptr, name string) (logical, physical int, err error) {
	logical, err = unix.IoctlGetInt(int(fd), unix.BLKSSZGET)
	if err != nil {
		return 0, 0, fmt.Errorf("BLKSSZGET %s: %w", name, err)
	}
	p, err := unix.IoctlGetUint32(int(fd), unix.BLKPBSZGET)
	if err != nil {
		return 0, 0, fmt.Errorf("BLKPBSZGET %s: %w", name, err)
	}
	return logical, int(p), nil
}

// blkRange issues one of the ioctls that take a {start, length} pair in
// bytes: BLKDISCARD, BLKSECDISCARD, BLKZEROOUT.
func blkRange(fd uintptr, req uintptr, call, name string, off, n int64) error {
	r := [2]uint64{uint64(off), uint64(n)}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(unsafe.Pointer(&r[0])))
	if e != 0 {
		return rangeErr(call, name, off, n, e)
	}
	return nil
}

// blkFlushBuf writes back and drops the kernel's cache of the block device
// fd (BLKFLSBUF).
func blkFlushBuf(fd uintptr, name string) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, unix.BLKFLSBUF, 0)
	if e != 0 {
		return fmt.Errorf("BLKFLSBUF %s: %w", name, e)
	}
	return nil
}

// blkRRPart makes the kernel read the partition table of the whole disk
// fd again (BLKRRPART). It fails with EBUSY while a partition of the disk
// is open or mounted.
func blkRRPart(fd uintptr, name string) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, unix.BLKRRPART, 0)
	if e != 0 {
		return fmt.Errorf("BLKRRPART %s: %w", name, e)
	}
	return nil
}

// fallocate calls fallocate(2) on the regular file fd.
func fallocate(fd uintptr, mode uint32, call, name string, off, n int64) error {
	if err := unix.Fallocate(int(fd), mode, off, n); err != nil {
		return rangeErr(call, name, off, n, err)
	}
	return nil
}

// rangeErr names the call and range, and adds ErrNotSupported to the
// answers that mean the device or file system cannot do it.
func rangeErr(call, name string, off, n int64, err error) error {
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%s %s [%d, +%d): %w: %w", call, name, off, n, ErrNotSupported, err)
	}
	return fmt.Errorf("%s %s [%d, +%d): %w", call, name, off, n, err)
}

const (
	fallocPunchHole = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
	fallocZeroRange = unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE
)

// blkDiscard is BLKDISCARD, _IO(0x12, 119).
const blkDiscard = unix.BLKDISCARD
