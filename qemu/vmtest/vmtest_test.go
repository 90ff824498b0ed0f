package vmtest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeboat-update/lifeboat/pkg/kmod"
	"github.com/lifeboat-update/lifeboat/qemu"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
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

func TestMetaFor(t *testing.T) {
	tests := map[string]string{
		"linux-image-6.1.0-56-cloud-amd64": kernel.Meta,
		"linux-image-6.1.0-56-amd64":       "linux-image-amd64",
		"linux-image-6.12.9-1-rt-amd64":    "linux-image-rt-amd64",
		"linux-image-amd64":                "",
		"linux-image-6.1.0-56-":            "",
		"something-else":                   "",
	}
	for pkg, want := range tests {
		if got := metaFor(pkg); got != want {
			t.Errorf("metaFor(%q) = %q, want %q", pkg, got, want)
		}
	}
	if got := metaFor(GenericKernel().Package); got != "linux-image-amd64" {
		t.Errorf("metaFor(GenericKernel) = %q, want linux-image-amd64", got)
	}
}

func TestOptionsKernelAndModules(t *testing.T) {
	tests := []struct {
		opt      Options
		pin      kernel.Pin
		wantMods []string
	}{
		{Options{}, kernel.Pinned(), []string{"virtio_pci", "virtio_blk"}},
		{Options{Modules: []string{"dm-verity"}, Net: &qemu.NetUser{}}, kernel.Pinned(),
			[]string{"virtio_pci", "virtio_blk", "virtio_net", "dm-verity"}},
		{Options{USB: []string{"s.img"}, Kernel: GenericKernel(), Modules: []string{"vfat"}}, GenericKernel(),
			[]string{"virtio_pci", "virtio_blk", "xhci_pci", "usb_storage", "sd_mod", "vfat"}},
	}
	for _, tt := range tests {
		if got := tt.opt.pin(); got != tt.pin {
			t.Errorf("%+v.pin() = %+v, want %+v", tt.opt, got, tt.pin)
		}
		if d := cmp.Diff(tt.wantMods, tt.opt.modules()); d != "" {
			t.Errorf("%+v.modules() (-want +got):\n%s", tt.opt, d)
		}
	}
	if d := cmp.Diff([]string{"virtio_pci", "virtio_blk"}, baseModules); d != "" {
		t.Errorf("modules() changed baseModules (-want +got):\n%s", d)
	}
}

// USB sticks on the cloud kernel are a mistake in the test, not a reason
// to skip.
func TestUSBNeedsKernel(t *testing.T) {
	_, err := boot(t, "TestX", Options{USB: []string{"stick.img"}})
	var unavail *unavailableError
	if err == nil || errors.As(err, &unavail) || !strings.Contains(err.Error(), "GenericKernel") {
		t.Errorf("boot(USB on the cloud kernel) = %v, want an error naming GenericKernel", err)
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
