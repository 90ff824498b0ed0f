package demo

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestReorder checks Options.Reordered's tree: the shared payload files
// swapped end for end, release.bin kept, and /boot/.reordered of
// ReorderShift bytes.
func TestReorder(t *testing.T) {
	read := func(dir, name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	plain, moved := t.TempDir(), t.TempDir()
	const files = 5
	for _, dir := range []string{plain, moved} {
		if err := os.Mkdir(filepath.Join(dir, "boot"), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := WritePayload(dir, 7, "3", files<<20, 4096); err != nil {
			t.Fatal(err)
		}
	}
	if err := reorder(moved, 7); err != nil {
		t.Fatal(err)
	}
	base := func(i int) string { return fmt.Sprintf("%s/base-%02d.bin", PayloadDir, i) }
	for i := range files {
		if got, want := read(moved, base(i)), read(plain, base(files-1-i)); !bytes.Equal(got, want) {
			t.Errorf("reordered %s does not hold what %s holds", base(i), base(files-1-i))
		}
	}
	if !bytes.Equal(read(moved, PayloadDir+"/release.bin"), read(plain, PayloadDir+"/release.bin")) {
		t.Error("reorder changed release.bin")
	}
	if n := len(read(moved, "boot/.reordered")); n != ReorderShift {
		t.Errorf("boot/.reordered is %d bytes, want %d", n, ReorderShift)
	}
	left, _ := filepath.Glob(filepath.Join(moved, filepath.FromSlash(PayloadDir), "*.swap"))
	if len(left) != 0 {
		t.Errorf("reorder left %v", left)
	}
}
