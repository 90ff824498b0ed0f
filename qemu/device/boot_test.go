package device_test

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/qemu/device"
	"github.com/lifeboat-update/lifeboat/qemu/device/devicetest"
)

// TestBuildAndBootGRUB builds the qemu-x86_64 board's ab disk, slot A
// holding an ext4 image with the board's kernel and a tiny init that
// prints its command line, and boots it through OVMF and GRUB with the
// board's grub.cfg: first slot A, whose verity argument comes from grubenv
// and whose try GRUB counts on disk; then, with recovery first in
// BOOT_ORDER, the recovery entry from the ESP, with the extra arguments
// grubenv holds for it.
func TestBuildAndBootGRUB(t *testing.T) {
	t.Parallel()
	ovmf := devicetest.RequireVM(t)
	b := testBoard(t)
	k := devicetest.Kernel(t, b)
	start := time.Now()
	initrd := devicetest.SlotInitrd(t)
	slotA := devicetest.Ext4(t, 32<<20, map[string]string{"boot/vmlinuz": k.Image(), "boot/initrd.img": initrd})
	const recoveryArgs = "lifeboat.repo=http://10.0.2.2:8080/repo lifeboat.after=reboot"
	dir := t.TempDir()
	d, err := device.Build(t.Context(), device.Spec{
		Board: b, Layout: "ab", Out: filepath.Join(dir, "disk.img"),
		Kernel: k.Image(), Ramdisk: initrd,
		Slots: map[string]string{"rootfs-a": slotA},
		Env: bootenv.Vars{
			"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "3", "LIFEBOAT_A_VERITY": "123:abc",
			"lifeboat_recovery_args": recoveryArgs,
		},
		RootJSON: rootJSON(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("disk built in %v", time.Since(start).Round(time.Millisecond))
	vars := filepath.Join(dir, "OVMF_VARS.fd") // one machine, two power-ons
	boot := func(t *testing.T) string {
		t.Helper()
		return bootCmdline(t, device.RunSpec{Board: b, Disk: d.Path, OVMF: ovmf, Vars: vars, Log: filepath.Join(dir, "console.log")})
	}
	args := func(cmdline string) map[string]bool {
		m := map[string]bool{}
		for _, a := range strings.Fields(cmdline) {
			m[a] = true
		}
		return m
	}

	t.Run("slot A", func(t *testing.T) {
		got := args(boot(t))
		for _, want := range []string{"BOOT_IMAGE=/boot/vmlinuz", "lifeboat.slot=A", "lifeboat.layout=ab", "lifeboat.verity=123:abc", "console=ttyS0,115200", "panic=-1"} {
			if !got[want] {
				t.Errorf("slot A's command line %v lacks %s", got, want)
			}
		}
		env, err := d.Env(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want := bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "2", "LIFEBOAT_A_VERITY": "123:abc", "lifeboat_recovery_args": recoveryArgs}
		if diff := cmp.Diff(want, env); diff != "" {
			t.Errorf("grubenv after slot A's boot (-want +got):\n%s", diff)
		}
	})
	if t.Failed() {
		return
	}
	t.Run("recovery", func(t *testing.T) {
		if _, err := d.UpdateEnv(t.Context(), bootenv.Vars{"BOOT_ORDER": "recovery A B"}); err != nil {
			t.Fatal(err)
		}
		cmdline := boot(t)
		got := args(cmdline)
		for _, want := range []string{"BOOT_IMAGE=/EFI/lifeboat/vmlinuz", "lifeboat.mode=update", "lifeboat.layout=ab", "console=ttyS0,115200", "panic=-1"} {
			if !got[want] {
				t.Errorf("recovery's command line %q lacks %s", cmdline, want)
			}
		}
		if !strings.HasSuffix(cmdline, " "+recoveryArgs) {
			t.Errorf("recovery's command line %q does not end with lifeboat_recovery_args %q", cmdline, recoveryArgs)
		}
		if got["lifeboat.slot=A"] || got["lifeboat.slot=B"] {
			t.Errorf("recovery's command line %q names a slot", cmdline)
		}
		env, err := d.Env(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if env["BOOT_A_LEFT"] != "2" {
			t.Errorf("grubenv after recovery's boot: BOOT_A_LEFT=%q, want 2 (recovery counts no try)", env["BOOT_A_LEFT"])
		}
	})
}

var cmdlineRE = regexp.MustCompile(`LIFEBOAT-CMDLINE: (.*)`)

// bootCmdline runs the machine s describes until it powers off, and
// returns the kernel command line slotinit printed.
func bootCmdline(t *testing.T, s device.RunSpec) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	s.Console = devicetest.Console(t, start)
	m, err := device.Run(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	defer m.PowerCut() // after Wait, a no-op
	line, err := m.WaitFor(ctx, cmdlineRE)
	if err != nil {
		t.Fatalf("no command line on the console: %v", err)
	}
	if err := m.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("booted and powered off in %v", time.Since(start).Round(100*time.Millisecond))
	return cmdlineRE.FindStringSubmatch(line)[1]
}

// TestBootEmptySlotFallsBackToRecovery boots slot B, which has tries left
// but no file system: GRUB cannot load its kernel and falls back to the
// recovery entry (the board's grub.cfg sets fallback) rather than waiting
// at its menu. B's try is counted.
func TestBootEmptySlotFallsBackToRecovery(t *testing.T) {
	t.Parallel()
	ovmf := devicetest.RequireVM(t)
	b := testBoard(t)
	k := devicetest.Kernel(t, b)
	d, err := device.Build(t.Context(), device.Spec{
		Board: b, Layout: "ab", Out: filepath.Join(t.TempDir(), "disk.img"),
		Kernel: k.Image(), Ramdisk: devicetest.SlotInitrd(t),
		Env: bootenv.Vars{"BOOT_ORDER": "B A recovery", "BOOT_B_LEFT": "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cmdline := bootCmdline(t, device.RunSpec{Board: b, Disk: d.Path, OVMF: ovmf})
	if !strings.HasPrefix(cmdline, "BOOT_IMAGE=/EFI/lifeboat/vmlinuz ") || !strings.Contains(cmdline, " lifeboat.mode=update ") {
		t.Errorf("command line %q, want recovery's", cmdline)
	}
	env, err := d.Env(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(bootenv.Vars{"BOOT_ORDER": "B A recovery", "BOOT_B_LEFT": "0"}, env); diff != "" {
		t.Errorf("grubenv after the boot (-want +got):\n%s", diff)
	}
}
