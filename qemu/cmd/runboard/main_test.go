package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/qemu/device/devicetest"
)

var boardDir, _ = filepath.Abs(filepath.Join("..", "..", "..", "boards", "qemu-x86_64"))

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string // in the error; "" for none
	}{
		{[]string{"-slot", "rootfs-a=a.img", "-slot", "rootfs-b=b.img", "-env", "BOOT_ORDER=B A", "-direct"}, ""},
		{[]string{"-firmware", "-direct"}, "choose one"},
		{[]string{"-slot", "rootfs-a"}, "want NAME=VALUE"},
		{[]string{"-slot", "rootfs-a=a.img", "-slot", "rootfs-a=b.img"}, "given twice"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		_, err := parse(tt.args, &bytes.Buffer{})
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("parse(%q) = %v, want an error about %q", tt.args, err, tt.want)
		}
	}
	o, err := parse([]string{"-repo", "http://10.0.2.2:8080/"}, &bytes.Buffer{})
	if err != nil || !o.net {
		t.Errorf("parse(-repo URL) = %+v, %v, want -net too", o, err)
	}
	if _, err := parse([]string{"-h"}, &bytes.Buffer{}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("parse(-h) = %v, want flag.ErrHelp", err)
	}
}

// TestMissingInputs checks that runboard says how to make what is missing.
func TestMissingInputs(t *testing.T) {
	t.Chdir(t.TempDir())
	ramdisk := filepath.Join(t.TempDir(), "ramdisk.img")
	if err := os.WriteFile(ramdisk, []byte("ramdisk"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-board", boardDir}, "make ramdisk BOARD=qemu-x86_64"},
		{[]string{"-board", boardDir, "-ramdisk", ramdisk, "-slot", "rootfs-a=out/demo/nope.img"}, "demo"},
		{[]string{"-board", boardDir, "-ramdisk", ramdisk, "-layout", "abc"}, `no layout "abc"`},
		{[]string{"-board", "no-such-board"}, "no-such-board"},
	} {
		err := run(t.Context(), tt.args, nil, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("runboard %q = %v, want an error about %q", tt.args, err, tt.want)
		}
	}
}

// TestRunboard runs the board as `make qemu` does, with everything
// attached, its console on a pipe instead of a terminal: the disk is built,
// OVMF and GRUB boot recovery (no slot holds a system), and recovery gets
// the repository and the extra arguments. The "ramdisk" is tests/boot's
// slotinit, which prints its command line and powers off.
func TestRunboard(t *testing.T) {
	devicetest.RequireVM(t)
	testtool.Require(t, "swtpm")
	b, err := board.Load(boardDir)
	if err != nil {
		t.Fatal(err)
	}
	devicetest.Kernel(t, b) // in the cache, where runboard looks
	ramdisk := devicetest.SlotInitrd(t)
	bundle := filepath.Join(t.TempDir(), "bundle")
	if err := os.MkdirAll(filepath.Join(bundle, "metadata"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "metadata", "1.root.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	args := []string{"-board", boardDir, "-ramdisk", ramdisk, "-repo", "http://10.0.2.2:8080/repo", "-args", "lifeboat.after=reboot",
		"-usb", bundle, "-tpm", "-no-reboot"}
	var stdout, stderr bytes.Buffer
	start := time.Now()
	if err = run(ctx, args, strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatalf("runboard: %v\n%s\nconsole:\n%s", err, stderr.Bytes(), stdout.Bytes())
	}
	t.Logf("runboard: built, booted and powered off in %v\n%s", time.Since(start).Round(100*time.Millisecond), stderr.Bytes())
	want := "LIFEBOAT-CMDLINE: BOOT_IMAGE=/EFI/lifeboat/vmlinuz " + b.BaseCmdline() + " lifeboat.mode=update lifeboat.layout=ab lifeboat.repo=http://10.0.2.2:8080/repo lifeboat.after=reboot"
	if !bytes.Contains(stdout.Bytes(), []byte(want)) {
		t.Errorf("console lacks %q:\n%s", want, stdout.Bytes())
	}
	log, err := os.ReadFile(filepath.Join("out", "qemu-x86_64", "console.log"))
	if err != nil || !bytes.Contains(log, []byte(want)) {
		t.Errorf("console log (%v) lacks %q", err, want)
	}
	for _, f := range []string{"ab.img", "ab.OVMF_VARS.fd", "stick.img", "tpm"} {
		if _, err := os.Stat(filepath.Join("out", "qemu-x86_64", f)); err != nil {
			t.Errorf("runboard left no %s: %v", f, err)
		}
	}
	// The disk is kept: -slot now asks for -rebuild.
	err = run(ctx, []string{"-board", boardDir, "-ramdisk", ramdisk, "-kernel", ramdisk, "-slot", "rootfs-a=" + ramdisk}, nil, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "-rebuild") {
		t.Errorf("runboard -slot with the disk there = %v, want an error about -rebuild", err)
	}
}
