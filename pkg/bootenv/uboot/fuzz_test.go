package uboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/internal/testtool"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseEnv feeds ReadImage hostile copies, single and redundant.
// Whatever it accepts must encode (unless escaping makes it too large for
// the same size) and read back to the same variables.
func FuzzParseEnv(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "*.img.gz"))
	for _, p := range paths {
		b := testtool.ReadGzip(f, p)
		redundant := strings.Contains(p, "-r") || strings.Contains(p, "redundant")
		f.Add(b[:goldenSize], redundant)
	}
	for _, d := range []string{"a=1\x00\x00", "=x\x00", " #c\x00a\x00b=\\\x00", "p=a\\\\b\x00a=\x00"} {
		f.Add(rawImage(d, 64, false, 0, 0), false)
		f.Add(rawImage(d, 64, true, 3, 0xff), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, redundant bool) {
		size := int64(len(data))
		ReadImage(bytes.NewReader(data), size, redundant)
		// Past the CRC: fix it, so that the import is what is fuzzed.
		if size <= headerSize(redundant) || size > MaxSize {
			return
		}
		data = append([]byte(nil), data...)
		binary.LittleEndian.PutUint32(data, crc32.ChecksumIEEE(data[headerSize(redundant):]))
		im, err := ReadImage(bytes.NewReader(data), size, redundant)
		if err != nil {
			if !errors.Is(err, ErrImport) && size > headerSize(redundant)+1 {
				t.Fatalf("ReadImage() with a good CRC = %v, want ErrImport or success", err)
			}
			return
		}
		for k, v := range im.Vars {
			if err := CheckVar(k, v); err != nil || v == "" {
				t.Fatalf("ReadImage() returned variable %q=%q, which U-Boot cannot hold: %v", k, v, err)
			}
		}
		b, err := im.Encode(size)
		if errors.Is(err, ErrTooLarge) {
			return
		}
		if err != nil {
			t.Fatalf("Encode(ReadImage()) = %v", err)
		}
		back, err := ReadImage(bytes.NewReader(b), size, redundant)
		if err != nil {
			t.Fatalf("ReadImage(Encode(ReadImage())) = %v", err)
		}
		if diff := cmp.Diff(im, back); diff != "" {
			t.Fatalf("ReadImage(Encode(ReadImage())) differs (-first +second):\n%s", diff)
		}
	})
}

// FuzzParseConfig feeds ParseConfig hostile fw_env.config text. Whatever
// it accepts must be valid and survive String and ParseConfig again.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"flash1.img 0x0 0x40000\n",
		"/dev/mtd1 0x0 0x40000 0x40000 1\n/dev/mtd1 0x40000 0x40000 0x40000 1\n",
		"# comment\n/dev/mmcblk0 -0x4000 4000 200 20 1 # tail\n/dev/mmcblk0 010 4000\n",
		"dev 0 0x1000\ndev 0x800 0x1000\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConfig(strings.NewReader(s))
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("ParseConfig(%q) = %v, not wrapping ErrConfig", s, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig(%q) accepted a config Validate refuses: %v", s, err)
		}
		again, err := ParseConfig(strings.NewReader(c.String()))
		if err != nil {
			t.Fatalf("ParseConfig(%q) = %v after String of %v", c.String(), err, c)
		}
		if diff := cmp.Diff(c, again); diff != "" {
			t.Fatalf("ParseConfig(String()) differs (-first +second):\n%s", diff)
		}
	})
}
