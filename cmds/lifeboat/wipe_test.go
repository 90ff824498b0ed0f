package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/board"
)

// wipeFixture is a running system in files: partitions are files found by
// label, with a mountinfo and a kernel command line.
type wipeFixture struct {
	t         *testing.T
	dir       string
	parts     map[string]string // PARTLABEL -> file
	mountinfo string
	cmdline   string
}

const wipePartSize = 3<<20 + 4096

func newWipeFixture(t *testing.T) *wipeFixture {
	t.Helper()
	dir := t.TempDir()
	w := &wipeFixture{t: t, dir: dir, parts: map[string]string{},
		mountinfo: filepath.Join(dir, "mountinfo"), cmdline: filepath.Join(dir, "cmdline")}
	for i, label := range []string{"rootfs-a", "rootfs-b", "data"} {
		p := filepath.Join(dir, label+".part")
		if err := os.WriteFile(p, random(uint64(i+10), wipePartSize), 0o600); err != nil {
			t.Fatal(err)
		}
		w.parts[label] = p
	}
	w.setMounts("")
	if err := os.WriteFile(w.cmdline, []byte("console=ttyS0 lifeboat.slot=A lifeboat.layout=ab\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return w
}

// setMounts writes the mountinfo: a tmpfs root, then extra lines.
func (w *wipeFixture) setMounts(extra string) {
	w.t.Helper()
	s := "21 1 0:19 / / rw,relatime shared:1 - tmpfs rootfs rw\n22 21 0:20 / /proc rw - proc proc rw\n" + extra
	if err := os.WriteFile(w.mountinfo, []byte(s), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wipeFixture) host() wipeHost {
	return wipeHost{mountinfo: w.mountinfo, sys: filepath.Join(w.dir, "sys"), find: func(m blockdev.Match) (blockdev.SysPartition, error) {
		p, ok := w.parts[m.Label]
		if !ok {
			return blockdev.SysPartition{}, fmt.Errorf("%s: %w", m, blockdev.ErrNotFound)
		}
		return blockdev.SysPartition{Partition: blockdev.Partition{Name: m.Label}, Path: p, Disk: "/dev/vda"}, nil
	}}
}

func (w *wipeFixture) run(args ...string) (int, string, string) {
	w.t.Helper()
	var out, errb bytes.Buffer
	args = append([]string{"wipe", "--progress=none", "--cmdline=" + w.cmdline, "--board=" + filepath.Join("..", "..", "boards", "qemu-x86_64")}, args...)
	code := cli.Run(context.Background(), "lifeboat", []cli.Command{wipeCommand(w.host())}, cli.IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func (w *wipeFixture) snapshot() map[string][]byte {
	w.t.Helper()
	out := map[string][]byte{}
	for label, p := range w.parts {
		b, err := os.ReadFile(p)
		if err != nil {
			w.t.Fatal(err)
		}
		out[label] = b
	}
	return out
}

func TestWipeCommand(t *testing.T) {
	for _, tc := range []struct {
		name  string
		arg   func(w *wipeFixture) string
		label string // the partition wiped
	}{
		{"label", func(w *wipeFixture) string { return "data" }, "data"},
		{"path", func(w *wipeFixture) string { return w.parts["data"] }, "data"},
		{"inactive slot", func(w *wipeFixture) string { return "rootfs-b" }, "rootfs-b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWipeFixture(t)
			before := w.snapshot()
			code, stdout, errs := w.run("--verify", "--json", tc.arg(w))
			if code != 0 {
				t.Fatalf("wipe exited %d: %s", code, errs)
			}
			var res wipeResult
			if err := json.Unmarshal([]byte(stdout), &res); err != nil {
				t.Fatalf("wipe --json printed %q: %v", stdout, err)
			}
			if res.Partition != w.parts[tc.label] || res.Bytes != wipePartSize || res.Verified != wipePartSize {
				t.Errorf("result %+v, want %s's %d bytes wiped and verified", res, w.parts[tc.label], wipePartSize)
			}
			for label, b := range w.snapshot() {
				if label == tc.label {
					if !bytes.Equal(b, make([]byte, len(b))) {
						t.Errorf("%s does not read as zeros", label)
					}
				} else if !bytes.Equal(b, before[label]) {
					t.Errorf("%s changed", label)
				}
			}
		})
	}
}

func TestWipeCommandText(t *testing.T) {
	w := newWipeFixture(t)
	code, stdout, errs := w.run("--secure", "data")
	if code != 0 || !strings.Contains(stdout, "wiped "+w.parts["data"]+" (data): 3149824 bytes") || strings.Contains(stdout, "verified") {
		t.Errorf("wipe --secure data = %d, %q, %q", code, stdout, errs)
	}
}

func TestWipeCommandRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(w *wipeFixture) string // returns the argument
		code   int
		stderr string
	}{
		{"booted slot", func(w *wipeFixture) string { return "rootfs-a" }, 1, "refusing to wipe " + "%rootfs-a%" + " (rootfs-a): it is slot A's, the booted slot"},
		{"root", func(w *wipeFixture) string {
			w.setMounts("")
			os.WriteFile(w.mountinfo, []byte("21 1 254:0 / / ro - ext4 "+w.parts["rootfs-b"]+" ro\n"), 0o644)
			return "rootfs-b"
		}, 1, "(rootfs-b): it holds the running root file system"},
		{"mounted", func(w *wipeFixture) string {
			w.setMounts("30 21 8:4 / /mnt/my\\040data rw - ext4 " + w.parts["data"] + " rw\n")
			return w.parts["data"]
		}, 1, "it is mounted on /mnt/my data"},
		{"whole disk image", func(w *wipeFixture) string {
			b, err := board.Load(filepath.Join("..", "..", "boards", "qemu-x86_64"))
			if err != nil {
				t.Fatal(err)
			}
			gl, err := b.Layouts["ab"].GPT()
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(w.dir, "disk.img")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			os.Truncate(p, 320<<20)
			d, err := blockdev.Open(p, os.O_RDWR)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if _, err := gl.Create(d); err != nil {
				t.Fatal(err)
			}
			return p
		}, 1, "disk.img: it holds a partition table: a whole disk image, not a partition"},
		{"unknown label", func(w *wipeFixture) string { return "home" }, 1, `partition "home": label "home": partition not found`},
		{"no argument", func(w *wipeFixture) string { return "" }, 2, "want one PARTLABEL or DEVICE"},
		{"bad progress", func(w *wipeFixture) string { return "--progress=x" }, 2, "--progress"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWipeFixture(t)
			arg := tc.setup(w)
			before := w.snapshot()
			var args []string
			if arg != "" {
				args = append(args, arg)
			}
			if strings.HasPrefix(arg, "--") {
				args = append(args, "data")
			}
			code, _, errs := w.run(args...)
			want := strings.ReplaceAll(tc.stderr, "%rootfs-a%", w.parts["rootfs-a"])
			if code != tc.code || !strings.Contains(errs, want) {
				t.Errorf("lifeboat wipe %v = exit %d, %q; want %d and %q", args, code, errs, tc.code, want)
			}
			for label, b := range w.snapshot() {
				if !bytes.Equal(b, before[label]) {
					t.Errorf("%s changed, though the wipe was refused", label)
				}
			}
		})
	}
}

func TestMountedAt(t *testing.T) {
	dir := t.TempDir()
	mi := filepath.Join(dir, "mountinfo")
	os.WriteFile(mi, []byte("short line\n25 1 254:1 / / ro shared:1 - ext4 /dev/mapper/verity ro\n26 25 8:4 / /data rw - ext4 /dev/vda4 rw\n"), 0o644)
	for _, tc := range []struct{ path, dev, want string }{
		{"/dev/vda4", "8:4", "/data"},
		{"/dev/whatever", "8:4", "/data"}, // by device number
		{"/dev/dm-1", "254:1", "/"},
		{"/dev/vda3", "8:3", ""},
	} {
		if got, err := mountedAt(mi, tc.path, tc.dev); got != tc.want || err != nil {
			t.Errorf("mountedAt(%s, %s) = %q, %v; want %q", tc.path, tc.dev, got, err, tc.want)
		}
	}
	if _, err := mountedAt(filepath.Join(dir, "none"), "/dev/vda", ""); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mountedAt(missing file) = %v, want ErrNotExist", err)
	}
	for in, want := range map[string]string{`/mnt/a\040b`: "/mnt/a b", `/x\\`: `/x\\`, `/y\12`: `/y\12`, `/z\134q`: `/z\q`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
