package mkfs

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/internal/testtool"
)

// TestExt4 makes file systems over zeros and over random bytes (what a
// blank disk may hold) and has e2fsck, the oracle, check each; dumpe2fs
// then reads back the label and the journal.
func TestExt4(t *testing.T) {
	testtool.Require(t, "e2fsck", "dumpe2fs")
	for _, tc := range []struct {
		name   string
		size   int64
		random bool
	}{
		{"zeros 64 MiB", 64 << 20, false},
		{"random 48 MiB", 48 << 20, true},
		{"zeros 200 MiB", 200 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "data.img")
			f, err := os.Create(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if tc.random {
				b := make([]byte, tc.size)
				rand.Read(b)
				if _, err := f.Write(b); err != nil {
					t.Fatal(err)
				}
			} else if err := f.Truncate(tc.size); err != nil {
				t.Fatal(err)
			}
			if err := Ext4(f, tc.size, "data"); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
				t.Fatalf("e2fsck -fn: %v\n%s", err, out)
			}
			out, err := exec.Command("dumpe2fs", "-h", img).CombinedOutput()
			if err != nil {
				t.Fatalf("dumpe2fs -h: %v\n%s", err, out)
			}
			for _, want := range []string{"Filesystem volume name:   data", "has_journal", "Filesystem state:         clean"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("dumpe2fs -h lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestExt4Refuses(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "small.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Ext4(f, 1<<20, "data"); err == nil || !strings.Contains(err.Error(), "at least") {
		t.Errorf("Ext4(1 MiB) = %v", err)
	}
	if err := Ext4(f, 64<<20, "a-label-far-too-long"); err == nil || !strings.Contains(err.Error(), "label") {
		t.Errorf("Ext4(long label) = %v", err)
	}
}
