package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The arm64 machine: QEMU's virt board with a Cortex-A57 and Debian's
// U-Boot for it, which keeps its environment in the second pflash bank.
// Debian 12's QEMU 7.2 cannot be used for it: its pflash buffer-write
// emulation makes U-Boot's saveenv fail half-way ("Flash buffer write
// timeout") and leaves a bad CRC, so the environment and every try counter
// in it are lost (QEMU issue 2343). QEMU 10 from bookworm-backports fixes
// it; `make deps` (scripts/deps.sh) fetches it into a cache directory
// without installing it, and FindAarch64 finds it there.
const (
	// UBootArm64 is U-Boot for QEMU's arm64 virt board (Debian package
	// u-boot-qemu), for -bios.
	UBootArm64 = "/usr/lib/u-boot/qemu_arm64/u-boot.bin"
	// UBootArm64EnvSize is that U-Boot's CONFIG_ENV_SIZE: one copy (no
	// CONFIG_SYS_REDUNDAND_ENVIRONMENT) at offset 0 of the second pflash
	// bank (CONFIG_ENV_ADDR 0x4000000), one 256 KiB flash sector.
	UBootArm64EnvSize = 0x40000
	// PflashSize is the size QEMU's virt board requires of a pflash file.
	PflashSize = 64 << 20

	// EnvAarch64 names the environment variable that overrides where
	// FindAarch64 looks: the path of a qemu-system-aarch64.
	EnvAarch64 = "LIFEBOAT_QEMU_AARCH64"
	// Aarch64CacheDir is where scripts/deps.sh unpacks QEMU from
	// bookworm-backports, under the cache directory (the one
	// qemu/kernel.DefaultDir returns).
	Aarch64CacheDir = "qemu-arm-bpo"

	// MinAarch64Major is the oldest QEMU whose pflash U-Boot can save its
	// environment to.
	MinAarch64Major = 10
)

var (
	// ErrNoAarch64 means no qemu-system-aarch64 recent enough was found.
	ErrNoAarch64 = errors.New("qemu-system-aarch64 >= 10 not found (`make deps` fetches it from bookworm-backports)")
	// ErrOldAarch64 means the qemu-system-aarch64 found is older than
	// MinAarch64Major, whose U-Boot saveenv corrupts the environment.
	ErrOldAarch64 = errors.New("qemu-system-aarch64 too old: U-Boot's saveenv fails on its pflash (`make deps` fetches QEMU 10 from bookworm-backports)")
)

// Aarch64 is a qemu-system-aarch64 that FindAarch64 found.
type Aarch64 struct {
	Path    string
	Version string // "10.0.2"
}

func (q Aarch64) String() string { return fmt.Sprintf("%s (QEMU %s)", q.Path, q.Version) }

// FindAarch64 returns the qemu-system-aarch64 the U-Boot tests run: the one
// $LIFEBOAT_QEMU_AARCH64 names if it is set, else the one scripts/deps.sh
// unpacked under cacheDir (cacheDir/qemu-arm-bpo/usr/bin). It runs the
// binary with --version and refuses one older than QEMU 10
// (ErrOldAarch64); a missing one is ErrNoAarch64.
func FindAarch64(ctx context.Context, cacheDir string) (Aarch64, error) {
	return findAarch64(ctx, os.Getenv(EnvAarch64), cacheDir)
}

func findAarch64(ctx context.Context, override, cacheDir string) (Aarch64, error) {
	path := override
	if path == "" {
		path = filepath.Join(cacheDir, Aarch64CacheDir, "usr", "bin", "qemu-system-aarch64")
	}
	if _, err := os.Stat(path); err != nil {
		if override != "" {
			return Aarch64{}, fmt.Errorf("%w: $%s: %w", ErrNoAarch64, EnvAarch64, err)
		}
		return Aarch64{}, fmt.Errorf("%w: %w", ErrNoAarch64, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return Aarch64{}, fmt.Errorf("%w: %s --version: %w: %s", ErrNoAarch64, path, err, strings.TrimSpace(string(out)))
	}
	v, major, err := parseVersion(out)
	if err != nil {
		return Aarch64{}, fmt.Errorf("%s --version: %w", path, err)
	}
	if major < MinAarch64Major {
		return Aarch64{}, fmt.Errorf("%w: %s is QEMU %s", ErrOldAarch64, path, v)
	}
	return Aarch64{Path: path, Version: v}, nil
}

var versionLine = regexp.MustCompile(`QEMU emulator version ((\d+)\.\d+\.\d+)`)

// parseVersion reads `qemu-system-* --version`: the version and its major
// number.
func parseVersion(out []byte) (string, int, error) {
	m := versionLine.FindSubmatch(out)
	if m == nil {
		return "", 0, fmt.Errorf("no \"QEMU emulator version\" in %q", firstLine(out))
	}
	major, err := strconv.Atoi(string(m[2]))
	if err != nil {
		return "", 0, fmt.Errorf("version %q: %w", m[1], err)
	}
	return string(m[1]), major, nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

// UBootBoot is an arm64 virt machine that starts U-Boot, which boots a
// disk, rather than a kernel.
type UBootBoot struct {
	QEMU Aarch64
	// Firmware is U-Boot, given with -bios: UBootArm64.
	Firmware string
	// Flash is the second pflash bank, a file of exactly PflashSize bytes
	// holding U-Boot's environment at offset 0. U-Boot's saveenv writes it
	// in place; it survives between runs as a board's flash does.
	Flash string
	// FlashReadOnly attaches Flash read-only: U-Boot reads its environment
	// but every erase and write fails, as on a write-protected flash.
	FlashReadOnly bool
	// Disk is a raw disk image, attached as a virtio disk (U-Boot's
	// virtio 0).
	Disk string
	// Resets makes a guest reset restart the machine, U-Boot first, in the
	// same QEMU run. By default QEMU exits on a reset (Config always passes
	// -no-reboot), as it does on power-off.
	Resets bool
}

// Config returns the machine for Start, with its serial console (ttyAMA0,
// U-Boot's and the kernel's) going to console.
func (u UBootBoot) Config(console io.Writer) Config {
	esc := func(s string) string { return strings.ReplaceAll(s, ",", ",,") }
	flash := "if=pflash,format=raw,unit=1,file=" + esc(u.Flash)
	if u.FlashReadOnly {
		flash += ",readonly=on"
	}
	args := []string{
		"-bios", u.Firmware,
		"-drive", flash,
		// The host's QEMU modules (/usr/lib/x86_64-linux-gnu/qemu) are
		// Debian 12's 7.2: an unpacked QEMU 10 that loads one aborts ("Only
		// modules from the same build can be loaded"). -nodefaults and
		// -display none keep it from loading UI modules; this keeps it
		// from probing audio ones.
		"-audio", "none",
	}
	if u.Resets {
		// Later on the command line than -no-reboot, so it wins.
		args = append(args, "-action", "reboot=reset")
	}
	return Config{
		QEMU:    u.QEMU.Path,
		Machine: "virt",
		CPU:     "cortex-a57",
		Disks:   []Disk{{Path: u.Disk}},
		Args:    args,
		Console: console,
	}
}
