package ebg

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"path/filepath"
	"testing"

	"github.com/lifeboat-update/lifeboat/internal/testtool"
)

// FuzzParseEnv feeds ParseEnv and the user variable decoder arbitrary
// bytes, seeded from bg_setenv's files in testdata. Inputs are fixed up
// with a valid CRC half of the time, so that the decoders behind the CRC
// are reached; whatever parses must encode back to the same config.
func FuzzParseEnv(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.dat.gz"))
	if len(seeds) == 0 {
		f.Fatal("no seeds in testdata/*.dat.gz")
	}
	for _, p := range seeds {
		b := testtool.ReadGzip(f, p)
		head := bytes.TrimRight(b[:offCRC], "\x00")
		f.Add(head, true)
		f.Add(head, false)
	}
	f.Fuzz(func(t *testing.T, head []byte, fixCRC bool) {
		// Fuzz the head (fields and the start of the user area); the rest
		// of the file is zeros, as in most real files.
		b := make([]byte, Size)
		copy(b, head)
		if fixCRC {
			binary.LittleEndian.PutUint32(b[offCRC:], crc32.ChecksumIEEE(b[:offCRC]))
		}
		c, err := ParseEnv(bytes.NewReader(b))
		if err != nil {
			return
		}
		vars, uerr := c.UserVars()
		VarsOf(c)
		enc, err := c.MarshalBinary()
		if err != nil {
			// Only strings that decoded to more than StringLength-1 UTF-16
			// units (invalid surrogates re-encode as one unit each, so none).
			t.Fatalf("MarshalBinary(ParseEnv(...)) = %v", err)
		}
		c2, err := ParseEnv(bytes.NewReader(enc))
		if err != nil || !c2.Equal(c) {
			t.Fatalf("ParseEnv(MarshalBinary(c)) = %+v, %v, want %+v", c2, err, c)
		}
		if uerr == nil {
			d := c.Clone()
			if err := d.SetUserVars(vars); err != nil {
				t.Fatalf("SetUserVars(UserVars()) = %v", err)
			}
			again, err := d.UserVars()
			if err != nil || len(again) != len(vars) {
				t.Fatalf("UserVars(SetUserVars(%d vars)) = %d vars, %v", len(vars), len(again), err)
			}
		}
	})
}
