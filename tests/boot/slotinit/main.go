// Command slotinit is the /init of the slot images the boot tests install:
// it reports which slot the bootloader started, then ends the boot the way
// the release it belongs to does.
//
// It mounts /proc, prints
//
//	LIFEBOAT-SLOT: A
//	LIFEBOAT-CMDLINE: BOOT_IMAGE=... lifeboat.slot=A
//
// on the console, with the slot taken from lifeboat.slot= on the kernel
// command line, and then reads /action from its initramfs: "poweroff" (a
// release that boots; the test marks it good from the host) or "reboot" (a
// release that never marks itself good: the machine resets, as a watchdog
// would reset it). It is Linux-only and runs as PID 1 of a test guest.
package main

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

func main() {
	if err := run(); err != nil {
		fmt.Println("LIFEBOAT-ERROR:", err)
	}
	// PID 1 must not exit: that panics the kernel. Power off instead.
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func run() error {
	if err := os.MkdirAll("/proc", 0o555); err != nil {
		return err
	}
	if err := unix.Mount("proc", "/proc", "proc", 0, ""); err != nil {
		return fmt.Errorf("mount -t proc proc /proc: %w", err)
	}
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	cmdline := strings.TrimSpace(string(b))
	slot := "?"
	for _, p := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(p, "lifeboat.slot="); ok {
			slot = v
		}
	}
	fmt.Println("LIFEBOAT-SLOT:", slot)
	fmt.Println("LIFEBOAT-CMDLINE:", cmdline)
	action, err := os.ReadFile("/action")
	if err != nil {
		return err
	}
	unix.Sync()
	switch a := strings.TrimSpace(string(action)); a {
	case "poweroff":
		fmt.Println("LIFEBOAT-ACTION: poweroff")
		return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	case "reboot":
		fmt.Println("LIFEBOAT-ACTION: reboot without marking good")
		return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	default:
		return fmt.Errorf("/action %q: want poweroff or reboot", a)
	}
}
