package device

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/uboot"
	"github.com/lifeboat-update/lifeboat/qemu"
)

// A U-Boot board's disk (qemu-arm64): its boot partition, a FAT, holds
// the board's boot script compiled into boot.scr (which the flash's
// bootcmd, UBootBoard, loads from partition 1), the recovery kernel and ramdisk,
// and Lifeboat's environment file (board.json's fw_env, relative to the
// boot partition). U-Boot's own environment is in a flash image beside
// the disk image.
const (
	// BootCmdFile is the board's boot script, in its directory.
	BootCmdFile = "boot.cmd"
	// BootScript is the compiled script on the boot partition.
	BootScript = "boot.scr"
	// UBootRecoveryKernel and UBootRecoveryRamdisk are what the boot
	// script's recovery entry loads from the boot partition.
	UBootRecoveryKernel  = "lifeboat/Image"
	UBootRecoveryRamdisk = "lifeboat/ramdisk.img"
	// FlashSuffix names a U-Boot disk's flash image: the disk image's path
	// with this suffix.
	FlashSuffix = ".flash"
)

// UBootBoardBootCmd is the flash's bootcmd: the disk's boot script,
// BootScript on partition 1, loaded and run straight away.
const UBootBoardBootCmd = "pci enum; virtio scan; load virtio 0:1 ${scriptaddr} " + BootScript + "; source ${scriptaddr}"

// UBootBoard are the variables Build adds to U-Boot's default environment
// in the flash, so that the board's reset trigger, Ctrl-C held on the
// console at power-on, reaches the boot script (boards/qemu-arm64/boot.cmd):
//
//   - bootdelay=-2: autoboot at once without looking for a key (with 0, a
//     key already typed stops at U-Boot's prompt);
//   - bootcmd=UBootBoardBootCmd instead of distro_bootcmd, which finds
//     the script in nested for loops: U-Boot 2023.01's hush checks for
//     Ctrl-C at every loop iteration and abandons the loop, so a held
//     Ctrl-C ends the boot at the prompt before the script runs. This one
//     has no loop, and it skips distro_bootcmd's qfw, USB, SCSI and
//     network scans, which only cost time here.
func UBootBoard() bootenv.Vars {
	return bootenv.Vars{"bootdelay": "-2", "bootcmd": UBootBoardBootCmd}
}

func (s *Spec) uboot() bool { return s.Board.Bootloader.Backend == "uboot" }

// bootCmd returns the boot.cmd s uses.
func (s *Spec) bootCmd() string {
	if s.BootCmd != "" {
		return s.BootCmd
	}
	return filepath.Join(s.Board.Dir, BootCmdFile)
}

// validateUBoot checks what a U-Boot disk needs.
func (s *Spec) validateUBoot(l *board.Layout) error {
	b := s.Board
	if b.Arch != "arm64" || b.QEMU.Firmware != "u-boot" {
		return invalid("board %s: arch %s, firmware %q: Build makes U-Boot disks for arm64 boards with firmware u-boot only", b.Name, b.Arch, b.QEMU.Firmware)
	}
	boot, ok := l.Role(board.RoleBoot)
	if !ok || boot.FS != "vfat" || l.Partitions[0].Label != boot.Label {
		return invalid("layout %s: U-Boot's bootcmd (UBootBoard) reads boot.scr from partition 1: want a vfat boot partition first", s.Layout)
	}
	if b.Bootloader.EnvPartition != boot.Label {
		return invalid("board %s keeps its U-Boot environment on %q, not on the boot partition %q", b.Name, b.Bootloader.EnvPartition, boot.Label)
	}
	if _, err := b.Bootloader.UBootConfig(""); err != nil {
		return invalid("board %s: %v", b.Name, err)
	}
	return needFiles(map[string]string{"recovery kernel": s.Kernel, "recovery ramdisk": s.Ramdisk, "boot.cmd": s.bootCmd()})
}

// bootPartition builds a U-Boot board's boot partition, size bytes, in a
// file under tmp and returns its path.
// more are more files for it: host file, then path on the partition.
func (s *Spec) bootPartition(ctx context.Context, tmp string, p board.Partition, size int64, more ...[2]string) (string, error) {
	img := filepath.Join(tmp, p.Label+".fat")
	if err := mkfsFAT(ctx, img, p.Label, size); err != nil {
		return "", err
	}
	scr := filepath.Join(tmp, BootScript)
	if _, err := run(ctx, "mkimage", "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none",
		"-n", "lifeboat "+s.Board.Name, "-d", s.bootCmd(), scr); err != nil {
		return "", err
	}
	files := [][2]string{
		{scr, BootScript},
		{s.Kernel, UBootRecoveryKernel},
		{s.Ramdisk, UBootRecoveryRamdisk},
	}
	files = append(files, more...)
	cfg, _ := s.Board.Bootloader.UBootConfig("")
	env := s.Env
	if env == nil {
		env = bootenv.Vars{}
	}
	for i, c := range cfg.Copies {
		f := filepath.Join(tmp, fmt.Sprintf("env%d", i))
		if err := writeUBootEnv(f, cfg, i, env); err != nil {
			return "", err
		}
		files = append(files, [2]string{f, c.Device})
	}
	if err := mcopyFiles(ctx, img, files); err != nil {
		return "", err
	}
	return img, nil
}

