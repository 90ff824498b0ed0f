package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		out     string
		version string
		major   int
	}{
		{"QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers\n", "10.0.2", 10},
		{"QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n", "7.2.22", 7},
	}
	for _, tt := range tests {
		v, major, err := parseVersion([]byte(tt.out))
		if err != nil || v != tt.version || major != tt.major {
			t.Errorf("parseVersion(%q) = %q, %d, %v; want %q, %d", tt.out, v, major, err, tt.version, tt.major)
		}
	}
	for _, out := range []string{"", "qemu-system-aarch64: unknown option\n", "QEMU emulator version x.y\n"} {
		if v, _, err := parseVersion([]byte(out)); err == nil {
			t.Errorf("parseVersion(%q) = %q, nil; want an error", out, v)
		}
	}
}

// fakeQEMU writes at path a script that prints version as QEMU does.
func fakeQEMU(t *testing.T, path, version string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\necho 'QEMU emulator version " + version + " (Debian test)'\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestFindAarch64(t *testing.T) {
	ctx := context.Background()
	cache := t.TempDir()
	if _, err := findAarch64(ctx, "", cache); !errors.Is(err, ErrNoAarch64) || !strings.Contains(err.Error(), "make deps") {
		t.Errorf("findAarch64(empty cache) = %v, want ErrNoAarch64 naming make deps", err)
	}
	inCache := filepath.Join(cache, "qemu-arm-bpo", "usr", "bin", "qemu-system-aarch64")
	fakeQEMU(t, inCache, "10.0.2")
	if q, err := findAarch64(ctx, "", cache); err != nil || q != (Aarch64{Path: inCache, Version: "10.0.2"}) {
		t.Errorf("findAarch64(cache) = %+v, %v; want %s, 10.0.2", q, err, inCache)
	}

	// The environment variable wins over the cache.
	override := filepath.Join(t.TempDir(), "qemu-system-aarch64")
	fakeQEMU(t, override, "11.1.0")
	if q, err := findAarch64(ctx, override, cache); err != nil || q.Path != override || q.Version != "11.1.0" {
		t.Errorf("findAarch64(%s) = %+v, %v; want it, 11.1.0", override, q, err)
	}
	missing := filepath.Join(t.TempDir(), "absent")
	if _, err := findAarch64(ctx, missing, cache); !errors.Is(err, ErrNoAarch64) || !strings.Contains(err.Error(), EnvAarch64) {
		t.Errorf("findAarch64(%s) = %v, want ErrNoAarch64 naming $%s", missing, err, EnvAarch64)
	}
	old := filepath.Join(t.TempDir(), "qemu-system-aarch64")
	fakeQEMU(t, old, "7.2.22")
	if _, err := findAarch64(ctx, old, cache); !errors.Is(err, ErrOldAarch64) {
		t.Errorf("findAarch64(QEMU 7.2) = %v, want ErrOldAarch64", err)
	}

	t.Setenv(EnvAarch64, override)
	if q, err := FindAarch64(ctx, cache); err != nil || q.Path != override {
		t.Errorf("FindAarch64 with $%s = %+v, %v; want %s", EnvAarch64, q, err, override)
	}
}

func TestUBootBootConfig(t *testing.T) {
	q := Aarch64{Path: "/q/qemu-system-aarch64", Version: "10.0.2"}
	tests := []struct {
		u    UBootBoot
		want string
	}{
		{
			UBootBoot{QEMU: q, Firmware: UBootArm64, Flash: "/m/flash1.img", Disk: "/m/disk.img"},
			"-machine virt -accel tcg -cpu cortex-a57 -smp 1 -m 512M" +
				" -nodefaults -no-user-config -display none -monitor none -serial stdio -nic none -no-reboot" +
				" -drive file=/m/disk.img,format=raw,if=none,id=disk0 -device virtio-blk-pci,drive=disk0" +
				" -bios /usr/lib/u-boot/qemu_arm64/u-boot.bin -drive if=pflash,format=raw,unit=1,file=/m/flash1.img" +
				" -audio none",
		},
		{
			UBootBoot{QEMU: q, Firmware: UBootArm64, Flash: "/m,1/flash1.img", FlashReadOnly: true, Disk: "/m/disk.img", Resets: true},
			"-machine virt -accel tcg -cpu cortex-a57 -smp 1 -m 512M" +
				" -nodefaults -no-user-config -display none -monitor none -serial stdio -nic none -no-reboot" +
				" -drive file=/m/disk.img,format=raw,if=none,id=disk0 -device virtio-blk-pci,drive=disk0" +
				" -bios /usr/lib/u-boot/qemu_arm64/u-boot.bin -drive if=pflash,format=raw,unit=1,file=/m,,1/flash1.img,readonly=on" +
				" -audio none -action reboot=reset",
		},
	}
	for _, tt := range tests {
		c := tt.u.Config(nil)
		if c.binary() != q.Path {
			t.Errorf("%+v.Config() runs %s, want %s", tt.u, c.binary(), q.Path)
		}
		if d := cmp.Diff(tt.want, strings.Join(c.CommandLine(""), " ")); d != "" {
			t.Errorf("%+v.Config() args (-want +got):\n%s", tt.u, d)
		}
	}
}
