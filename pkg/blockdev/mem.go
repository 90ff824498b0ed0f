package blockdev

import (
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
)

// OpKind names a recorded operation of a [Mem].
type OpKind string

// The operations a Mem records.
const (
	OpDiscard       OpKind = "discard"
	OpSecureDiscard OpKind = "secure-discard"
	OpZeroRange     OpKind = "zero-range"
	OpFlush         OpKind = "flush"
)

// Op is one recorded operation: a range for the discards and zero-outs,
// none for a flush.
type Op struct {
	Kind   OpKind
	Off, N int64
}

// Mem is an in-memory Device for tests. It records every discard, zero-out
// and flush (those that succeed), and its fields choose what the device
// supports. Set them before use. Mem is safe for concurrent use.
type Mem struct {
	// NoDiscard, NoSecureDiscard and NoZeroRange make those operations
	// fail with ErrNotSupported, as on a device without them.
	NoDiscard, NoSecureDiscard, NoZeroRange bool
	// DiscardZeroes makes discarded ranges read as zeros. Without it a
	// discard leaves the data as it was, the worst a real device may do.
	DiscardZeroes bool

	mu     sync.Mutex
	data   []byte
	ops    []Op
	closed bool
}

var (
	_ Device          = (*Mem)(nil)
	_ SecureDiscarder = (*Mem)(nil)
)

// NewMem returns a Mem of size bytes, all zero.
func NewMem(size int64) *Mem {
	return &Mem{data: make([]byte, size)}
}

// NewMemBytes returns a Mem holding a copy of b.
func NewMemBytes(b []byte) *Mem {
	return &Mem{data: slices.Clone(b)}
}

// Bytes returns a copy of the device's content.
func (m *Mem) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.data)
}

// Ops returns the operations recorded so far.
func (m *Mem) Ops() []Op {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.ops)
}

// Size returns the size of the device.
func (m *Mem) Size() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.data))
}

func (m *Mem) use(op string) error {
	if m.closed {
		return fmt.Errorf("%s: %w", op, os.ErrClosed)
	}
	return nil
}

// ReadAt reads from the device; a read past the end returns io.EOF.
func (m *Mem) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.use("read"); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("read at %d: %w", off, ErrOutOfRange)
	}
	if off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt writes to the device; it never grows.
func (m *Mem) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.use("write"); err != nil {
		return 0, err
	}
	if err := checkRange("write", off, int64(len(p)), int64(len(m.data))); err != nil {
		return 0, err
	}
	return copy(m.data[off:], p), nil
}

// rangeOp checks and records a range operation; zero says whether it
// zeroes the range.
func (m *Mem) rangeOp(kind OpKind, no bool, off, n int64, zero bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.use(string(kind)); err != nil {
		return err
	}
	if err := checkRange(string(kind), off, n, int64(len(m.data))); err != nil {
		return err
	}
	if no {
		return fmt.Errorf("%s: %w", kind, ErrNotSupported)
	}
	if zero {
		clear(m.data[off : off+n])
	}
	m.ops = append(m.ops, Op{Kind: kind, Off: off, N: n})
	return nil
}

// Discard records the discard and, with DiscardZeroes, zeroes the range.
func (m *Mem) Discard(off, n int64) error {
	return m.rangeOp(OpDiscard, m.NoDiscard, off, n, m.DiscardZeroes)
}

// SecureDiscard records the secure discard and zeroes the range.
func (m *Mem) SecureDiscard(off, n int64) error {
	return m.rangeOp(OpSecureDiscard, m.NoSecureDiscard, off, n, true)
}

// ZeroRange records the zero-out and zeroes the range.
func (m *Mem) ZeroRange(off, n int64) error {
	return m.rangeOp(OpZeroRange, m.NoZeroRange, off, n, true)
}

// Flush records the flush.
func (m *Mem) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.use("flush"); err != nil {
		return err
	}
	m.ops = append(m.ops, Op{Kind: OpFlush})
	return nil
}

// Close makes every later call fail with os.ErrClosed.
func (m *Mem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.use("close"); err != nil {
		return err
	}
	m.closed = true
	return nil
}
