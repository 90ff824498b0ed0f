package blockdev

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	return b
}

func TestZero(t *testing.T) {
	const size = 3 << 20
	for _, tc := range []struct {
		name       string
		noZero     bool
		off, n     int64
		device     int64 // bytes zeroed by ZeroRange
		zeroRanges []Op
	}{
		{name: "aligned", off: 4096, n: 1 << 20, device: 1 << 20, zeroRanges: []Op{{OpZeroRange, 4096, 1 << 20}}},
		{name: "unaligned ends", off: 100, n: 2 << 20, device: 2<<20 - 4096, zeroRanges: []Op{{OpZeroRange, 4096, 2<<20 - 4096}}},
		{name: "within one block", off: 100, n: 1000},
		{name: "empty", off: 5000, n: 0},
		{name: "whole", off: 0, n: size, device: size, zeroRanges: []Op{{OpZeroRange, 0, size}}},
		{name: "fallback", noZero: true, off: 100, n: 2 << 20},
	} {
		m := NewMemBytes(pattern(size))
		m.NoZeroRange = tc.noZero
		z, err := Zero(context.Background(), m, tc.off, tc.n)
		if err != nil {
			t.Errorf("Zero(%s) = %v", tc.name, err)
			continue
		}
		if z.Device != tc.device || z.Device+z.Written != tc.n {
			t.Errorf("Zero(%s) = %+v, want %d by the device of %d", tc.name, z, tc.device, tc.n)
		}
		want := pattern(size)
		clear(want[tc.off : tc.off+tc.n])
		if !bytes.Equal(m.Bytes(), want) {
			t.Errorf("Zero(%s): content is not the pattern with [%d, +%d) zeroed", tc.name, tc.off, tc.n)
		}
		if ops := m.Ops(); !slices.Equal(ops, tc.zeroRanges) {
			t.Errorf("Zero(%s) ops = %v, want %v", tc.name, ops, tc.zeroRanges)
		}
	}
}

func TestZeroErrors(t *testing.T) {
	m := NewMem(1 << 20)
	if _, err := Zero(context.Background(), m, 1<<20-10, 11); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("Zero(past the end) = %v, want ErrOutOfRange", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.NoZeroRange = true
	if _, err := Zero(ctx, m, 0, 1<<20); !errors.Is(err, context.Canceled) {
		t.Errorf("Zero(cancelled) = %v, want context.Canceled", err)
	}
}

func TestMem(t *testing.T) {
	m := NewMemBytes(pattern(8192))
	if err := m.Discard(0, 4096); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Bytes(), pattern(8192)) {
		t.Errorf("Discard without DiscardZeroes changed the data")
	}
	m.DiscardZeroes = true
	m.Discard(0, 100)
	m.SecureDiscard(200, 100)
	m.Flush()
	b := m.Bytes()
	if !bytes.Equal(b[:100], make([]byte, 100)) || !bytes.Equal(b[200:300], make([]byte, 100)) || b[150] == 0 {
		t.Errorf("Discard with DiscardZeroes and SecureDiscard did not zero exactly their ranges")
	}
	want := []Op{{OpDiscard, 0, 4096}, {OpDiscard, 0, 100}, {OpSecureDiscard, 200, 100}, {Kind: OpFlush}}
	if got := m.Ops(); !slices.Equal(got, want) {
		t.Errorf("Ops() = %v, want %v", got, want)
	}
	m.NoDiscard, m.NoSecureDiscard, m.NoZeroRange = true, true, true
	for name, err := range map[string]error{"Discard": m.Discard(0, 1), "SecureDiscard": m.SecureDiscard(0, 1), "ZeroRange": m.ZeroRange(0, 1)} {
		if !errors.Is(err, ErrNotSupported) {
			t.Errorf("%s(not supported) = %v, want ErrNotSupported", name, err)
		}
	}
	if _, err := m.WriteAt([]byte{1}, 8192); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("WriteAt(past the end) = %v, want ErrOutOfRange", err)
	}
	if n, err := m.ReadAt(make([]byte, 10), 8190); n != 2 || err != io.EOF {
		t.Errorf("ReadAt(over the end) = %d, %v; want 2, io.EOF", n, err)
	}
	m.Close()
	if _, err := m.ReadAt(make([]byte, 1), 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReadAt(closed) = %v, want os.ErrClosed", err)
	}
}

