package device

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/qemu"
)

func TestRunSpecValidate(t *testing.T) {
	b := testBoard(t)
	dir := t.TempDir()
	disk := writeFile(t, dir, "disk.img", []byte("disk"))
	kernel := writeFile(t, dir, "vmlinuz", []byte("kernel"))
	uboot := *b
	uboot.QEMU.Firmware = "u-boot"
	for _, tt := range []struct {
		name string
		spec RunSpec
		want string // in the error; "" for none
	}{
		{"firmware", RunSpec{Board: b, Disk: disk}, ""},
		{"direct", RunSpec{Board: b, Kernel: kernel, Initrd: kernel, Append: "console=ttyS0"}, ""},
		{"direct with a disk and a stick", RunSpec{Board: b, Kernel: kernel, Disk: disk, USB: disk}, ""},
		{"no board", RunSpec{Disk: disk}, "no board"},
		{"firmware without a disk", RunSpec{Board: b}, "needs a disk"},
		{"initrd without a kernel", RunSpec{Board: b, Disk: disk, Initrd: kernel}, "needs a kernel"},
		{"missing disk", RunSpec{Board: b, Disk: filepath.Join(dir, "nope")}, "disk"},
		{"missing stick", RunSpec{Board: b, Disk: disk, USB: filepath.Join(dir, "nope")}, "USB stick"},
		{"U-Boot firmware", RunSpec{Board: &uboot, Disk: disk}, "only OVMF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalidSpec)):
				t.Errorf("Validate() = %v, want ErrInvalidSpec about %q", err, tt.want)
			}
		})
	}
}

