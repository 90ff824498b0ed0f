package device

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/lifeboat-update/lifeboat/qemu"
)

// config is the qemu.Config that runs s: the board's QEMU settings, the
// disk, firmware (ovmf, with the NVRAM vars) or a kernel, the stick, the
// network and the TPM. Console is left to the caller.
func (s *RunSpec) config(ovmf qemu.OVMF, vars string) qemu.Config {
	q := s.Board.QEMU
	c := qemu.Config{
		QEMU:     q.Binary,
		Machine:  q.Machine,
		CPU:      q.CPU,
		Memory:   q.Memory,
		Net:      s.Net,
		TPMState: s.TPMState,
	}
	if s.USB != "" {
		c.USB = []qemu.Disk{{Path: s.USB}}
	}
	if s.Board.Arch == "arm64" {
		return s.arm64Config(c)
	}
	if s.direct() {
		c.Kernel, c.Initrd, c.Append = s.Kernel, s.Initrd, s.Append
		if s.Disk != "" {
			c.Disks = []qemu.Disk{{Path: s.Disk}}
		}
		if s.Resets {
			// After Config's -no-reboot, so it wins.
			c.Args = append(c.Args, "-action", "reboot=reset")
		}
	} else {
		c.Args = qemu.FirmwareBoot{OVMF: ovmf, Vars: vars, Disk: s.Disk, Resets: s.Resets}.Args()
	}
	c.Args = append(c.Args, q.Args...)
	return c
}

// escapeOpt doubles the commas in a value inside a QEMU option string.
func escapeOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// interactiveArgs is the whole QEMU command line for c with the serial
// console and QEMU's monitor multiplexed on QEMU's stdin and stdout
// (-serial mon:stdio: Ctrl-A c switches, Ctrl-A x quits), for a person at
// a terminal. qemu.Start gives QEMU no stdin, so an interactive machine
// runs QEMU itself, with qemu.Start's arguments but for the console and
// the monitor. tpmSock is the swtpm control socket, or "".
func interactiveArgs(c qemu.Config, tpmSock string) []string {
	nic := "none"
	if n := c.Net; n != nil {
		nic = "user,model=" + cmp.Or(n.Model, "virtio-net-pci")
		if n.Bootfile != "" {
			nic += ",bootfile=" + escapeOpt(n.Bootfile)
		}
	}
	a := []string{
		"-machine", cmp.Or(c.Machine, "q35"),
		"-accel", "tcg",
		"-cpu", cmp.Or(c.CPU, "max"),
		"-smp", fmt.Sprint(max(c.CPUs, 1)),
		"-m", cmp.Or(c.Memory, "512M"),
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-serial", "mon:stdio",
		"-nic", nic,
		"-no-reboot",
	}
	if c.Kernel != "" {
		a = append(a, "-kernel", c.Kernel)
		if c.Initrd != "" {
			a = append(a, "-initrd", c.Initrd)
		}
		if c.Append != "" {
			a = append(a, "-append", c.Append)
		}
	}
	drive := func(d qemu.Disk, id string) string {
		opt := fmt.Sprintf("file=%s,format=%s,if=none,id=%s", escapeOpt(d.Path), cmp.Or(d.Format, "raw"), id)
		if d.ReadOnly {
			opt += ",readonly=on"
		}
		return opt
	}
	for i, d := range c.Disks {
		a = append(a, "-drive", drive(d, fmt.Sprintf("disk%d", i)), "-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d", i))
	}
	if len(c.USB) > 0 {
		a = append(a, "-device", "qemu-xhci,id=xhci")
		for i, d := range c.USB {
			a = append(a, "-drive", drive(d, fmt.Sprintf("usb%d", i)),
				"-device", fmt.Sprintf("usb-storage,bus=xhci.0,drive=usb%d,removable=on", i))
		}
	}
	if tpmSock != "" {
		a = append(a,
			"-chardev", "socket,id=chrtpm,path="+escapeOpt(tpmSock),
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
			"-device", "tpm-tis,tpmdev=tpm0")
	}
	return append(a, c.Args...)
}

// flash is the U-Boot flash image s runs with.
func (s *RunSpec) flash() string {
	if s.Flash != "" {
		return s.Flash
	}
	return s.Disk + FlashSuffix
}

// arm64Config completes c for an arm64 board: QEMU 10 (s.QEMU), and
// U-Boot from the flash (qemu.UBootBoot) or a kernel.
func (s *RunSpec) arm64Config(c qemu.Config) qemu.Config {
	q := s.Board.QEMU
	if s.direct() {
		c.QEMU = s.QEMU.Path
		c.Kernel, c.Initrd, c.Append = s.Kernel, s.Initrd, s.Append
		if s.Disk != "" {
			c.Disks = []qemu.Disk{{Path: s.Disk}}
		}
		// The unpacked QEMU 10 aborts if it loads one of the host's QEMU
		// 7.2 modules (qemu.UBootBoot says why).
		c.Args = append(c.Args, "-audio", "none")
		if s.Resets {
			c.Args = append(c.Args, "-action", "reboot=reset")
		}
	} else {
		u := qemu.UBootBoot{QEMU: s.QEMU, Firmware: qemu.UBootArm64, Flash: s.flash(), Disk: s.Disk, Resets: s.Resets}.Config(nil)
		c.QEMU, c.Disks, c.Args = u.QEMU, u.Disks, u.Args
	}
	c.Machine, c.CPU = cmp.Or(q.Machine, "virt"), cmp.Or(q.CPU, "cortex-a57")
	c.Args = append(c.Args, q.Args...)
	return c
}
