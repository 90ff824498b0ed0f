// The file name does not end in _arm64_test.go: Go would build it on
// arm64 hosts only.

package tests

import (
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/uboot"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/qemu"
	qdevice "github.com/lifeboat-update/lifeboat/qemu/device"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

// The recovery ramdisk on the qemu-arm64 board: QEMU's virt board with a
// Cortex-A57 under TCG, Debian's U-Boot, and the board's boot script,
// which keeps Lifeboat's variables in lifeboat.env on the boot partition
// (Debian's arm64 kernels cannot write the virt board's flash).

var (
	arm64Once sync.Once
	arm64Fix  *recoveryFixture
	arm64Err  error
)

// needRecoveryArm64 is needRecovery for qemu-arm64; it also returns the
// QEMU (>= 10) the board runs on.
func needRecoveryArm64(t *testing.T) (*recoveryFixture, qemu.Aarch64) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short skips tests that boot a VM; make test runs them")
	}
	for _, tool := range []string{"mkfs.fat", "mmd", "mcopy", "mkfs.ext4", "mkimage", "xz", "go", "debugfs"} {
		testtool.Require(t, tool)
	}
	if _, err := os.Stat(qemu.UBootArm64); err != nil {
		unavailable(t, "U-Boot for arm64 (Debian package u-boot-qemu): %v", err)
	}
	dir, err := kernel.DefaultDir()
	if err != nil {
		t.Fatal(err)
	}
	q, err := qemu.FindAarch64(t.Context(), dir)
	if err != nil {
		unavailable(t, "%v", err)
	}
	arm64Once.Do(func() { arm64Fix, arm64Err = buildRecoveryFixture(t, "qemu-arm64") })
	if arm64Err != nil {
		t.Fatal(arm64Err)
	}
	if arm64Fix == nil {
		t.Fatal("building the qemu-arm64 recovery fixture failed in an earlier test")
	}
	return arm64Fix, q
}

// unavailable skips t because something it needs is missing, or fails it
// under CI, which must run it.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format+"; CI must have it (make deps)", args...)
	}
	t.Skipf(format+"; make deps installs it", args...)
}

// TestRecoveryArm64 is "the network update also passes on qemu-arm64":
// U-Boot boots v1 from slot A, which marks itself good; then, with
// recovery first in BOOT_ORDER, U-Boot boots the recovery ramdisk, which
// updates v1 -> v2 over the network into B, seeded by A, switches the
// environment file to try B and reboots (the board's kernels cannot
// kexec_file_load); U-Boot counts B's try and boots it, and v2 verifies
// itself with dm-verity and marks B good, through the FAT. Each boot is
// checked on the console (U-Boot's choice, the ramdisk's result, the demo
// system's lines) and the environment is read back from the disk on the
// host with pkg/bootenv/uboot; U-Boot's own environment in the flash is
// never written.
func TestRecoveryArm64(t *testing.T) {
	f, q := needRecoveryArm64(t)
	srv := serveRepo(t, f.Repo)
	d := f.newDevice(t, nil)
	flashBefore, err := os.ReadFile(d.Flash)
	if err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, net *qemu.NetUser) []string {
		t.Helper()
		return f.boot(t, qdevice.RunSpec{Disk: d.Path, QEMU: q, Net: net, Resets: true})
	}

	t.Run("A boots v1", func(t *testing.T) {
		lines := run(t, nil)
		if !containsLine(lines, "LIFEBOAT slot=A A_LEFT=2 B_LEFT=0") {
			t.Errorf("U-Boot did not choose A with its try counted; console:\n%s", strings.Join(lines, "\n"))
		}
		if got := strings.Join(demoLines(lines), "; "); !strings.Contains(got, "version=1 slot=A verity=ok") || !strings.Contains(got, "marked-good slot=A") {
			t.Fatalf("A did not boot v1 and mark itself good: %s", got)
		}
		if env := envOf(t, d); env[slot.LeftVar("A")] != "3" {
			t.Errorf("environment after A marked itself good: %v", env)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("update", func(t *testing.T) {
		if _, err := d.UpdateEnv(t.Context(), bootenv.Vars{
			slot.OrderVar:            "recovery A B",
			"lifeboat_recovery_args": "lifeboat.source=net lifeboat.repo=" + srv.url + " lifeboat.after=reboot lifeboat.onfail=poweroff",
		}); err != nil {
			t.Fatal(err)
		}
		srv.chunkBytes.Store(0)
		lines := run(t, &qemu.NetUser{})
		if !containsLine(lines, "LIFEBOAT slot=recovery") {
			t.Errorf("U-Boot did not choose recovery")
		}
		res := resultOf[ramdiskResult](t, lines)
		if !res.OK || res.Version != "2" || res.Slot != "B" || res.Seed != "A" {
			t.Fatalf("result %+v; console:\n%s", res, strings.Join(lines, "\n"))
		}
		need := f.needBytes(t, "2", "1")
		if res.FetchedBytes != need || srv.chunkBytes.Load() != need {
			t.Errorf("fetched %d bytes (the server sent %d), want %d: the chunks v2 has beyond v1", res.FetchedBytes, srv.chunkBytes.Load(), need)
		}
		t.Logf("fetched %d bytes for a %d-byte image; phases %+v", res.FetchedBytes, res.ImageBytes, res.Phases)
		if !containsLine(lines, "LIFEBOAT slot=B A_LEFT=3 B_LEFT=2") {
			t.Errorf("after the reboot U-Boot did not choose B with its try counted; console:\n%s", strings.Join(lines, "\n"))
		}
		if got := strings.Join(demoLines(lines), "; "); !strings.Contains(got, "version=2 slot=B verity=ok") || !strings.Contains(got, "marked-good slot=B") {
			t.Errorf("v2 did not boot from B through U-Boot and mark itself good: %s", got)
		}
		env := envOf(t, d)
		if env[slot.LeftVar("B")] != "3" || !strings.HasPrefix(env[slot.OrderVar], "B A") || env["LIFEBOAT_B_VERITY"] != f.VerityArg("2") || env[slot.TryVar] != "" {
			t.Errorf("environment after the update: %v", env)
		}
	})

	// U-Boot's own environment, in the flash, is still the one Build
	// provisioned: the script never saves it.
	flash, err := os.ReadFile(d.Flash)
	if err != nil {
		t.Fatal(err)
	}
	if string(flash) != string(flashBefore) {
		im, err := uboot.ReadImage(strings.NewReader(string(flash)), qemu.UBootArm64EnvSize, false)
		t.Errorf("U-Boot's flash changed: %v, %v", im.Vars, err)
	}
}