// writeUBootEnv writes copy i of cfg, holding v, into the new file name;
// with two copies, the first is the newer.
func writeUBootEnv(name string, cfg uboot.Config, i int, v bootenv.Vars) error {
	c := cfg.Copies[i]
	im := uboot.Image{Redundant: cfg.Redundant(), Vars: v}
	if im.Redundant && i == 0 {
		im.Flags = 1
	}
	b, err := im.Encode(c.Size)
	if err != nil {
		return err
	}
	return os.WriteFile(name, append(make([]byte, c.Offset), b...), 0o644)
}

// mcopyFiles copies host files (the first of each pair) into the FAT image
// img (at the second), making the directories they need.
func mcopyFiles(ctx context.Context, img string, files [][2]string) error {
	dirs := map[string]bool{}
	for _, f := range files {
		for dir := path.Dir(f[1]); dir != "." && dir != "/"; dir = path.Dir(dir) {
			dirs[dir] = true
		}
	}
	if len(dirs) > 0 {
		mmd := []string{"-i", img}
		for _, dir := range slices.Sorted(maps.Keys(dirs)) { // parents sort first
			mmd = append(mmd, "::"+dir)
		}
		if _, err := run(ctx, "mmd", mmd...); err != nil {
			return err
		}
	}
	for _, f := range files {
		if _, err := run(ctx, "mcopy", "-o", "-i", img, f[0], "::"+f[1]); err != nil {
			return err
		}
	}
	return nil
}

// UBootDefaultEnv returns the default environment built into the U-Boot
// binary at firmware: the NUL-separated name=value strings of its
// default_environment, which starts with bootcmd in Debian's qemu_arm64
// build. U-Boot uses it when the flash holds no valid environment; a valid
// one replaces it completely, so a provisioned flash must hold all of it.
// Empty values are left out (U-Boot deletes a variable set to nothing).
func UBootDefaultEnv(firmware string) (bootenv.Vars, error) {
	b, err := os.ReadFile(firmware)
	if err != nil {
		return nil, err
	}
	start := bytes.Index(b, []byte("\x00bootcmd="))
	if start < 0 {
		return nil, fmt.Errorf("%s: no default environment (\"bootcmd=\" after a NUL)", firmware)
	}
	area := b[start+1:]
	if end := bytes.Index(area, []byte("\x00\x00")); end >= 0 {
		area = area[:end]
	}
	vars := bootenv.Vars{}
	for _, e := range strings.Split(string(area), "\x00") {
		k, v, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s: default environment entry %q is not name=value", firmware, e)
		}
		if v != "" {
			vars[k] = v
		}
	}
	for _, k := range []string{"bootcmd", "kernel_addr_r", "ramdisk_addr_r", "scriptaddr"} {
		if vars[k] == "" {
			return nil, fmt.Errorf("%s: default environment has no %s", firmware, k)
		}
	}
	return vars, nil
}

// writeFlash writes the 64 MiB flash image of QEMU's virt board's second
// pflash bank to name: U-Boot's environment at offset 0 (UBootArm64's
// layout: one copy of UBootArm64EnvSize bytes), U-Boot's default
// environment and UBootBoard.
func writeFlash(name, firmware string) error {
	env, err := UBootDefaultEnv(firmware)
	if err != nil {
		return err
	}
	maps.Copy(env, UBootBoard())
	b, err := uboot.Image{Vars: env}.Encode(qemu.UBootArm64EnvSize)
	if err != nil {
		return err
	}
	flash := make([]byte, qemu.PflashSize)
	copy(flash, b)
	// Erased NOR flash reads as 0xff.
	for i := len(b); i < len(flash); i++ {
		flash[i] = 0xff
	}
	return os.WriteFile(name, flash, 0o644)
}

// ubootEnv reads the U-Boot disk's environment file from its boot
// partition with pkg/bootenv/uboot.
func (d *Disk) ubootEnv(ctx context.Context) (bootenv.Vars, error) {
	tmp, err := os.MkdirTemp("", "lifeboat-ubootenv-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	img, err := d.mtoolsImage(d.Board.Bootloader.EnvPartition)
	if err != nil {
		return nil, err
	}
	cfg, err := d.Board.Bootloader.UBootConfig(tmp)
	if err != nil {
		return nil, err
	}
	rel, _ := d.Board.Bootloader.UBootConfig("")
	for i, c := range cfg.Copies {
		if _, err := os.Stat(c.Device); err == nil {
			continue
		}
		if _, err := run(ctx, "mcopy", "-o", "-i", img, "::"+rel.Copies[i].Device, c.Device); err != nil {
			return nil, fmt.Errorf("%w: %w", bootenv.ErrNoEnv, err)
		}
	}
	env, err := uboot.Open(cfg, uboot.AllowSingleCopy())
	if err != nil {
		return nil, err
	}
	defer env.Close()
	return env.Load(ctx)
}

// setUBootEnv replaces the U-Boot disk's environment file with one holding
// v.
func (d *Disk) setUBootEnv(ctx context.Context, v bootenv.Vars) error {
	tmp, err := os.MkdirTemp("", "lifeboat-ubootenv-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	img, err := d.mtoolsImage(d.Board.Bootloader.EnvPartition)
	if err != nil {
		return err
	}
	cfg, err := d.Board.Bootloader.UBootConfig("")
	if err != nil {
		return err
	}
	var files [][2]string
	for i, c := range cfg.Copies {
		f := filepath.Join(tmp, fmt.Sprintf("env%d", i))
		if err := writeUBootEnv(f, cfg, i, v); err != nil {
			return err
		}
		files = append(files, [2]string{f, c.Device})
	}
	return mcopyFiles(ctx, img, files)
}
