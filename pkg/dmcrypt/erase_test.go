package dmcrypt

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// syncCounter is a device that counts its syncs.
type syncCounter struct {
	*os.File
	syncs int
}

func (s *syncCounter) Sync() error { s.syncs++; return s.File.Sync() }

// memDev is a device without Sync.
type memDev []byte

func (m memDev) ReadAt(p []byte, off int64) (int, error)  { return bytes.NewReader(m).ReadAt(p, off) }
func (m memDev) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }

func TestEraseKeyslots(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			path, _ := writeGoldenImage(t, t.TempDir(), tc.name)
			before, _ := os.ReadFile(path)
			h, err := ReadHeader(bytes.NewReader(before), int64(len(before)))
			if err != nil {
				t.Fatal(err)
			}
			end := 2*h.Size + h.Metadata.Config.KeyslotsSize
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			dev := &syncCounter{File: f}
			if err := EraseKeyslots(dev, int64(len(before))); err != nil {
				t.Fatalf("EraseKeyslots() = %v", err)
			}
			if dev.syncs != 4 {
				t.Errorf("EraseKeyslots() synced %d times, want 4 (two passes over two regions)", dev.syncs)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after[:end], make([]byte, end)) {
				t.Errorf("EraseKeyslots() left non-zero bytes in the headers and keyslots [0, %d)", end)
			}
			if !bytes.Equal(after[end:], before[end:]) {
				t.Errorf("EraseKeyslots() changed the data after %d", end)
			}
			if _, err := ReadHeader(bytes.NewReader(after), int64(len(after))); !errors.Is(err, ErrNotLUKS) {
				t.Errorf("ReadHeader(erased) = %v, want ErrNotLUKS", err)
			}
			if err := EraseKeyslots(dev, int64(len(after))); !errors.Is(err, ErrNotLUKS) {
				t.Errorf("EraseKeyslots(erased) = %v, want ErrNotLUKS", err)
			}
		})
	}
}

func TestEraseKeyslotsDamaged(t *testing.T) {
	img, _ := readGolden(t, "pbkdf2-xts256-512")
	img[offCsum] ^= 1
	img[16384+offCsum] ^= 1
	dev := memDev(img)
	if _, err := ReadHeader(dev, int64(len(img))); !errors.Is(err, ErrBadHeader) {
		t.Fatalf("ReadHeader(damaged) = %v, want ErrBadHeader", err)
	}
	if err := EraseKeyslots(dev, int64(len(img))); err != nil {
		t.Fatalf("EraseKeyslots(damaged) = %v", err)
	}
	// Smaller than the fallback: all of it goes.
	if !bytes.Equal(img, make([]byte, len(img))) {
		t.Errorf("EraseKeyslots(damaged header) left non-zero bytes")
	}
}

func TestEraseKeyslotsNotLUKS(t *testing.T) {
	b := bytes.Repeat([]byte{7}, 1<<20)
	dev := memDev(bytes.Clone(b))
	if err := EraseKeyslots(dev, int64(len(b))); !errors.Is(err, ErrNotLUKS) {
		t.Errorf("EraseKeyslots(not LUKS) = %v, want ErrNotLUKS", err)
	}
	if !bytes.Equal(dev, b) {
		t.Errorf("EraseKeyslots(not LUKS) wrote to the device")
	}
}
