package flash

import (
	"bytes"
	"errors"
	"io"
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
	stored, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(ImageName("esp"))))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(stored)) != im.Stored || im.Stored >= im.Size/10 {
		t.Errorf("stored %d bytes (manifest: %d) for a %d-byte image of a repeated pattern: not compressed", len(stored), im.Stored, im.Size)
	}
	if err := im.Verify(stored); err != nil {
		t.Errorf("Verify(the stored image) = %v", err)
	}
	r, err := im.Decompress(stored)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, img) {
		t.Errorf("Decompress(the stored image) read %d bytes, %v; want the image", len(got), err)
	}
	r.Close()
	other := im
	other.SHA256 = strings.Repeat("0", 64)
	if err := other.Verify(stored); !errors.Is(err, ErrBadImage) || !strings.Contains(err.Error(), "flash/esp.img.zst: the image hashes to") {
		t.Errorf("Verify(another hash) = %v, want ErrBadImage naming the hash", err)
	}
	other = im
	other.Size--
	if err := other.Verify(stored); !errors.Is(err, ErrBadImage) || !strings.Contains(err.Error(), "holds more than the 11999 bytes the manifest says") {
		t.Errorf("Verify(a smaller size) = %v, want ErrBadImage naming the size", err)
	}
	if r, err := other.Decompress(stored); err != nil {
		t.Error(err)
	} else if n, err := io.Copy(io.Discard, r); n != 11999 || !errors.Is(err, ErrBadImage) {
		t.Errorf("Decompress(a smaller size) read %d bytes, %v; want 11999 and ErrBadImage", n, err)
	}
	other = im
	other.Size++
	if err := other.Verify(stored); !errors.Is(err, ErrBadImage) || !strings.Contains(err.Error(), "holds 12000 bytes, the manifest says 12001") {
		t.Errorf("Verify(a larger size) = %v, want ErrBadImage naming the sizes", err)
	}
	if err := im.Verify(stored[:len(stored)-1]); !errors.Is(err, ErrBadImage) {
		t.Errorf("Verify(a truncated file) = %v, want ErrBadImage", err)
	}
	bad := bytes.Clone(stored)
	bad[len(bad)/2] ^= 0xff
	if err := im.Verify(bad); !errors.Is(err, ErrBadImage) {
		t.Errorf("Verify(a flipped byte) = %v, want ErrBadImage", err)
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
	withServer := strings.Replace(string(good), `"board": "qemu-x86_64"`, `"board": "qemu-x86_64", "server": "https://fleet.example/"`, 1)
	if m, err := Parse([]byte(withServer)); err != nil || m.Server != "https://fleet.example/" {
		t.Errorf("Parse(with a server) = %+v, %v", m, err)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown field", `"size"`, `"bytes"`, "unknown field"},
		{"no board", `"qemu-x86_64"`, `""`, "no board"},
		{"label", `"label": "esp"`, `"label": "../esp"`, `label "../esp"`},
		{"size", `"size": 67108864`, `"size": 0`, "size 0"},
		{"sha256", `"sha256": "3b`, `"sha256": "3B`, "sha256"},
		{"twice", `"label": "boot"`, `"label": "esp"`, "given twice"},
		{"stored size", `"stored_size": 4242`, `"stored_size": -1`, "stored_size -1"},
		{"trailing data", "]\n}\n", "]\n}{}", "data after"},
		{"server", `"board": "qemu-x86_64"`, `"board": "qemu-x86_64", "server": "fleet.example:8080"`, `server "fleet.example:8080": want an http or https URL`},
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
	f.Add([]byte(`{"board":"b","images":[],"server":"https://fleet.example/"}`))
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

// FuzzVerify: the stored image comes from a USB stick or the network.
// Verify never decompresses past the size, and accepts only the image.
func FuzzVerify(f *testing.F) {
	img := bytes.Repeat([]byte("FAT!"), 3000)
	src := filepath.Join(f.TempDir(), "esp.fat")
	if err := os.WriteFile(src, img, 0o644); err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	if err := Write(dir, "b", map[string]string{"esp": src}); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(ManifestName)))
	if err != nil {
		f.Fatal(err)
	}
	m, err := Parse(b)
	if err != nil {
		f.Fatal(err)
	}
	stored, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(ImageName("esp"))))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(stored)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, stored []byte) {
		im := m.Images[0]
		im.Stored = int64(len(stored))
		err := im.Verify(stored)
		if err != nil && !errors.Is(err, ErrBadImage) {
			t.Fatalf("Verify = %v, want nil or ErrBadImage", err)
		}
		if err == nil {
			r, err := im.Decompress(stored)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, img) {
				t.Fatalf("Verify accepted bytes that are not the image (%d bytes, %v)", len(got), err)
			}
		}
	})
}
