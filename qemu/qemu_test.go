package qemu

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestArgs(t *testing.T) {
	c := Config{
		Kernel: "/k/vmlinuz", Initrd: "/i.cpio", Append: "console=ttyS0",
		Disks: []Disk{{Path: "/d/a.img"}, {Path: "/d/b,c.qcow2", Format: "qcow2", ReadOnly: true}},
		Args:  []string{"-device", "i6300esb"},
	}
	got := strings.Join(c.CommandLine("/s/ctrl"), " ")
	want := "-machine q35 -accel tcg -cpu max -smp 1 -m 512M -nodefaults -no-user-config -display none -monitor none -serial stdio -nic none -no-reboot" +
		" -kernel /k/vmlinuz -initrd /i.cpio -append console=ttyS0" +
		" -drive file=/d/a.img,format=raw,if=none,id=disk0 -device virtio-blk-pci,drive=disk0" +
		" -drive file=/d/b,,c.qcow2,format=qcow2,if=none,id=disk1,readonly=on -device virtio-blk-pci,drive=disk1" +
		" -chardev socket,id=chrtpm,path=/s/ctrl -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0" +
		" -device i6300esb"
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("args (-want +got):\n%s", d)
	}
	if strings.Contains(got, "kvm") {
		t.Errorf("args = %q, must never ask for KVM", got)
	}
}

func TestArgsNetAndUSB(t *testing.T) {
	base := "-machine q35 -accel tcg -cpu max -smp 1 -m 512M -nodefaults -no-user-config -display none -monitor none -serial stdio"
	tests := []struct {
		name string
		c    Config
		want string
	}{
		{"user network", Config{Net: &NetUser{}},
			base + " -nic user,model=virtio-net-pci -no-reboot"},
		{"bootfile", Config{Net: &NetUser{Bootfile: "http://10.0.2.2:8080/repo,1/"}},
			base + " -nic user,model=virtio-net-pci,bootfile=http://10.0.2.2:8080/repo,,1/ -no-reboot"},
		{"model", Config{Net: &NetUser{Model: "e1000"}},
			base + " -nic user,model=e1000 -no-reboot"},
		{"USB sticks after the disks", Config{
			Disks: []Disk{{Path: "/d/a.img"}},
			USB:   []Disk{{Path: "/u/stick.img"}, {Path: "/u/b,c.qcow2", Format: "qcow2", ReadOnly: true}},
		}, base + " -nic none -no-reboot" +
			" -drive file=/d/a.img,format=raw,if=none,id=disk0 -device virtio-blk-pci,drive=disk0" +
			" -device qemu-xhci,id=xhci" +
			" -drive file=/u/stick.img,format=raw,if=none,id=usb0 -device usb-storage,bus=xhci.0,drive=usb0,removable=on" +
			" -drive file=/u/b,,c.qcow2,format=qcow2,if=none,id=usb1,readonly=on -device usb-storage,bus=xhci.0,drive=usb1,removable=on"},
	}
	for _, tt := range tests {
		got := strings.Join(tt.c.CommandLine(""), " ")
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("%s: args (-want +got):\n%s", tt.name, d)
		}
	}
}

func TestCmdline(t *testing.T) {
	tests := []struct {
		params []string
		want   string
	}{
		{nil, "console=ttyS0,115200 panic=-1 oops=panic quiet mitigations=off tsc=reliable no_timer_check rdinit=/init"},
		{[]string{"loglevel=7", "quiet=", "panic=5"}, "console=ttyS0,115200 oops=panic mitigations=off tsc=reliable no_timer_check rdinit=/init loglevel=7 quiet= panic=5"},
		{[]string{"console=ttyAMA0", "lifeboat.slot=A"}, "panic=-1 oops=panic quiet mitigations=off tsc=reliable no_timer_check rdinit=/init console=ttyAMA0 lifeboat.slot=A"},
	}
	for _, tt := range tests {
		if got := Cmdline(tt.params...); got != tt.want {
			t.Errorf("Cmdline(%q) = %q, want %q", tt.params, got, tt.want)
		}
	}
}

func TestStartNoQEMU(t *testing.T) {
	_, err := Start(context.Background(), Config{QEMU: "/nonexistent/qemu-system-x86_64"})
	if !errors.Is(err, ErrNoQEMU) {
		t.Errorf("Start(missing binary) = %v, want ErrNoQEMU", err)
	}
}
