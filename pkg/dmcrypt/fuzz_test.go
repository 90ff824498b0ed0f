package dmcrypt

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// fuzzLimits keep the KDFs of fuzzed headers cheap.
var fuzzLimits = Limits{MaxPBKDF2Iterations: 2000, MaxArgon2Memory: 256, MaxArgon2Time: 4, MaxArgon2Work: 1024, MaxArgon2CPUs: 4}

// zeroDev is a device of size zero bytes.
type zeroDev int64

func (z zeroDev) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(z) {
		return 0, errors.New("read past the end")
	}
	clear(p)
	return len(p), nil
}

// FuzzReadHeader reads fuzzed headers (the golden volumes' metadata areas
// from testdata/) on a device of a fuzzed size, and unlocks what parses.
func FuzzReadHeader(f *testing.F) {
	for _, tc := range goldenCases {
		img, _ := readGolden(f, tc.name)
		f.Add(img[:32<<10], int64(len(img)))
	}
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		dev := bytes.NewReader(b)
		h, err := ReadHeader(dev, size)
		if err != nil {
			return
		}
		useHeader(t, h, dev, size)
	})
}

// FuzzParseMetadata parses fuzzed JSON metadata (the golden volumes' from
// testdata/), which FuzzReadHeader rarely reaches past the checksum.
func FuzzParseMetadata(f *testing.F) {
	for _, tc := range goldenCases {
		img, _ := readGolden(f, tc.name)
		f.Add(jsonText(img, 0), int64(len(img)))
	}
	f.Fuzz(func(t *testing.T, js []byte, size int64) {
		md, err := parseMetadata(js, 16384, size)
		if err != nil {
			return
		}
		useHeader(t, &Header{Size: 16384, Metadata: *md}, zeroDev(size), size)
	})
}

func useHeader(t *testing.T, h *Header, dev interface {
	ReadAt([]byte, int64) (int, error)
}, size int64) {
	for _, ks := range h.Metadata.Keyslots {
		if ks.Area.Offset+ks.Area.Size > uint64(size) {
			t.Fatalf("keyslot area [%d, +%d) past the device's %d bytes", ks.Area.Offset, ks.Area.Size, size)
		}
	}
	_, seg, err := h.CryptSegment()
	if err != nil {
		return
	}
	key, err := h.Unlock(context.Background(), dev, []byte("passphrase"), WithLimits(fuzzLimits))
	if err == nil {
		t.Logf("fuzzed header opened with a key of %d bytes", len(key))
	} else {
		key = make(VolumeKey, 32)
	}
	if tg, err := Table(seg, key, "/dev/vda", size); err == nil && tg.Length == 0 {
		t.Fatalf("Table(%+v) = an empty target", seg)
	}
}
