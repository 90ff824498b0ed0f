package reset

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
)

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i%253 + 1) // never zero
	}
	return b
}

// recorder is a progress.Reporter that keeps what it was told.
type recorder struct {
	mu     sync.Mutex
	starts []string
	total  int64
	added  int64
	dones  int
}

func (r *recorder) Start(what string, total int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts, r.total, r.added = append(r.starts, what), total, 0
}
func (r *recorder) Add(n int64) { r.mu.Lock(); r.added += n; r.mu.Unlock() }
func (r *recorder) Done()       { r.mu.Lock(); r.dones++; r.mu.Unlock() }

// knobs are the fields of a blockdev.Mem that say what it cannot do.
type knobs struct{ NoDiscard, NoSecureDiscard, NoZeroRange bool }

func TestWipe(t *testing.T) {
	const size = 10<<20 + 4096
	// Unaligned on purpose: 3584 bytes to the first 4 KiB boundary, 1512
	// after the last.
	const off, n = 1<<20 + 512, 8<<20 + 1000
	for _, tc := range []struct {
		name string
		mem  knobs
		opts []WipeOption
		want WipeStats
	}{
		{
			name: "discard and zero-out",
			want: WipeStats{Bytes: n, Discarded: n, ZeroedByDevice: n - 5096, ZeroedByWriting: 5096},
		},
		{
			name: "secure",
			opts: []WipeOption{Secure()},
			want: WipeStats{Bytes: n, SecureDiscarded: n, ZeroedByDevice: n - 5096, ZeroedByWriting: 5096},
		},
		{
			name: "secure not supported",
			mem:  knobs{NoSecureDiscard: true},
			opts: []WipeOption{Secure()},
			want: WipeStats{Bytes: n, Discarded: n, ZeroedByDevice: n - 5096, ZeroedByWriting: 5096},
		},
		{
			name: "nothing supported",
			mem:  knobs{NoDiscard: true, NoSecureDiscard: true, NoZeroRange: true},
			opts: []WipeOption{Secure(), Verify()},
			want: WipeStats{Bytes: n, ZeroedByWriting: n, Verified: n},
		},
		{
			name: "verified",
			opts: []WipeOption{Verify()},
			want: WipeStats{Bytes: n, Discarded: n, ZeroedByDevice: n - 5096, ZeroedByWriting: 5096, Verified: n},
		},
	} {
		m := blockdev.NewMemBytes(pattern(size))
		m.NoDiscard, m.NoSecureDiscard, m.NoZeroRange = tc.mem.NoDiscard, tc.mem.NoSecureDiscard, tc.mem.NoZeroRange
		rec := &recorder{}
		got, err := Wipe(context.Background(), m, off, n, append(tc.opts, WithProgress(rec))...)
		if err != nil {
			t.Errorf("Wipe(%s) = %v", tc.name, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Wipe(%s) = %+v, want %+v", tc.name, got, tc.want)
		}
		want := pattern(size)
		clear(want[off : off+n])
		if !bytes.Equal(m.Bytes(), want) {
			t.Errorf("Wipe(%s): the device is not the pattern with exactly [%d, +%d) zeroed", tc.name, off, n)
		}
		if rec.added != n || rec.dones != len(rec.starts) || rec.starts[0] != "wipe" {
			t.Errorf("Wipe(%s) progress: starts %v, added %d, dones %d; want %d bytes, each start done", tc.name, rec.starts, rec.added, rec.dones, int64(n))
		}
		ops := m.Ops()
		if ops[len(ops)-1].Kind != blockdev.OpFlush {
			t.Errorf("Wipe(%s) ops end with %v, want a flush", tc.name, ops[len(ops)-1])
		}
	}
}

// liar is a device whose zero-out and discards succeed but change nothing.
type liar struct{ *blockdev.Mem }

func (l liar) ZeroRange(off, n int64) error { return nil }

func TestWipeVerifyCatchesLyingDevice(t *testing.T) {
	m := blockdev.NewMemBytes(pattern(1 << 20))
	_, err := Wipe(context.Background(), liar{m}, 0, 1<<20, Verify())
	if !errors.Is(err, ErrNotErased) {
		t.Errorf("Wipe(lying device, Verify) = %v, want ErrNotErased", err)
	}
	if _, err := Wipe(context.Background(), liar{blockdev.NewMemBytes(pattern(1 << 20))}, 0, 1<<20); err != nil {
		t.Errorf("Wipe(lying device) = %v; without Verify it cannot know", err)
	}
}

func TestWipeErrors(t *testing.T) {
	m := blockdev.NewMem(1 << 20)
	if _, err := Wipe(context.Background(), m, 1<<20-1, 2); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Errorf("Wipe(past the end) = %v, want ErrOutOfRange", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Wipe(ctx, m, 0, 1<<20); !errors.Is(err, context.Canceled) {
		t.Errorf("Wipe(cancelled) = %v, want context.Canceled", err)
	}
	m.Close()
	if _, err := Wipe(context.Background(), m, 0, 1<<20); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Wipe(closed device) = %v, want os.ErrClosed", err)
	}
}

// A Wipe of 64 MiB writing zeros holds at most one 1 MiB buffer and one
// 4 MiB verify buffer.
func TestWipeBoundedMemory(t *testing.T) {
	m := blockdev.NewMem(64 << 20)
	m.NoZeroRange = true
	allocs := testing.AllocsPerRun(1, func() {
		if _, err := Wipe(context.Background(), m, 0, 64<<20, Verify()); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 200 {
		t.Errorf("Wipe(64 MiB) made %v allocations, want a few per piece", allocs)
	}
}

// fakeLUKS is a KeyEraser for a fake volume: the LUKS magics at 0 and 16
// KiB, key material up to 1 MiB. Erase zeroes [0, eraseEnd).
type fakeLUKS struct {
	eraseEnd  int64
	erases    int
	failErase error
}

const keyAreaEnd = 1 << 20

func newVolume(t *testing.T) *blockdev.Mem {
	t.Helper()
	m := blockdev.NewMemBytes(pattern(8 << 20))
	m.WriteAt([]byte("LUKS\xba\xbe"), 0)
	m.WriteAt([]byte("SKUL\xba\xbe"), 16<<10)
	return m
}

func (f *fakeLUKS) EraseKeyslots(dev ReadWriterAt, size int64) error {
	f.erases++
	if f.failErase != nil {
		return f.failErase
	}
	_, err := dev.WriteAt(make([]byte, f.eraseEnd), 0)
	return err
}

func (f *fakeLUKS) Erased(dev io.ReaderAt, size int64) (bool, error) {
	b := make([]byte, keyAreaEnd)
	if _, err := dev.ReadAt(b, 0); err != nil {
		return false, err
	}
	return bytes.Equal(b[:6], make([]byte, 6)), nil // only looks at the primary
}

func sealedFS(t *testing.T) *durable.Crash {
	t.Helper()
	c := durable.NewCrash()
	if err := durable.MkdirAll(c, "var/lib/lifeboat", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := durable.WriteFile(c, "var/lib/lifeboat/data.sealed", []byte("sealed blob"), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCryptoErase(t *testing.T) {
	vol := newVolume(t)
	keys := &fakeLUKS{eraseEnd: keyAreaEnd}
	c := sealedFS(t)
	sealed := SealedKey{FS: c, Name: "var/lib/lifeboat/data.sealed"}
	st, err := CryptoErase(context.Background(), vol, keys, sealed)
	if err != nil {
		t.Fatalf("CryptoErase = %v", err)
	}
	if st != (CryptoStats{SealedKeyRemoved: true}) || keys.erases != 1 {
		t.Errorf("CryptoErase = %+v after %d erases, want the sealed key removed after one", st, keys.erases)
	}
	want := pattern(8 << 20)
	clear(want[:keyAreaEnd])
	if !bytes.Equal(vol.Bytes(), want) {
		t.Errorf("CryptoErase changed more than the key area, or less")
	}
	if ops := vol.Ops(); len(ops) == 0 || ops[0].Kind != blockdev.OpFlush {
		t.Errorf("CryptoErase ops = %v, want a flush", ops)
	}
	// The removal survives a power cut right after.
	c2 := c.Reboot()
	if _, err := c2.ReadFile(sealed.Name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after CryptoErase and a power cut, the sealed key: %v, want gone", err)
	}
	sealed.FS = c2

	// Again, as after a power cut: nothing left to do, and that is fine.
	st, err = CryptoErase(context.Background(), vol, keys, sealed)
	if err != nil || st != (CryptoStats{AlreadyErased: true}) || keys.erases != 1 {
		t.Errorf("CryptoErase(again) = %+v, %v after %d erases; want already erased, no new erase", st, err, keys.erases)
	}
}

func TestCryptoEraseCatchesLeftovers(t *testing.T) {
	// An eraser that forgets the secondary header.
	if _, err := CryptoErase(context.Background(), newVolume(t), &fakeLUKS{eraseEnd: 4096}, SealedKey{}); !errors.Is(err, ErrNotErased) {
		t.Errorf("CryptoErase(secondary header left) = %v, want ErrNotErased", err)
	}
	// An eraser that erases nothing: its own check says so.
	if _, err := CryptoErase(context.Background(), newVolume(t), &fakeLUKS{eraseEnd: 0}, SealedKey{}); !errors.Is(err, ErrNotErased) {
		t.Errorf("CryptoErase(nothing erased) = %v, want ErrNotErased", err)
	}
	// A sealed key that cannot be removed.
	c := sealedFS(t)
	c.CutAfter(c.Steps())
	_, err := CryptoErase(context.Background(), newVolume(t), &fakeLUKS{eraseEnd: keyAreaEnd}, SealedKey{FS: c, Name: "var/lib/lifeboat/data.sealed"})
	if !errors.Is(err, durable.ErrPowerCut) {
		t.Errorf("CryptoErase(sealed key on a dead FS) = %v, want ErrPowerCut", err)
	}
	// A failing eraser.
	boom := errors.New("boom")
	if _, err := CryptoErase(context.Background(), newVolume(t), &fakeLUKS{failErase: boom}, SealedKey{}); !errors.Is(err, boom) {
		t.Errorf("CryptoErase(failing eraser) = %v, want boom", err)
	}
	// No sealed key file: nothing to remove, not an error.
	c = durable.NewCrash()
	st, err := CryptoErase(context.Background(), newVolume(t), &fakeLUKS{eraseEnd: keyAreaEnd}, SealedKey{FS: c, Name: "missing.sealed"})
	if err != nil || st.SealedKeyRemoved {
		t.Errorf("CryptoErase(no sealed key file) = %+v, %v", st, err)
	}
}

func TestKeyEraserFuncs(t *testing.T) {
	var erased, checked bool
	k := KeyEraserFuncs{
		Erase: func(dev interface {
			io.ReaderAt
			io.WriterAt
		}, size int64) error {
			erased = true
			return nil
		},
		Check: func(dev io.ReaderAt, size int64) (bool, error) { checked = true; return true, nil },
	}
	k.EraseKeyslots(blockdev.NewMem(1), 1)
	k.Erased(blockdev.NewMem(1), 1)
	if !erased || !checked {
		t.Errorf("KeyEraserFuncs did not call its functions")
	}
}
