package initramfs

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/qemu/cpio"
)

var update = flag.Bool("update", false, "regenerate testdata/gnu.cpio with the real cpio(1)")

// goldenTree is what testdata/gnu.cpio holds: GNU cpio's archive of it.
// Regular files map to their content, symlinks to "-> target", directories
// to "/".
var goldenTree = map[string]string{
	"etc":                          "/",
	"etc/lifeboat":                 "/",
	"etc/lifeboat/board.json":      "{\"name\": \"x\"}\n",
	"etc/lifeboat/modules.order":   "/lib/modules/6.1/kernel/a.ko\n",
	"etc/empty":                    "",
	"bbin":                         "/",
	"bbin/bb":                      strings.Repeat("\x7fELF odd length ", 33) + "!",
	"bbin/ls":                      "-> bb",
	"init":                         "-> bbin/init",
	"lib/modules/6.1/kernel/a.ko":  "abc",
	"lib":                          "/",
	"lib/modules":                  "/",
	"lib/modules/6.1":              "/",
	"lib/modules/6.1/kernel":       "/",
	"lib/modules/6.1/kernel/b.ko":  "abcd",
	"lib/modules/6.1/kernel/cd.ko": "abcde",
}

// readTree reads an archive back into goldenTree's form.
func readTree(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := Walk(r, func(h *cpio.Header, data io.Reader) error {
		b, err := io.ReadAll(data)
		if err != nil {
			return err
		}
		switch h.Mode & 0o170000 {
		case cpio.TypeDir:
			got[h.Name] = "/"
		case cpio.TypeSymlink:
			got[h.Name] = "-> " + string(b)
		case cpio.TypeReg:
			got[h.Name] = string(b)
		default:
			t.Errorf("%s: unexpected mode %o", h.Name, h.Mode)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Walk() = %v", err)
	}
	return got
}

func makeTree(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	for name, v := range goldenTree {
		names = append(names, name)
		p := filepath.Join(dir, name)
		switch {
		case v == "/":
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(v, "-> "):
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.Symlink(strings.TrimPrefix(v, "-> "), p); err != nil {
				t.Fatal(err)
			}
		default:
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return names
}

func TestWalkGNU(t *testing.T) {
	const golden = "testdata/gnu.cpio"
	if *update {
		testtool.Require(t, "cpio")
		dir := t.TempDir()
		names := makeTree(t, dir)
		slices.Sort(names)
		touch := exec.Command("touch", append([]string{"-h", "-d", "@0"}, names...)...)
		touch.Dir = dir
		if out, err := touch.CombinedOutput(); err != nil {
			t.Fatalf("touch: %v\n%s", err, out)
		}
		cmd := exec.Command("cpio", "-o", "-H", "newc", "--reproducible", "-R", "0:0", "--quiet")
		cmd.Dir = dir
		cmd.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio -o: %v", err)
		}
		if err := os.WriteFile(golden, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (regenerate with go test -update)", err)
	}
	if diff := cmp.Diff(goldenTree, readTree(t, bytes.NewReader(b))); diff != "" {
		t.Errorf("Walk(%s) (-want +got):\n%s", golden, diff)
	}
	entries, err := List(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("List(%s) = %v", golden, err)
	}
	if e := entries["init"]; !e.IsSymlink() || e.Target != "bbin/init" {
		t.Errorf("List(%s)[init] = %+v, want a symlink to bbin/init", golden, e)
	}
	if e := entries["bbin/bb"]; !e.IsRegular() || e.Size != int64(len(goldenTree["bbin/bb"])) {
		t.Errorf("List(%s)[bbin/bb] = %+v, want a regular file of %d bytes", golden, e, len(goldenTree["bbin/bb"]))
	}
	if e := entries["etc/lifeboat"]; !e.IsDir() {
		t.Errorf("List(%s)[etc/lifeboat] = %+v, want a directory", golden, e)
	}
}

// writeTree writes goldenTree with this repository's cpio writer.
func writeTree(t testing.TB) []byte {
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	for _, name := range []string{"bbin", "etc", "etc/lifeboat", "lib", "lib/modules", "lib/modules/6.1", "lib/modules/6.1/kernel"} {
		if err := w.WriteDir(name, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, v := range goldenTree {
		var err error
		switch {
		case v == "/":
			continue
		case strings.HasPrefix(v, "-> "):
			err = w.WriteSymlink(name, strings.TrimPrefix(v, "-> "))
		default:
			err = w.WriteFile(name, 0o644, []byte(v))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWalkOwnWriter(t *testing.T) {
	if diff := cmp.Diff(goldenTree, readTree(t, bytes.NewReader(writeTree(t)))); diff != "" {
		t.Errorf("Walk(qemu/cpio's archive) (-want +got):\n%s", diff)
	}
}

func TestWalkPartialReads(t *testing.T) {
	// fn may read some of an entry's data, or none.
	var names []string
	err := Walk(bytes.NewReader(writeTree(t)), func(h *cpio.Header, data io.Reader) error {
		names = append(names, h.Name)
		if h.Size > 2 {
			io.ReadFull(data, make([]byte, 2))
		}
		return nil
	})
	if err != nil || len(names) != len(goldenTree) {
		t.Errorf("Walk(partial reads) = %v with %d entries, want nil with %d", err, len(names), len(goldenTree))
	}
	stop := errors.New("stop")
	if err := Walk(bytes.NewReader(writeTree(t)), func(*cpio.Header, io.Reader) error { return stop }); err != stop {
		t.Errorf("Walk(fn fails) = %v, want fn's error as it is", err)
	}
}

func TestWalkRefuses(t *testing.T) {
	good := writeTree(t)
	hdr := func(name string, size int, namesize string) []byte {
		h := "070701" + strings.Repeat("00000000", 6) + "0000000" + string(rune('0'+size)) + strings.Repeat("00000000", 4) + namesize + "00000000"
		return []byte(h + name)
	}
	tests := map[string][]byte{
		"empty":            nil,
		"truncated header": good[:50],
		"truncated data":   good[:len(good)-700],
		"no trailer":       good[:len(good)-512-124],
		"bad magic":        append([]byte("070707"), good[6:]...),
		"not hex":          append([]byte("070701zz"), good[8:]...),
		"name size 0":      hdr("", 0, "00000000"),
		"name too long":    hdr("x", 0, "00010000"),
		"name without NUL": hdr("abc", 0, "00000003"),
		"NUL in name":      hdr("a\x00b\x00", 0, "00000004"),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			err := Walk(bytes.NewReader(b), func(*cpio.Header, io.Reader) error { return nil })
			if !errors.Is(err, ErrCPIO) {
				t.Errorf("Walk(%s) = %v, want ErrCPIO", name, err)
			}
		})
	}
}

func FuzzWalk(f *testing.F) {
	if b, err := os.ReadFile("testdata/gnu.cpio"); err == nil {
		f.Add(b)
	}
	f.Add(writeTree(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		var total int64
		err := Walk(bytes.NewReader(b), func(h *cpio.Header, data io.Reader) error {
			n, err := io.Copy(io.Discard, data)
			if n > h.Size {
				t.Fatalf("%s: read %d bytes of data, header says %d", h.Name, n, h.Size)
			}
			total += n
			return err
		})
		if err != nil && !errors.Is(err, ErrCPIO) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("Walk() = %v, want ErrCPIO or a short read", err)
		}
		if total > int64(len(b)) {
			t.Fatalf("Walk() read %d bytes of data from %d", total, len(b))
		}
	})
}
