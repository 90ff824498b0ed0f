package verity

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// goldenSuperblock returns the superblock veritysetup wrote for a golden case.
func goldenSuperblock(t testing.TB, name string) []byte {
	t.Helper()
	area, _ := readGolden(t, name)
	return area[:SuperblockSize]
}

func TestReadSuperblockGolden(t *testing.T) {
	u, _ := ParseUUID(goldenUUID)
	for _, tc := range goldenCases {
		if tc.noSB {
			continue
		}
		b := goldenSuperblock(t, tc.name)
		sb, err := ReadSuperblock(bytes.NewReader(b))
		if err != nil {
			t.Errorf("ReadSuperblock(%s) = %v", tc.name, err)
			continue
		}
		want := &Superblock{UUID: u, Params: tc.p, DataBlocks: uint64(tc.size / int64(tc.p.DataBlockSize))}
		if diff := cmp.Diff(want, sb); diff != "" {
			t.Errorf("ReadSuperblock(%s) (-want +got):\n%s", tc.name, diff)
		}
		out, err := sb.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Errorf("ReadSuperblock(%s).MarshalBinary() = %v, not veritysetup's bytes", tc.name, err)
		}
	}
}

func TestReadSuperblockRejects(t *testing.T) {
	good := goldenSuperblock(t, "sha256-1m")
	mut := func(off int, v byte) []byte { b := bytes.Clone(good); b[off] = v; return b }
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"truncated", good[:511]},
		{"magic", mut(6, 1)},
		{"superblock version", mut(offVersion, 2)},
		{"hash type", mut(offHashType, 2)},
		{"unknown algorithm", mut(offAlgorithm+3, '7')},
		{"empty algorithm", mut(offAlgorithm, 0)},
		{"junk after algorithm", mut(offAlgorithm+20, 'x')},
		{"data block size", mut(offDataBlkSize, 1)},
		{"hash block size", mut(offHashBlkSize+1, 0x30)},
		{"zero data blocks", func() []byte { b := bytes.Clone(good); clear(b[offDataBlocks : offDataBlocks+8]); return b }()},
		{"huge data blocks", mut(offDataBlocks+7, 0x80)},
		{"salt size", mut(offSaltSize+1, 1)},
		{"padding after salt size", mut(offSaltSize+3, 1)},
		{"junk after salt", mut(offSalt+32, 1)},
		{"junk at the end", mut(511, 1)},
	} {
		_, err := ReadSuperblock(bytes.NewReader(tc.b))
		if !errors.Is(err, ErrBadSuperblock) {
			t.Errorf("ReadSuperblock(%s) = %v, want ErrBadSuperblock", tc.name, err)
		}
	}
	if _, err := ReadSuperblock(bytes.NewReader(good[:100])); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ReadSuperblock(truncated) = %v, want io.ErrUnexpectedEOF too", err)
	}
}

// FuzzReadSuperblock feeds the superblock parser arbitrary bytes. A parse
// either fails with ErrBadSuperblock or yields a superblock that encodes
// back to the same bytes.
func FuzzReadSuperblock(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.hash.gz")
	for _, p := range files {
		name := strings.TrimSuffix(filepath.Base(p), ".hash.gz")
		area, _ := readGolden(f, name)
		f.Add(area[:min(len(area), SuperblockSize)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sb, err := ReadSuperblock(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrBadSuperblock) {
				t.Fatalf("ReadSuperblock error %v does not wrap ErrBadSuperblock", err)
			}
			return
		}
		out, err := sb.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of a parsed superblock: %v", err)
		}
		if !bytes.Equal(out, b[:SuperblockSize]) {
			t.Fatalf("ReadSuperblock accepted bytes that do not encode back the same")
		}
	})
}

func TestUUID(t *testing.T) {
	u, err := ParseUUID("6C1F0B2E-5a3d-4e8f-9b71-0d2c4a6e8f13")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := u.String(), "6c1f0b2e-5a3d-4e8f-9b71-0d2c4a6e8f13"; got != want {
		t.Errorf("ParseUUID(...).String() = %s, want %s", got, want)
	}
	for _, s := range []string{"", "6c1f0b2e5a3d4e8f9b710d2c4a6e8f13", "6c1f0b2e-5a3d-4e8f-9b71-0d2c4a6e8f1x", "6c1f0b2e-5a3d-4e8f-9b71+0d2c4a6e8f13"} {
		if _, err := ParseUUID(s); err == nil {
			t.Errorf("ParseUUID(%q) = nil error", s)
		}
	}
	r, err := NewUUID()
	if err != nil {
		t.Fatal(err)
	}
	if s := r.String(); s[14] != '4' || !strings.ContainsRune("89ab", rune(s[19])) {
		t.Errorf("NewUUID() = %s, not a version 4 UUID", s)
	}
}
