package device_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/qemu/device"
	"github.com/lifeboat-update/lifeboat/qemu/device/devicetest"
)

// TestBootPartition builds the ESP alone, as a manufacturing flash writes
// it: the ESP's size, with the recovery kernel and ramdisk and the
// grubenv Build would put there.
func TestBootPartition(t *testing.T) {
	t.Parallel()
	devicetest.RequireBuild(t)
	b := testBoard(t)
	dir := t.TempDir()
	kernel := writeFile(t, dir, "vmlinuz", []byte("not a kernel"))
	ramdisk := writeFile(t, dir, "ramdisk.img", []byte("not a ramdisk"))
	out := filepath.Join(dir, "esp.img")
	label, err := device.BootPartition(t.Context(), device.Spec{Board: b, Layout: "small", Kernel: kernel, Ramdisk: ramdisk, Env: bootenv.Vars{"x": "1"}}, out)
	if err != nil {
		t.Fatal(err)
	}
	if label != "esp" {
		t.Errorf("BootPartition = %q, want esp", label)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 64<<20 {
		t.Errorf("%s is %d bytes, want the ESP's 64 MiB", out, fi.Size())
	}
	for name, want := range map[string]string{device.RecoveryKernel: "not a kernel", device.RecoveryRamdisk: "not a ramdisk"} {
		got, err := exec.Command("mtype", "-i", out, "::"+name).Output()
		if err != nil || string(got) != want {
			t.Errorf("mtype %s = %q, %v; want %q", name, got, err, want)
		}
	}
	env, err := exec.Command("mtype", "-i", out, "::"+b.Bootloader.EnvFile).Output()
	if err != nil || !bytes.Contains(env, []byte("\nx=1\n")) {
		t.Errorf("grubenv on the image: %q, %v; want x=1", env, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Errorf("BootPartition left files behind in %s: %v", dir, ents)
	}
}
