package device_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/qemu/device"
	"github.com/lifeboat-update/lifeboat/qemu/device/devicetest"
)

func TestSpecValidate(t *testing.T) {
	b := testBoard(t)
	dir := t.TempDir()
	kernel := writeFile(t, dir, "vmlinuz", []byte("kernel"))
	ramdisk := writeFile(t, dir, "ramdisk.img", []byte("ramdisk"))
	slot := writeFile(t, dir, "slot.img", []byte("slot"))
	valid := func() device.Spec {
		return device.Spec{Board: b, Layout: "ab", Out: filepath.Join(dir, "disk.img"), Kernel: kernel, Ramdisk: ramdisk,
			Slots: map[string]string{"rootfs-a": slot}, RootJSON: []byte("{}"), Installed: "1"}
	}
	uboot := *b
	uboot.Bootloader = board.Bootloader{Backend: "uboot", FWEnv: []string{"/dev/mmcblk0 0x0 0x4000"}}
	otherEnv := *b
	otherEnv.Bootloader.EnvFile = "EFI/lifeboat/grubenv"
	for _, tt := range []struct {
		name   string
		change func(*device.Spec)
		want   string // in the error; "" for none
	}{
		{"valid", func(*device.Spec) {}, ""},
		{"no slots, no state", func(s *device.Spec) { s.Slots, s.RootJSON, s.Installed = nil, nil, "" }, ""},
		{"no board", func(s *device.Spec) { s.Board = nil }, "no board"},
		{"unknown layout", func(s *device.Spec) { s.Layout = "abc" }, `no layout "abc"`},
		{"no output", func(s *device.Spec) { s.Out = "" }, "no output"},
		{"no kernel", func(s *device.Spec) { s.Kernel = "" }, "no recovery kernel"},
		{"missing ramdisk", func(s *device.Spec) { s.Ramdisk = filepath.Join(dir, "nope") }, "recovery ramdisk"},
		{"ramdisk is a directory", func(s *device.Spec) { s.Ramdisk = dir }, "not a regular file"},
		{"missing grub.cfg", func(s *device.Spec) { s.GRUBConfig = filepath.Join(dir, "grub.cfg") }, "grub.cfg"},
		{"slot label of the ESP", func(s *device.Spec) { s.Slots = map[string]string{"esp": slot} }, `slot "esp"`},
		{"slot of another layout", func(s *device.Spec) { s.Slots = map[string]string{"rootfs": slot} }, `slot "rootfs"`},
		{"missing slot image", func(s *device.Spec) { s.Slots = map[string]string{"rootfs-b": filepath.Join(dir, "nope")} }, "slot rootfs-b"},
		{"installed without root.json", func(s *device.Spec) { s.RootJSON = nil }, "needs root.json"},
		{"U-Boot board on amd64", func(s *device.Spec) { s.Board = &uboot }, "U-Boot disks for arm64"},
		{"grubenv elsewhere", func(s *device.Spec) { s.Board = &otherEnv }, "env_file"},
		{"environment partition file", func(s *device.Spec) { s.EnvFiles = map[string]string{"lifeboat/identity.json": slot} }, ""},
		{"environment partition file outside", func(s *device.Spec) { s.EnvFiles = map[string]string{"../identity.json": slot} }, `"../identity.json"`},
		{"missing environment partition file", func(s *device.Spec) {
			s.EnvFiles = map[string]string{"lifeboat/identity.json": filepath.Join(dir, "nope")}
		}, "lifeboat/identity.json"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := valid()
			tt.change(&s)
			err := s.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error about %q", err, tt.want)
			case tt.want != "" && !errors.Is(err, device.ErrInvalidSpec):
				t.Errorf("Validate() = %v, want one wrapping ErrInvalidSpec", err)
			}
		})
	}
}

