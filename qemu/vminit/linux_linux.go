package vminit

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-update/lifeboat/qemu/kmod"
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

// LoadModule implements System with finit_module(2); compressed modules are
// handed to the kernel to decompress (MODULE_INIT_COMPRESSED_FILE).
func (Linux) LoadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if kmod.Compressed(path) {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("finit_module %s flags %#x: %w", path, flags, err)
	}
	return nil
}

// PowerOff syncs the file systems and powers the machine off.
func PowerOff() error {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		return fmt.Errorf("reboot LINUX_REBOOT_CMD_POWER_OFF: %w", err)
	}
	return nil
}
