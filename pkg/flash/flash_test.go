package flash

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteParseCheck(t *testing.T) {
	src := filepath.Join(t.TempDir(), "esp.fat")
	img := bytes.Repeat([]byte("FAT!"), 3000)
	if err := os.WriteFile(src, img, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Write(dir, "qemu-x86_64", map[string]string{"esp": src}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "flash", "flash.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	im, ok := m.Image("esp")
	if !ok || m.Board != "qemu-x86_64" || im.Size != int64(len(img)) {
		t.Fatalf("manifest %+v, want board qemu-x86_64 and esp of %d bytes", m, len(img))
	}
	copied, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(ImageName("esp"))))
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Check(copied); err != nil {
		t.Errorf("Check(the copied image) = %v", err)
	}
	copied[100] ^= 1
	if err := im.Check(copied); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "flash/esp.img hashes to") {
		t.Errorf("Check(a flipped byte) = %v, want ErrInvalid naming the hash", err)
	}
	if err := im.Check(copied[1:]); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "11999 bytes, the manifest says 12000") {
		t.Errorf("Check(a short image) = %v, want ErrInvalid naming the sizes", err)
	}
	if _, ok := m.Image("boot"); ok {
		t.Error(`Image("boot") found an image the manifest does not list`)
	}
}

func TestParseRejects(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "flash.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(good); err != nil {
		t.Fatalf("Parse(golden) = %v", err)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown field", `"size"`, `"bytes"`, "unknown field"},
		{"no board", `"qemu-x86_64"`, `""`, "no board"},
		{"label", `"label": "esp"`, `"label": "../esp"`, `label "../esp"`},
		{"size", `"size": 67108864`, `"size": 0`, "size 0"},
		{"sha256", `"sha256": "3b`, `"sha256": "3B`, "sha256"},
		{"twice", `"label": "boot"`, `"label": "esp"`, "given twice"},
		{"trailing data", "]\n}\n", "]\n}{}", "data after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := strings.Replace(string(good), tc.old, tc.new, 1)
			if b == string(good) {
				t.Fatalf("%q not in the golden file", tc.old)
			}
			if _, err := Parse([]byte(b)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

// FuzzParse: the manifest comes from a USB stick or the network. Whatever
// Parse accepts is valid.
func FuzzParse(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "flash.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"board":"b","images":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid manifest: %v", err)
		}
	})
}