// TestBuild builds the board's ab disk and reads it back on the host: the
// partitions where the board puts them, the slot image in its slot, the
// files on the ESP, the trusted state on the data partition, and grubenv
// through Env, SetEnv and UpdateEnv.
func TestBuild(t *testing.T) {
	t.Parallel()
	devicetest.RequireBuild(t)
	testtool.Require(t, "debugfs")
	b := testBoard(t)
	dir := t.TempDir()
	kernel := writeFile(t, dir, "vmlinuz", []byte("not a kernel"))
	ramdisk := writeFile(t, dir, "ramdisk.img", []byte("not a ramdisk"))
	slot := writeFile(t, dir, "slot.img", bytes.Repeat([]byte("slot A "), 300000))
	root := rootJSON(t)
	env := bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0", "lifeboat_recovery_args": "lifeboat.after=reboot"}
	out := filepath.Join(dir, "disk.img")
	d, err := device.Build(t.Context(), device.Spec{
		Board: b, Layout: "ab", Out: out, Kernel: kernel, Ramdisk: ramdisk,
		Slots: map[string]string{"rootfs-a": slot}, Env: env, RootJSON: root, Installed: "7",
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(out + ".part"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Build left %s.part behind (%v)", out, err)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := board.ParseSize(b.Layouts["ab"].DiskSize); fi.Size() != want {
		t.Errorf("image is %d bytes, want the layout's %d", fi.Size(), want)
	}

	// The partitions, as Build and Open see them: 1 MiB aligned, in order.
	opened, err := device.Open(b, "ab", out)
	if err != nil {
		t.Fatal(err)
	}
	// Where the board puts them: back to back from 1 MiB, sizes in whole
	// MiB, the one of size "rest" up to the last MiB (the backup GPT).
	const mib = 1 << 20
	at := map[string][2]int64{} // offset, size
	next := int64(mib)
	for _, p := range b.Layouts["ab"].Partitions {
		size, _ := board.ParseSize(p.Size)
		if p.Size == "rest" {
			size = fi.Size() - mib - next
		}
		at[p.Label] = [2]int64{next, size}
		next += size
	}
	for label, want := range at {
		for _, d := range []*device.Disk{d, opened} {
			off, size, err := d.Partition(label)
			if err != nil || off != want[0] || size != want[1] {
				t.Errorf("Partition(%q) = %d, %d, %v, want %d, %d", label, off, size, err, want[0], want[1])
			}
		}
	}
	esp, slotA, slotB, data := at["esp"][0], at["rootfs-a"][0], at["rootfs-b"], at["data"][0]
	if _, _, err := d.Partition("rootfs"); !errors.Is(err, device.ErrNoPartition) {
		t.Errorf("Partition(%q) = %v, want ErrNoPartition", "rootfs", err)
	}
	if _, err := device.Open(b, "small", out); err == nil {
		t.Errorf("Open(small) of an ab disk succeeded")
	}

	// The slot image in slot A, zeros after it and in slot B.
	img, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(slot)
	if got := img[slotA : slotA+int64(len(want))]; !bytes.Equal(got, want) {
		t.Errorf("slot rootfs-a does not hold the slot image")
	}
	if rest := img[slotA+int64(len(want)) : slotB[0]+slotB[1]]; len(bytes.Trim(rest, "\x00")) != 0 {
		t.Errorf("slots hold more than the slot image")
	}

	// The ESP's files.
	for name, want := range map[string][]byte{device.RecoveryKernel: []byte("not a kernel"), device.RecoveryRamdisk: []byte("not a ramdisk")} {
		if got := mcopyOut(t, out, esp, name); !bytes.Equal(got, want) {
			t.Errorf("ESP %s = %q, want %q", name, got, want)
		}
	}
	cfg, _ := os.ReadFile(filepath.Join(boardDir, device.GRUBConfigFile))
	if got := mcopyOut(t, out, esp, device.GRUBConfig); !bytes.Equal(got, cfg) {
		t.Errorf("ESP %s is not the board's grub.cfg", device.GRUBConfig)
	}
	if got := mcopyOut(t, out, esp, device.GRUBImage); !bytes.HasPrefix(got, []byte("MZ")) {
		t.Errorf("ESP %s is not an EFI image", device.GRUBImage)
	}

	// The trusted state on the data partition.
	if got := debugfsCat(t, out, data, "/"+device.StateDir+"/root.json"); !bytes.Equal(got, root) {
		t.Errorf("data %s/root.json is not root.json:\n%s", device.StateDir, got)
	}
	var state struct{ Installed string }
	if err := json.Unmarshal(debugfsCat(t, out, data, "/"+device.StateDir+"/state.json"), &state); err != nil || state.Installed != "7" {
		t.Errorf("data %s/state.json: installed %q (%v), want 7", device.StateDir, state.Installed, err)
	}

	// grubenv, read back and rewritten on the host.
	got, err := d.Env(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(env, got); diff != "" {
		t.Errorf("Env() after Build (-want +got):\n%s", diff)
	}
	if got, err := d.UpdateEnv(t.Context(), bootenv.Vars{"BOOT_ORDER": "recovery A B", "BOOT_B_LEFT": "3"}, "lifeboat_recovery_args"); err != nil {
		t.Fatal(err)
	} else if diff := cmp.Diff(bootenv.Vars{"BOOT_ORDER": "recovery A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}, got); diff != "" {
		t.Errorf("UpdateEnv() (-want +got):\n%s", diff)
	}
	want2 := bootenv.Vars{"BOOT_ORDER": "B A recovery", "LIFEBOAT_B_VERITY": "4096:00ff"}
	if err := opened.SetEnv(t.Context(), want2); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Env(t.Context()); err != nil || !cmp.Equal(got, want2) {
		t.Errorf("Env() after SetEnv(%v) = %v, %v", want2, got, err)
	}
	// What GRUB's save_env can rewrite in place: the variables in the
	// first sector (grub.GRUBWrites).
	blk := mcopyOut(t, out, esp, b.Bootloader.EnvFile)
	if len(blk) != 1024 || !allHash(blk[512:]) {
		t.Errorf("grubenv is %d bytes, second sector %q, want 1024 with only # in the second", len(blk), blk[512:])
	}
}

func allHash(b []byte) bool { return len(bytes.Trim(b, "#")) == 0 }

func TestBuildRefusesBigSlot(t *testing.T) {
	t.Parallel()
	devicetest.RequireBuild(t)
	dir := t.TempDir()
	slot := filepath.Join(dir, "slot.img")
	if err := os.WriteFile(slot, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(slot, 96<<20+1); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "disk.img")
	_, err := device.Build(t.Context(), device.Spec{
		Board: testBoard(t), Layout: "ab", Out: out,
		Kernel: writeFile(t, dir, "k", []byte("k")), Ramdisk: writeFile(t, dir, "r", []byte("r")),
		Slots: map[string]string{"rootfs-b": slot},
	})
	if !errors.Is(err, device.ErrTooBig) {
		t.Errorf("Build with a slot image 1 byte too big = %v, want ErrTooBig", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Errorf("Build that failed left files behind: %v", ents)
	}
}

func TestStick(t *testing.T) {
	t.Parallel()
	testtool.Require(t, "mkfs.fat", "mcopy")
	bundle := filepath.Join(t.TempDir(), "bundle")
	files := map[string]string{
		"metadata/1.root.json":    "root",
		"metadata/timestamp.json": "ts",
		"indexes/ab.caibx":        "index",
		"store/0a1b/0a1b2c.cacnk": strings.Repeat("chunk", 1000),
	}
	for name, content := range files {
		p := filepath.Join(bundle, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "stick.img")
	if err := device.Stick(t.Context(), bundle, out); err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		if got := mcopyOut(t, out, 0, name); string(got) != want {
			t.Errorf("stick %s = %q, want %q", name, got, want)
		}
	}
	if err := device.Stick(t.Context(), t.TempDir(), out); err == nil {
		t.Errorf("Stick of an empty bundle succeeded")
	}
}
