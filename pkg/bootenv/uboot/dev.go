package uboot

import (
	"fmt"
	"io"
	"sync"
)

// Dev is the storage under a copy of the environment: a file, a block
// device or partition ([blockdev.File] and [blockdev.Mem] are Devs), or a
// Flash.
type Dev interface {
	io.ReaderAt
	io.WriterAt
	// Flush makes what was written durable.
	Flush() error
}

// Flash is a Dev on raw flash (an MTD), where a write can only clear
// bits: a range must be erased to all 0xff before it is written.
// Implementations: [*MTD] over /dev/mtdN, [*MemFlash] for tests.
type Flash interface {
	Dev
	// Erase sets [off, off+n), whole erase blocks, to 0xff (MEMERASE).
	Erase(off, n int64) error
	// Info describes the flash.
	Info() FlashInfo
}

// FlashInfo describes a Flash.
type FlashInfo struct {
	// NOR is true for NOR flash (MTD_NORFLASH), whose single bytes can
	// be programmed, false for NAND.
	NOR bool
	// EraseSize is the size of an erase block in bytes.
	EraseSize int64
	// Size is the size of the device in bytes.
	Size int64
}

// MemFlash is an in-memory Flash for tests: it starts erased (all 0xff),
// a write ANDs its bytes into what is there as flash programming does, and
// it counts its erases and writes. It is safe for concurrent use.
type MemFlash struct {
	info FlashInfo

	mu             sync.Mutex
	data           []byte
	erases, writes int
}

var _ Flash = (*MemFlash)(nil)

// NewMemFlash returns an erased MemFlash of size bytes in erase blocks of
// eraseSize bytes.
func NewMemFlash(size, eraseSize int64, nor bool) *MemFlash {
	d := make([]byte, size)
	for i := range d {
		d[i] = 0xff
	}
	return &MemFlash{info: FlashInfo{NOR: nor, EraseSize: eraseSize, Size: size}, data: d}
}

// Info describes the flash.
func (m *MemFlash) Info() FlashInfo { return m.info }

// Size returns the size of the flash in bytes.
func (m *MemFlash) Size() int64 { return m.info.Size }

// ReadAt reads as from any device.
func (m *MemFlash) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off > int64(len(m.data)) {
		return 0, fmt.Errorf("read at %d of a %d-byte flash: out of range", off, len(m.data))
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt programs p at off: each byte becomes the AND of what was there
// and the byte written.
func (m *MemFlash) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.data)) {
		return 0, fmt.Errorf("write [%d, +%d) of a %d-byte flash: out of range", off, len(p), len(m.data))
	}
	for i, b := range p {
		m.data[off+int64(i)] &= b
	}
	m.writes++
	return len(p), nil
}

// Erase sets whole erase blocks to 0xff.
func (m *MemFlash) Erase(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	es := m.info.EraseSize
	if off < 0 || n <= 0 || off%es != 0 || n%es != 0 || off+n > int64(len(m.data)) {
		return fmt.Errorf("erase [%d, +%d) of a %d-byte flash in %d-byte blocks: unaligned or out of range", off, n, len(m.data), es)
	}
	for i := off; i < off+n; i++ {
		m.data[i] = 0xff
	}
	m.erases++
	return nil
}

// Flush does nothing: flash writes are not cached.
func (m *MemFlash) Flush() error { return nil }

// Counts returns the number of erases and writes so far.
func (m *MemFlash) Counts() (erases, writes int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.erases, m.writes
}
