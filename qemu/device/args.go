package device

import (
	"cmp"
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
