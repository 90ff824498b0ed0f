package slot

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testdata/cmdline holds kernel command lines as the bootloaders passed
// them under QEMU (GRUB puts BOOT_IMAGE first; see
// /work/shared/notes/bootloaders-in-qemu.md), plus RAUC's parameter and
// quoting.
func TestParseCmdline(t *testing.T) {
	for _, tc := range []struct {
		file string
		want Name
	}{
		{"grub.txt", "B"},
		{"ebg.txt", "A"},
		{"uboot.txt", "A"},
		{"rauc.txt", "B"},
		{"none.txt", ""},
		{"quoted.txt", "A"},
	} {
		got, err := BootedFromCmdline(filepath.Join("testdata", "cmdline", tc.file))
		if err != nil || got != tc.want {
			t.Errorf("BootedFromCmdline(%s) = %q, %v; want %q", tc.file, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		in   string
		want Name
	}{
		{"", ""},
		{"lifeboat.slot=A lifeboat.slot=B", "B"},
		{"rauc.slot=B lifeboat.slot=A", "A"},
		{"lifeboat.slot=A rauc.slot=B", "A"},
		{"xlifeboat.slot=A", ""},
		{"lifeboat.slot", ""},
		{"lifeboat.slot=", ""},
		{"\tlifeboat.slot=recovery\n", "recovery"},
		{`"lifeboat.slot=A B"`, "A B"},
	} {
		got, err := ParseCmdline(strings.NewReader(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("ParseCmdline(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := ParseCmdline(bytes.NewReader(make([]byte, maxCmdline+1))); err == nil {
		t.Errorf("ParseCmdline(%d bytes) = nil error, want too long", maxCmdline+1)
	}
	if _, err := BootedFromCmdline(filepath.Join(t.TempDir(), "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("BootedFromCmdline(absent) = %v, want not exist", err)
	}
}

func FuzzParseCmdline(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "cmdline", "*.txt"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b), "A")
	}
	f.Fuzz(func(t *testing.T, line, name string) {
		if _, err := ParseCmdline(strings.NewReader(line)); err != nil && len(line) <= maxCmdline {
			t.Fatalf("ParseCmdline(%q) = %v", line, err)
		}
		if !validName(name) || strings.ContainsAny(line, `"`) {
			return
		}
		// A valid name appended last always wins.
		got, err := ParseCmdline(strings.NewReader(line + " lifeboat.slot=" + name))
		if err == nil && got != Name(name) {
			t.Fatalf("ParseCmdline(%q + lifeboat.slot=%s) = %q", line, name, got)
		}
	})
}
