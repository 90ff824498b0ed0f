package vminit

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-update/lifeboat/pkg/kmod"
)

// Mount implements System.
func (Linux) Mount(m Mount) error {
	if err := os.MkdirAll(m.Target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(m.Source, m.Target, m.FSType, 0, ""); err != nil {
		return fmt.Errorf("mount -t %s %s %s: %w", m.FSType, m.Source, m.Target, err)
	}
	return nil
}

// LoadModule implements System with kmod.Load.
func (Linux) LoadModule(path string) error { return kmod.Load(path) }

// PowerOff syncs the file systems and powers the machine off.
func PowerOff() error {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		return fmt.Errorf("reboot LINUX_REBOOT_CMD_POWER_OFF: %w", err)
	}
	return nil
}
