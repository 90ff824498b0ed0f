// Package devicetest is what tests that build and boot a board (package
// qemu/device) share: the board's kernel, a tiny slot system, and the rule
// that a test missing a tool or the firmware skips locally and fails under
// CI (CI=true), which must run it.
package devicetest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/qemu"
	"github.com/lifeboat-update/lifeboat/qemu/boardkernel"
	"github.com/lifeboat-update/lifeboat/qemu/cpio"
	"github.com/lifeboat-update/lifeboat/qemu/device"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

// Unavailable skips t because something it needs is missing, or fails it
// under CI, which must run it.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format+"; CI must have it (scripts/deps.sh, run by make test)", args...)
	}
	t.Skipf(format+"; make deps installs it", args...)
}

// RequireBuild skips (fails under CI) t unless device.Build's tools and
// GRUB's x86_64-efi modules are installed.
func RequireBuild(t testing.TB) {
	t.Helper()
	testtool.Require(t, device.Tools()...)
	if _, err := os.Stat("/usr/lib/grub/x86_64-efi/moddep.lst"); err != nil {
		Unavailable(t, "GRUB's x86_64-efi modules (Debian package grub-efi-amd64-bin) are not installed")
	}
}

// RequireVM skips under -short, and otherwise like RequireBuild when QEMU,
// go (to build guest programs) or OVMF is missing; it returns OVMF.
func RequireVM(t testing.TB) qemu.OVMF {
	t.Helper()
	if testing.Short() {
		t.Skip("-short skips tests that boot a VM; make test runs them")
	}
	RequireBuild(t)
	testtool.Require(t, "qemu-system-x86_64", "go")
	o, err := qemu.FindOVMF(qemu.OVMFDir)
	if err != nil {
		Unavailable(t, "%v", err)
	}
	return o
}

// Kernel returns the board's pinned kernel (device.BoardKernel),
// downloading it the first time.
func Kernel(t testing.TB, b *board.Board) *kernel.Kernel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k, err := boardkernel.Get(ctx, "", b, t.Logf)
	switch {
	case errors.Is(err, kernel.ErrChecksum):
		t.Fatal(err)
	case err != nil:
		Unavailable(t, "%v", err)
	}
	return k
}

// SlotInitrd writes an initramfs whose /init is tests/boot/slotinit and
// returns its path. slotinit prints
//
//	LIFEBOAT-SLOT: A         (lifeboat.slot=, or ? without one)
//	LIFEBOAT-CMDLINE: ...    (the kernel command line)
//
// and then powers the machine off.
func SlotInitrd(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "slotinit")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "github.com/lifeboat-update/lifeboat/tests/boot/slotinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build slotinit: %v\n%s", err, out)
	}
	init, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	err = errors.Join(
		w.WriteDir("dev", 0o755),
		w.WriteCharDev("dev/console", 0o600, 5, 1),
		w.WriteDir("proc", 0o555),
		w.WriteFile("init", 0o755, init),
		w.WriteFile("action", 0o644, []byte("poweroff\n")),
		w.Close(),
	)
	if err != nil {
		t.Fatalf("initramfs: %v", err)
	}
	path := filepath.Join(dir, "initrd.img")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Ext4 writes an ext4 image of size bytes holding files (path in the file
// system → host file), as a slot image, and returns its path.
func Ext4(t testing.TB, size int64, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for dst, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, filepath.FromSlash(dst))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "slot.ext4")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", root, img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	return img
}

// escapes are terminal escapes and carriage returns.
var escapes = regexp.MustCompile(`\x1b\[[0-9;=?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\r`)

// Console returns a device.RunSpec Console that relays each line to t.Log,
// without terminal escapes, with the seconds since start.
func Console(t testing.TB, start time.Time) *qemu.Lines {
	return &qemu.Lines{Line: func(l string) {
		t.Logf("console %5.1fs: %s", time.Since(start).Seconds(), escapes.ReplaceAllString(l, ""))
	}}
}
