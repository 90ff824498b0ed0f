package vmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/qemu/kernel"
	"github.com/lifeboat-update/lifeboat/pkg/kmod"
)

func TestDisk(t *testing.T) {
	tests := []struct {
		i    int
		want string
	}{{0, "/dev/vda"}, {1, "/dev/vdb"}, {25, "/dev/vdz"}, {26, "/dev/vdaa"}, {27, "/dev/vdab"}, {52, "/dev/vdba"}}
	for _, tt := range tests {
		if got := Disk(tt.i); got != tt.want {
			t.Errorf("Disk(%d) = %q, want %q", tt.i, got, tt.want)
		}
	}
}

func TestTestPattern(t *testing.T) {
	tests := []struct {
		name  string
		match []string
		not   []string
	}{
		{"TestA", []string{"TestA"}, []string{"TestAB", "XTestA"}},
		{"TestA/sub_(1)", []string{"TestA/sub_(1)"}, []string{"TestA/sub_(1)x", "TestA/sub_1"}},
		{"TestA.b+c", []string{"TestA.b+c"}, []string{"TestAxbbc"}},
	}
	for _, tt := range tests {
		p := testPattern(tt.name)
		// go test matches each /-separated element on its own.
		elems := strings.Split(p, "/")
		matches := func(name string) bool {
			parts := strings.Split(name, "/")
			if len(parts) != len(elems) {
				return false
			}
			for i := range parts {
				if !regexp.MustCompile(elems[i]).MatchString(parts[i]) {
					return false
				}
			}
			return true
		}
		for _, m := range tt.match {
			if !matches(m) {
				t.Errorf("testPattern(%q) = %q does not match %q", tt.name, p, m)
			}
		}
		for _, m := range tt.not {
			if matches(m) {
				t.Errorf("testPattern(%q) = %q matches %q", tt.name, p, m)
			}
		}
	}
}

func TestFailure(t *testing.T) {
	tests := []struct {
		res  result
		want string
	}{
		{result{exited: true}, ""},
		{result{name: "TestX", exited: true, status: 2, output: []string{"--- FAIL: TestX"}}, "TestX failed in the guest (exit status 2); its output:\n\t--- FAIL: TestX"},
		{result{initErr: "wait for /dev/vda: context deadline exceeded", console: []string{"boot"}}, "guest init failed: wait for /dev/vda"},
		{result{name: "TestX", timedOut: true, started: true, timeout: time.Minute}, "TestX timed out in the guest after 1m0s"},
		{result{name: "TestX", timedOut: true, timeout: time.Minute}, "guest did not start TestX within 1m0s"},
		{result{name: "TestX", console: []string{"Kernel panic"}}, "guest ended before starting TestX"},
	}
	for _, tt := range tests {
		got := tt.res.failure()
		if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
			t.Errorf("failure(%+v) = %q, want it to contain %q", tt.res, got, tt.want)
		}
	}
}

// TestWriteInitramfs checks the initramfs with the real cpio(1).
func TestWriteInitramfs(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skipf("cpio(1) not installed (Debian package cpio): %v", err)
	}
	dir := t.TempDir()
	k := &kernel.Kernel{Release: "1-test", Dir: filepath.Join(dir, "k")}
	mods := map[string]string{
		"kernel/drivers/virtio/virtio.ko":     "",
		"kernel/drivers/virtio/virtio_pci.ko": "kernel/drivers/virtio/virtio.ko",
		"kernel/drivers/block/virtio_blk.ko":  "kernel/drivers/virtio/virtio.ko",
		"kernel/drivers/md/dm-mod.ko":         "",
		"kernel/drivers/md/dm-verity.ko":      "kernel/drivers/md/dm-mod.ko",
		"kernel/drivers/md/dm-crypt.ko":       "kernel/drivers/md/dm-mod.ko",
	}
	d := &kmod.Dep{Deps: map[string][]string{}}
	for m, dep := range mods {
		d.Paths = append(d.Paths, m)
		d.Deps[m] = nil
		if dep != "" {
			d.Deps[m] = []string{dep}
		}
		p := filepath.Join(k.ModulesDir(), m)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	file := func(name, content string) *os.File {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	a := &artifacts{kernel: k, modules: kmod.NewIndex(d, []string{"kernel/fs/ext4/ext4.ko"}),
		test: file("test", "test binary"), init: file("init", "init binary")}
	out := filepath.Join(dir, "initramfs.cpio")
	opt := Options{Disks: []string{"a", "b"}, Modules: []string{"dm-verity", "ext4"}, TPM: true}
	if err := a.writeInitramfs(out, "n0nce", "TestX/sub", time.Minute, opt); err != nil {
		t.Fatalf("writeInitramfs = %v", err)
	}
	x := filepath.Join(dir, "x")
	if err := os.Mkdir(x, 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	cmd := exec.Command("cpio", "-i", "-d", "--quiet", "--no-absolute-filenames", "--nonmatching", "dev/console")
	cmd.Dir, cmd.Stdin = x, in
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, b)
	}
	for name, want := range map[string]string{
		"init": "init binary", "test": "test binary",
		"lib/modules/virtio.ko": "kernel/drivers/virtio/virtio.ko", "lib/modules/dm-verity.ko": "kernel/drivers/md/dm-verity.ko",
	} {
		if b, err := os.ReadFile(filepath.Join(x, name)); string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(x, "lib/modules/dm-crypt.ko")); err == nil {
		t.Error("dm-crypt.ko is in the initramfs, but nobody asked for it")
	}
	cfg, err := os.ReadFile(filepath.Join(x, "vminit.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"-test.run=^TestX$/^sub$"`, `"/dev/vdb"`, `"/dev/tpmrm0"`, `"LIFEBOAT_VMTEST=1"`,
		`"/lib/modules/virtio.ko",
    "/lib/modules/virtio_pci.ko"`, `"/lib/modules/dm-mod.ko",
    "/lib/modules/dm-verity.ko"`} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("vminit.json does not contain %s:\n%s", want, cfg)
		}
	}
}