// TestConfig checks the QEMU machine a RunSpec asks for.
func TestConfig(t *testing.T) {
	b := testBoard(t)
	b.QEMU.Args = []string{"-device", "i6300esb"}
	ovmf := qemu.OVMF{Code: "/fw/CODE.fd", Vars: "/fw/VARS.fd"}
	for _, tt := range []struct {
		name string
		spec RunSpec
		want qemu.Config
	}{
		{
			name: "firmware",
			spec: RunSpec{Board: b, Disk: "/d/disk.img", TPMState: "/d/tpm"},
			want: qemu.Config{
				QEMU: "qemu-system-x86_64", Machine: "q35", CPU: "max", Memory: "1G", TPMState: "/d/tpm",
				Args: []string{
					"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd",
					"-drive", "if=pflash,format=raw,unit=1,file=/m/vars.fd",
					"-drive", "file=/d/disk.img,format=raw,if=none,id=bootdisk",
					"-device", "virtio-blk-pci,drive=bootdisk,bootindex=0",
					"-device", "i6300esb",
				},
			},
		},
		{
			name: "firmware, resets, stick, network",
			spec: RunSpec{Board: b, Disk: "/d/disk.img", Resets: true, USB: "/d/stick.img", Net: &qemu.NetUser{Bootfile: "http://10.0.2.2:8080/"}},
			want: qemu.Config{
				QEMU: "qemu-system-x86_64", Machine: "q35", CPU: "max", Memory: "1G",
				USB: []qemu.Disk{{Path: "/d/stick.img"}},
				Net: &qemu.NetUser{Bootfile: "http://10.0.2.2:8080/"},
				Args: []string{
					"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd",
					"-drive", "if=pflash,format=raw,unit=1,file=/m/vars.fd",
					"-drive", "file=/d/disk.img,format=raw,if=none,id=bootdisk",
					"-device", "virtio-blk-pci,drive=bootdisk,bootindex=0",
					"-action", "reboot=reset",
					"-device", "i6300esb",
				},
			},
		},
		{
			name: "direct",
			spec: RunSpec{Board: b, Kernel: "/k/vmlinuz", Initrd: "/k/ramdisk", Append: "console=ttyS0,115200", Disk: "/d/disk.img", Resets: true, Net: &qemu.NetUser{}},
			want: qemu.Config{
				QEMU: "qemu-system-x86_64", Machine: "q35", CPU: "max", Memory: "1G",
				Kernel: "/k/vmlinuz", Initrd: "/k/ramdisk", Append: "console=ttyS0,115200",
				Disks: []qemu.Disk{{Path: "/d/disk.img"}},
				Net:   &qemu.NetUser{},
				Args: []string{
					"-action", "reboot=reset",
					"-device", "i6300esb",
				},
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.spec.config(ovmf, "/m/vars.fd")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("config() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInteractiveArgs(t *testing.T) {
	b := testBoard(t)
	s := RunSpec{Board: b, Kernel: "/k/vmlinuz", Initrd: "/k/ramdisk", Append: "console=ttyS0,115200", Disk: "/d/disk.img", USB: "/d/a,b.img",
		Net: &qemu.NetUser{Bootfile: "http://10.0.2.2/"}, Stdin: strings.NewReader("")}
	cfg := s.config(qemu.OVMF{}, "")
	cfg.Stdin = s.Stdin
	got := strings.Join(cfg.CommandLine("/t/swtpm.sock"), " ")
	for _, want := range []string{
		"-machine q35 -accel tcg -cpu max -smp 1 -m 1G ",
		" -serial mon:stdio ",
		" -nic user,model=virtio-net-pci,bootfile=http://10.0.2.2/ -no-reboot ",
		" -kernel /k/vmlinuz -initrd /k/ramdisk -append console=ttyS0,115200 ",
		" -drive file=/d/disk.img,format=raw,if=none,id=disk0 -device virtio-blk-pci,drive=disk0 ",
		" -chardev socket,id=chrtpm,path=/t/swtpm.sock -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0",
		" -device qemu-xhci,id=xhci -drive file=/d/a,,b.img,format=raw,if=none,id=usb0 -device usb-storage,bus=xhci.0,drive=usb0,removable=on",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("args = %s\nwant it to hold %q", got, want)
		}
	}
	if strings.Contains(got, "-monitor") {
		t.Errorf("args = %s, want the monitor on the console, not -monitor", got)
	}
}

// TestWaitFor feeds a machine's console by hand.
func TestWaitFor(t *testing.T) {
	m := newMachine()
	fmt.Fprint(&m.con, "\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001\r\nLIFEBOAT-SLOT: A\r\n\r\nLIFEBOAT-SLOT: B\nLIFEBOAT-ACT")
	slot := regexp.MustCompile(`^LIFEBOAT-SLOT: `)
	for _, want := range []string{"LIFEBOAT-SLOT: A", "LIFEBOAT-SLOT: B"} {
		if got, err := m.WaitFor(t.Context(), slot); got != want || err != nil {
			t.Errorf("WaitFor(%q) = %q, %v, want %q", slot, got, err, want)
		}
	}
	// Nothing more yet: the context ends the wait.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if got, err := m.WaitFor(ctx, slot); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFor(%q) with no more lines = %q, %v, want DeadlineExceeded", slot, got, err)
	}
	// A line that comes while WaitFor waits.
	action := regexp.MustCompile(`^LIFEBOAT-ACTION: (\w+)`)
	got := make(chan string)
	go func() {
		l, err := m.WaitFor(t.Context(), action)
		if err != nil {
			l = err.Error()
		}
		got <- l
	}()
	fmt.Fprint(&m.con, "ION: poweroff\n")
	if l := <-got; l != "LIFEBOAT-ACTION: poweroff" {
		t.Errorf("WaitFor(%q) = %q, want the line written while it waited", action, l)
	}
	// The machine stops; its last line, without a newline, still counts.
	fmt.Fprint(&m.con, "reboot: Power down")
	m.wait = func() error { return nil }
	go m.waitExit()
	if l, err := m.WaitFor(t.Context(), regexp.MustCompile(`Power down`)); err != nil || l != "reboot: Power down" {
		t.Errorf("WaitFor(Power down) = %q, %v, want the last line", l, err)
	}
	if l, err := m.WaitFor(t.Context(), slot); !errors.Is(err, ErrExited) {
		t.Errorf("WaitFor(%q) after the exit = %q, %v, want ErrExited", slot, l, err)
	}
	want := []string{"BdsDxe: loading Boot0001", "LIFEBOAT-SLOT: A", "LIFEBOAT-SLOT: B", "LIFEBOAT-ACTION: poweroff", "reboot: Power down"}
	if got := m.Lines(); !slices.Equal(got, want) {
		t.Errorf("Lines() = %q, want %q", got, want)
	}
	if err := m.Wait(); err != nil {
		t.Errorf("Wait() = %v", err)
	}
	if err := m.PowerCut(); err != nil {
		t.Errorf("PowerCut() after the exit = %v", err)
	}
}

func testBoard(t *testing.T) *board.Board {
	t.Helper()
	b, err := board.Load(filepath.Join("..", "..", "boards", "qemu-x86_64"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeFile writes b to name in dir and returns its path.
func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