func TestSection(t *testing.T) {
	m := NewMemBytes(pattern(1 << 16))
	s, err := Section(m, 4096, 8192)
	if err != nil {
		t.Fatal(err)
	}
	if s.Size() != 8192 {
		t.Errorf("Size() = %d, want 8192", s.Size())
	}
	buf := make([]byte, 100)
	if n, err := s.ReadAt(buf, 8150); n != 42 || err != io.EOF || !bytes.Equal(buf[:42], pattern(1 << 16)[4096+8150:4096+8192]) {
		t.Errorf("ReadAt(over the end) = %d, %v", n, err)
	}
	if _, err := s.WriteAt(buf, 8150); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("WriteAt(over the end) = %v, want ErrOutOfRange", err)
	}
	if err := s.Discard(0, 8193); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("Discard(over the end) = %v, want ErrOutOfRange", err)
	}
	s.Discard(512, 512)
	s.ZeroRange(1024, 512)
	s.(SecureDiscarder).SecureDiscard(0, 8192)
	s.Flush()
	want := []Op{{OpDiscard, 4096 + 512, 512}, {OpZeroRange, 4096 + 1024, 512}, {OpSecureDiscard, 4096, 8192}, {Kind: OpFlush}}
	if got := m.Ops(); !slices.Equal(got, want) {
		t.Errorf("ops through a section = %v, want %v", got, want)
	}
	s.Close()
	if _, err := m.ReadAt(buf, 0); err != nil {
		t.Errorf("closing a section closed the device: %v", err)
	}
	if _, err := Section(m, 1<<16-10, 11); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("Section(past the end) = %v, want ErrOutOfRange", err)
	}
}

// A File over a regular file: sizes, hole punching, zeroing with or
// without the file system's help.
func TestFileRegular(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	const size = 4 << 20
	if err := os.WriteFile(path, pattern(size), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path, os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Size() != size || f.BlockDevice() {
		t.Errorf("Open(file): Size() = %d, BlockDevice() = %v; want %d, false", f.Size(), f.BlockDevice(), size)
	}
	if l, p := f.SectorSizes(); l != 512 || p != 512 {
		t.Errorf("SectorSizes() = %d, %d; want 512, 512", l, p)
	}
	if _, err := f.WriteAt([]byte{1}, size); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("WriteAt(at the end) = %v, want ErrOutOfRange (files never grow)", err)
	}
	want := pattern(size)
	// Punching a hole zeroes, even unaligned.
	if err := f.Discard(1000, 100000); err != nil {
		t.Fatalf("Discard(file) = %v", err)
	}
	clear(want[1000:101000])
	err = f.ZeroRange(1<<20, 1<<20)
	switch {
	case err == nil:
		clear(want[1<<20 : 2<<20])
	case errors.Is(err, ErrNotSupported):
		t.Logf("ZeroRange(file) = %v: this file system has no FALLOC_FL_ZERO_RANGE", err)
	default:
		t.Fatalf("ZeroRange(file) = %v", err)
	}
	if err := f.ZeroRange(100, 512); !errors.Is(err, ErrNotSupported) {
		t.Errorf("ZeroRange(unaligned) = %v, want ErrNotSupported", err)
	}
	if err := f.SecureDiscard(0, 512); !errors.Is(err, ErrNotSupported) {
		t.Errorf("SecureDiscard(file) = %v, want ErrNotSupported", err)
	}
	if err := f.RereadPartitions(); err == nil || !strings.Contains(err.Error(), "BLKRRPART "+path+": not a block device") {
		t.Errorf("RereadPartitions(file) = %v, want an error naming BLKRRPART and the file", err)
	}
	z, err := Zero(context.Background(), f, 3<<20+5, 1<<20-5)
	if err != nil || z.Device+z.Written != 1<<20-5 {
		t.Fatalf("Zero(file) = %+v, %v", z, err)
	}
	clear(want[3<<20+5:])
	if err := f.Flush(); err != nil {
		t.Errorf("Flush(file) = %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("file content after Discard, ZeroRange and Zero is not as expected")
	}
	if fi, _ := os.Stat(path); fi.Size() != size {
		t.Errorf("file size changed to %d", fi.Size())
	}
}

func TestOpenRefuses(t *testing.T) {
	if _, err := Open(t.TempDir(), os.O_RDONLY); err == nil {
		t.Errorf("Open(directory) = nil error")
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing"), os.O_RDONLY); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want ErrNotExist", err)
	}
}
