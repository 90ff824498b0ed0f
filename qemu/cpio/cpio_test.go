package cpio

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "regenerate testdata/golden.cpio with the real cpio")

// goldenEntry is one entry of testdata/golden.cpio.
type goldenEntry struct {
	name   string
	mode   uint32
	data   string // contents, or the symlink target
	isLink bool
	nlink  uint32
}

var goldenEntries = []goldenEntry{
	{name: "dir", mode: TypeDir | 0o755, nlink: 3}, // with dir/sub
	{name: "dir/f", mode: TypeReg | 0o644, data: "hello\n"},
	{name: "dir/empty", mode: TypeReg | 0o600},
	{name: "x", mode: TypeReg | 0o755, data: "abc"},
	{name: "dir/sub", mode: TypeDir | 0o700},
	{name: "dir/sub/four", mode: TypeReg | 0o644, data: "four"},
	{name: "link", mode: TypeSymlink | 0o777, data: "dir/f", isLink: true},
}

const goldenMtime = 1000

// writeGolden writes goldenEntries with our Writer.
func writeGolden(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, e := range goldenEntries {
		h := &Header{Name: e.name, Mode: e.mode, Mtime: goldenMtime, Size: int64(len(e.data)), Nlink: e.nlink}
		if err := w.WriteHeader(h); err != nil {
			t.Fatalf("WriteHeader(%q) = %v", e.name, err)
		}
		if _, err := w.Write([]byte(e.data)); err != nil {
			t.Fatalf("Write(%q) = %v", e.name, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	return buf.Bytes()
}

// realCPIO makes the same archive with `cpio -o -H newc --reproducible`.
func realCPIO(t *testing.T) []byte {
	t.Helper()
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skipf("cpio(1) not installed (Debian package cpio): %v", err)
	}
	dir := t.TempDir()
	var list []string
	for _, e := range goldenEntries {
		p := filepath.Join(dir, e.name)
		var err error
		switch {
		case e.isLink:
			err = os.Symlink(e.data, p)
		case e.mode&typeMask == TypeDir:
			err = os.Mkdir(p, 0o700)
		default:
			err = os.WriteFile(p, []byte(e.data), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, e.name)
	}
	// Permissions and times last, deepest first, so that creating
	// children changes neither.
	for i := len(goldenEntries) - 1; i >= 0; i-- {
		e := goldenEntries[i]
		p := filepath.Join(dir, e.name)
		if !e.isLink {
			if err := os.Chmod(p, os.FileMode(e.mode&0o777)); err != nil {
				t.Fatal(err)
			}
		}
		tv := []unix.Timeval{{Sec: goldenMtime}, {Sec: goldenMtime}}
		if err := unix.Lutimes(p, tv); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("cpio", "-o", "-H", "newc", "--reproducible", "-R", "0:0", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(strings.Join(list, "\n") + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -o: %v", err)
	}
	return out
}

func TestGolden(t *testing.T) {
	golden := filepath.Join("testdata", "golden.cpio")
	if *update {
		if err := os.WriteFile(golden, realCPIO(t), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got := writeGolden(t); !bytes.Equal(got, want) {
		t.Errorf("Writer output (%d bytes) differs from %s (%d bytes) made by cpio -o -H newc --reproducible", len(got), golden, len(want))
	}
}

// TestRealCPIOExtracts has the real cpio(1) unpack what the Writer made.
func TestRealCPIOExtracts(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skipf("cpio(1) not installed (Debian package cpio): %v", err)
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	big := bytes.Repeat([]byte("0123456789abcdef"), 4097) // not a multiple of 4 after the name
	steps := []func() error{
		func() error { return w.WriteDir("bin", 0o755) },
		func() error { return w.WriteFile("bin/big", 0o755, big[:len(big)-1]) },
		func() error { return w.CopyFile("/abs", 0o644, strings.NewReader("from a reader"), 13) },
		func() error { return w.WriteSymlink("bin/sh", "big") },
		func() error { return w.Close() },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-i", "-d", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "bin/big"))
	if err != nil || !bytes.Equal(got, big[:len(big)-1]) {
		t.Errorf("bin/big = %d bytes, %v; want %d bytes", len(got), err, len(big)-1)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "abs")); string(got) != "from a reader" {
		t.Errorf("abs = %q, %v; want %q", got, err, "from a reader")
	}
	if got, err := os.Readlink(filepath.Join(dir, "bin/sh")); got != "big" {
		t.Errorf("Readlink(bin/sh) = %q, %v; want %q", got, err, "big")
	}
	if fi, err := os.Stat(filepath.Join(dir, "bin/big")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("Stat(bin/big) = %v, %v; want mode 0755", fi, err)
	}
}

func TestCharDevHeader(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteCharDev("dev/console", 0o600, 5, 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// c_mode, then c_rdevmajor and c_rdevminor at fields 11 and 12.
	hdr := buf.String()[:110]
	if got, want := hdr[14:22], "00002180"; got != want {
		t.Errorf("c_mode = %s, want %s", got, want)
	}
	if got, want := hdr[78:94], "0000000500000001"; got != want {
		t.Errorf("c_rdevmajor, c_rdevminor = %s, want %s", got, want)
	}
	if buf.Len()%512 != 0 {
		t.Errorf("archive length %d, want a multiple of 512", buf.Len())
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		run  func(w *Writer) error
	}{
		{"empty name", func(w *Writer) error { return w.WriteDir("", 0o755) }},
		{"trailer name", func(w *Writer) error { return w.WriteDir("TRAILER!!!", 0o755) }},
		{"duplicate", func(w *Writer) error {
			if err := w.WriteDir("a", 0o755); err != nil {
				return nil
			}
			return w.WriteDir("/a", 0o755)
		}},
		{"short entry", func(w *Writer) error {
			if err := w.WriteHeader(&Header{Name: "f", Mode: TypeReg, Size: 3}); err != nil {
				return nil
			}
			return w.WriteDir("d", 0o755)
		}},
		{"short at close", func(w *Writer) error {
			if err := w.WriteHeader(&Header{Name: "f", Mode: TypeReg, Size: 3}); err != nil {
				return nil
			}
			return w.Close()
		}},
		{"copy short", func(w *Writer) error { return w.CopyFile("f", 0o644, strings.NewReader("ab"), 3) }},
		{"after close", func(w *Writer) error {
			if err := w.Close(); err != nil {
				return nil
			}
			return w.WriteDir("d", 0o755)
		}},
	}
	for _, tt := range tests {
		if err := tt.run(NewWriter(new(bytes.Buffer))); err == nil {
			t.Errorf("%s: error = nil, want an error", tt.name)
		}
	}
	w := NewWriter(new(bytes.Buffer))
	if err := w.WriteHeader(&Header{Name: "f", Mode: TypeReg, Size: 2}); err != nil {
		t.Fatal(err)
	}
	if n, err := w.Write([]byte("abc")); n != 2 || !errors.Is(err, ErrWriteTooLong) {
		t.Errorf("Write(3 bytes into 2) = %d, %v; want 2, ErrWriteTooLong", n, err)
	}
}
