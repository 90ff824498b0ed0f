package uboot

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MTD is a Flash over an MTD character device, /dev/mtdN.
type MTD struct {
	// SkipUnlock skips the MEMUNLOCK before each erase (Location.NoLock).
	SkipUnlock bool

	f    *os.File
	info FlashInfo
}

var _ Flash = (*MTD)(nil)

// OpenMTD opens the MTD character device at path with flag (os.O_RDONLY
// or os.O_RDWR) and reads its geometry (MEMGETINFO). It refuses MTDs other
// than NOR and NAND flash, as libubootenv does.
func OpenMTD(path string, flag int) (*MTD, error) {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	var mi unix.MtdInfo
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.MEMGETINFO, uintptr(unsafe.Pointer(&mi))); e != 0 {
		f.Close()
		return nil, fmt.Errorf("MEMGETINFO %s: %w", path, e)
	}
	switch mi.Type {
	case unix.MTD_NORFLASH, unix.MTD_NANDFLASH, unix.MTD_MLCNANDFLASH:
	default:
		f.Close()
		return nil, fmt.Errorf("%s: MTD type %d is neither NOR nor NAND flash", path, mi.Type)
	}
	return &MTD{f: f, info: FlashInfo{
		NOR:       mi.Type == unix.MTD_NORFLASH,
		EraseSize: int64(mi.Erasesize),
		Size:      int64(mi.Size),
	}}, nil
}

// Info describes the flash.
func (m *MTD) Info() FlashInfo { return m.info }

// Size returns the size of the flash in bytes.
func (m *MTD) Size() int64 { return m.info.Size }

// ReadAt reads from the flash.
func (m *MTD) ReadAt(p []byte, off int64) (int, error) { return m.f.ReadAt(p, off) }

// WriteAt programs the flash; the range must have been erased.
func (m *MTD) WriteAt(p []byte, off int64) (int, error) { return m.f.WriteAt(p, off) }

// Erase unlocks (MEMUNLOCK, unless SkipUnlock; its failure is ignored, as
// most flash has no locking) and erases (MEMERASE) [off, off+n).
func (m *MTD) Erase(off, n int64) error {
	if off < 0 || n <= 0 || off+n > 1<<32 {
		return fmt.Errorf("MEMERASE %s [%d, +%d): out of range", m.f.Name(), off, n)
	}
	ei := unix.EraseInfo{Start: uint32(off), Length: uint32(n)}
	if !m.SkipUnlock {
		unix.Syscall(unix.SYS_IOCTL, m.f.Fd(), unix.MEMUNLOCK, uintptr(unsafe.Pointer(&ei)))
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, m.f.Fd(), unix.MEMERASE, uintptr(unsafe.Pointer(&ei))); e != 0 {
		return fmt.Errorf("MEMERASE %s [%#x, +%#x): %w", m.f.Name(), off, n, e)
	}
	return nil
}

// Flush syncs the device; MTD writes are not cached, so this is cheap.
func (m *MTD) Flush() error {
	if err := m.f.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("fsync %s: %w", m.f.Name(), err)
	}
	return nil
}

// Close closes the device.
func (m *MTD) Close() error { return m.f.Close() }
