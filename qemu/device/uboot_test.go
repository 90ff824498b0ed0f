package device_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/uboot"
	"github.com/lifeboat-update/lifeboat/qemu"
	"github.com/lifeboat-update/lifeboat/qemu/device"
	"github.com/lifeboat-update/lifeboat/qemu/device/devicetest"
)

// arm64Dir is the U-Boot board.
var arm64Dir = filepath.Join("..", "..", "boards", "qemu-arm64")

// docBootCmd is the boot.cmd docs/bootloader-uboot.md documents
// (pkg/bootenv/uboot's TestDocBootCmd keeps the two the same).
var docBootCmd = filepath.Join("..", "..", "pkg", "bootenv", "uboot", "testdata", "boot.cmd")

// TestBoardBootCmd keeps qemu-arm64's boot.cmd on the documented rules:
// the documented script's selection (everything before its "# Rule 2"),
// verbatim, after a block that only loads Lifeboat's variables from the
// environment file board.json names; the try counted in that file before
// a slot boots (never saveenv: the flash is U-Boot's own); and the entries
// of the ab layout with the kernel arguments the recovery ramdisk and the
// demo system read.
func TestBoardBootCmd(t *testing.T) {
	doc, err := os.ReadFile(docBootCmd)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(arm64Dir, device.BootCmdFile)
	cmd, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	rules, _, ok := strings.Cut(string(doc), "# Rule 2")
	if !ok {
		t.Fatalf("%s: no \"# Rule 2\"", docBootCmd)
	}
	before, after, ok := strings.Cut(string(cmd), rules)
	if !ok {
		t.Fatalf("%s does not hold %s's selection rules (before \"# Rule 2\") verbatim", name, docBootCmd)
	}
	b, err := board.Load(arm64Dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := b.Bootloader.UBootConfig("")
	if err != nil {
		t.Fatal(err)
	}
	file := cfg.Copies[0].Device
	vars := "BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT LIFEBOAT_TRY LIFEBOAT_A_VERITY LIFEBOAT_B_VERITY lifeboat_recovery_args lifeboat_layout lifeboat_mode"
	for _, want := range []string{
		"if load virtio 0:1 ${kernel_addr_r} " + file + "; then",
		"env import -c ${kernel_addr_r} 0x4000 " + vars + ";",
	} {
		if !strings.Contains(before, want) {
			t.Errorf("%s: the block before the rules has no %q", name, want)
		}
	}
	for _, v := range strings.Fields(vars) {
		if !strings.Contains(before, "setenv "+v+"\n") {
			t.Errorf("%s: %s is not cleared before the environment file is imported", name, v)
		}
	}
	// The reset trigger: Ctrl-C, the one key U-Boot's sleep notices, held
	// at power-on, looked for before the selection counts a try.
	if b.ResetTrigger != "console-key:ctrl-c" {
		t.Errorf("%s: reset_trigger %q, but the script looks for Ctrl-C", b.Name, b.ResetTrigger)
	}
	for _, want := range []string{
		"if sleep 1; then\n  true\nelse\n",
		`setenv bootargs "console=ttyAMA0 panic=-1 lifeboat.mode=factory-reset lifeboat.layout=${lb_layout} ${lifeboat_recovery_args}"`,
	} {
		if !strings.Contains(before, want) {
			t.Errorf("%s: the block before the rules has no %q", name, want)
		}
	}
	if got := device.UBootBoard()["bootdelay"]; got != "-2" {
		t.Errorf("UBootBoard's bootdelay=%s: the autoboot would look for a key and stop at the prompt on the held Ctrl-C; want -2", got)
	}
	if got := device.UBootBoard()["bootcmd"]; !strings.Contains(got, "source ${scriptaddr}") || strings.Contains(got, "for ") || strings.Contains(got, "run ") {
		t.Errorf("UBootBoard's bootcmd=%q: want the script sourced with no loop (hush abandons a loop on Ctrl-C) and nothing run that may hold one", got)
	}
	if cfg.Copies[0].Size != 0x4000 || cfg.Copies[0].Offset != 0 {
		t.Errorf("%s: fw_env %v, but the script imports and exports 0x4000 bytes at offset 0", b.Name, cfg)
	}
	if strings.Contains(string(cmd), "saveenv") {
		t.Errorf("%s runs saveenv: the board's kernel cannot write U-Boot's flash, so the variables live in %s", name, file)
	}
	for _, want := range []string{
		"env export -c -s 0x4000 ${kernel_addr_r} " + vars + ";",
		"save virtio 0:1 ${kernel_addr_r} " + file + " 0x4000;",
		`setenv bootargs "console=ttyAMA0 panic=-1 lifeboat.slot=A lifeboat.layout=${lb_layout} lifeboat.verity=${LIFEBOAT_A_VERITY}"`,
		`setenv bootargs "console=ttyAMA0 panic=-1 lifeboat.slot=B lifeboat.layout=${lb_layout} lifeboat.verity=${LIFEBOAT_B_VERITY}"`,
		"load virtio 0:2 ${kernel_addr_r} /boot/vmlinuz;",
		"load virtio 0:3 ${ramdisk_addr_r} /boot/initrd.img;",
		"load virtio 0:1 ${kernel_addr_r} /" + device.UBootRecoveryKernel + "\n",
		"load virtio 0:1 ${ramdisk_addr_r} /" + device.UBootRecoveryRamdisk + "\n",
		`setenv bootargs "console=ttyAMA0 panic=-1 lifeboat.mode=${lb_mode} lifeboat.layout=${lb_layout} ${lifeboat_recovery_args}"`,
	} {
		if !strings.Contains(after, want) {
			t.Errorf("%s: no %q after the rules", name, want)
		}
	}
	l, err := b.Layout("ab")
	if err != nil {
		t.Fatal(err)
	}
	for i, label := range []string{"boot", "rootfs-a", "rootfs-b"} {
		if l.Partitions[i].Label != label {
			t.Errorf("ab layout: partition %d is %q, the script expects %q", i+1, l.Partitions[i].Label, label)
		}
	}
}

// TestBuildUBoot builds qemu-arm64's ab disk and reads it back: boot.scr,
// the recovery kernel and ramdisk and the environment file on the boot
// partition, the environment through Env, SetEnv and UpdateEnv, and the
// flash holding U-Boot's whole default environment and UBootBoard.
func TestBuildUBoot(t *testing.T) {
	t.Parallel()
	testtool.Require(t, append(device.Tools()[:4], device.UBootTools()...)...)
	if _, err := os.Stat(qemu.UBootArm64); err != nil {
		devicetest.Unavailable(t, "U-Boot (Debian package u-boot-qemu): %v", err)
	}
	b, err := board.Load(arm64Dir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kernel := writeFile(t, dir, "Image", []byte("arm64 kernel"))
	ramdisk := writeFile(t, dir, "ramdisk.img", []byte("ramdisk"))
	env := bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "3"}
	d, err := device.Build(t.Context(), device.Spec{Board: b, Layout: "ab", Out: filepath.Join(dir, "disk.img"),
		Kernel: kernel, Ramdisk: ramdisk, Env: env, RootJSON: rootJSON(t), Installed: "1"})
	if err != nil {
		t.Fatal(err)
	}
	off, _, err := d.Partition("boot")
	if err != nil {
		t.Fatal(err)
	}
	if got := mcopyOut(t, d.Path, off, device.UBootRecoveryKernel); string(got) != "arm64 kernel" {
		t.Errorf("%s = %q", device.UBootRecoveryKernel, got)
	}
	if got := mcopyOut(t, d.Path, off, device.BootScript); !strings.Contains(string(got), "lifeboat.mode=${lb_mode}") {
		t.Errorf("%s holds no boot script", device.BootScript)
	}
	got, err := d.Env(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(env, got); diff != "" {
		t.Errorf("Env (-want +got):\n%s", diff)
	}
	got, err = d.UpdateEnv(t.Context(), bootenv.Vars{"BOOT_B_LEFT": "3"}, "BOOT_A_LEFT")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := d.Env(t.Context()); err != nil || !cmp.Equal(got, again) || again["BOOT_B_LEFT"] != "3" || again["BOOT_A_LEFT"] != "" {
		t.Errorf("Env after UpdateEnv = %v, %v, want %v", again, err, got)
	}

	if d.Flash != d.Path+device.FlashSuffix {
		t.Errorf("Flash = %q", d.Flash)
	}
	f, err := os.Open(d.Flash)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Size() != qemu.PflashSize {
		t.Fatalf("flash: %v, %v, want %d bytes", fi, err, qemu.PflashSize)
	}
	im, err := uboot.ReadImage(f, qemu.UBootArm64EnvSize, false)
	if err != nil {
		t.Fatal(err)
	}
	def, err := device.UBootDefaultEnv(qemu.UBootArm64)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range device.UBootBoard() {
		def[k] = v
	}
	if diff := cmp.Diff(def, im.Vars); diff != "" {
		t.Errorf("flash environment (-want +got):\n%s", diff)
	}
}
