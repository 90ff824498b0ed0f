package ebg

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/lifeboat-update/lifeboat/internal/testtool"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
)

func needTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (Debian package %s): %v", name, pkg, err)
		}
		t.Skipf("%s not installed (Debian package %s), cannot build a FAT image", name, pkg)
	}
}

func sh(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
	return out
}

// TestFAT makes FAT12, 16 and 32 volumes with mkfs.fat holding a
// BGENV.DAT made by bg_setenv (copied in with mcopy, fragmented), reads it with OpenFAT, rewrites it in place through Slots,
// and reads the result back with mcopy.
func TestFAT(t *testing.T) {
	needTool(t, "mkfs.fat", "dosfstools")
	needTool(t, "mcopy", "mtools")
	for _, tc := range []struct {
		fat  string
		kib  int
		args []string
		frag bool // mtools fills the hole (not on FAT32: it allocates after the FSInfo hint)
	}{
		{"12", 2048, nil, true},
		{"16", 48 * 1024, nil, true},
		{"32", 64 * 1024, []string{"-s", "1"}, false},
	} {
		t.Run("FAT"+tc.fat, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "part.fat")
			args := append([]string{"-F", tc.fat, "-n", "BOOT1", "-C", img}, tc.args...)
			sh(t, "mkfs.fat", append(args, strconv.Itoa(tc.kib))...)
			// A hole before another file: the env fills the hole, then goes
			// on after that file, in two extents.
			small := filepath.Join(dir, "small")
			os.WriteFile(small, bytes.Repeat([]byte("x"), 3000), 0o644)
			sh(t, "mcopy", "-i", img, small, "::SMALL.BIN")
			sh(t, "mcopy", "-i", img, small, "::PAD.BIN")
			sh(t, "mdel", "-i", img, "::SMALL.BIN")
			env := filepath.Join(dir, "BGENV.DAT")
			b := testtool.ReadGzip(t, filepath.Join("testdata", "slot-b-installed-uservars.dat.gz"))
			os.WriteFile(env, b, 0o644)
			sh(t, "mcopy", "-i", img, env, "::BGENV.DAT")
			sh(t, "mcopy", "-i", img, env, "::vmlinuz")

			dev, err := blockdev.Open(img, os.O_RDWR)
			if err != nil {
				t.Fatal(err)
			}
			defer dev.Close()
			f, err := OpenFAT(dev, "bgenv.dat")
			if err != nil {
				t.Fatalf("OpenFAT(%s) = %v", img, err)
			}
			if tc.frag && len(f.extents) < 2 {
				t.Errorf("OpenFAT(FAT%s): %d extents, want a fragmented file", tc.fat, len(f.extents))
			}
			got := make([]byte, f.Size())
			if _, err := f.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, b) {
				t.Fatalf("OpenFAT(FAT%s).ReadAt differs from the file mcopy wrote", tc.fat)
			}
			if _, err := OpenFAT(dev, "NOPE.DAT"); !errors.Is(err, ErrFAT) {
				t.Errorf("OpenFAT(NOPE.DAT) = %v, want %v", err, ErrFAT)
			}

			a := NewMem("BOOT0", cfg(1, OK, "L:BOOT0:vmlinuz"))
			s, err := NewSlots([]SlotPart{{"A", a}, {"B", f}})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := s.MarkBad(ctx, "B"); err != nil {
				t.Fatalf("MarkBad(B) = %v", err)
			}
			if err := s.Try(ctx, "B", 1); err != nil {
				t.Fatalf("Try(B) = %v", err)
			}
			out := filepath.Join(dir, "out.dat")
			sh(t, "mcopy", "-n", "-i", img, "::BGENV.DAT", out)
			c, err := ParseEnv(bytes.NewReader(mustRead(t, out)))
			if err != nil {
				t.Fatalf("ParseEnv(mcopy of BGENV.DAT after Try) = %v", err)
			}
			want := goldenCases[1].want()
			want.Revision = 2
			if !c.Equal(want) {
				t.Errorf("BGENV.DAT after MarkBad, Try = %s, want %s", descr([]*Config{c}), descr([]*Config{want}))
			}
			if k := mustReadMcopy(t, img, "::vmlinuz", dir); !bytes.Equal(k, b) {
				t.Errorf("another file changed")
			}
			if out, err := exec.Command("fsck.fat", "-n", img).CombinedOutput(); err != nil {
				t.Errorf("fsck.fat -n after writes: %v\n%s", err, out)
			}
		})
	}
}

func mustReadMcopy(t *testing.T, img, name, dir string) []byte {
	t.Helper()
	out := filepath.Join(dir, "mcopy.out")
	sh(t, "mcopy", "-n", "-o", "-i", img, name, out)
	return mustRead(t, out)
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
