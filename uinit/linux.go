package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/u-root/u-root/pkg/boot/kexec"
	"golang.org/x/sys/unix"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/kmod"
)

// linux is the System of a real ramdisk.
type linux struct {
	// mountRoot is where file systems are mounted: /mnt/<device>.
	mountRoot string
	// wait bounds the wait for a disk to appear.
	wait time.Duration
}

func (linux) LoadModule(path string) error { return kmod.Load(path) }

func (l linux) Partition(ctx context.Context, label string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, l.wait)
	defer cancel()
	for {
		p, err := blockdev.FindPartition(blockdev.Match{Label: label})
		if err == nil && p.Path != "" {
			return p.Path, nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = errors.New("the kernel has no device node for it")
			}
			return "", fmt.Errorf("partition %q not found within %s: %w", label, l.wait, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (l linux) Mount(dev, fstype string, readOnly bool) (string, error) {
	dir := filepath.Join(l.mountRoot, filepath.Base(dev))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var flags uintptr
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(dev, dir, fstype, flags, ""); err != nil {
		return "", fmt.Errorf("mount -t %s %s %s: %w", fstype, dev, dir, err)
	}
	return dir, nil
}

func (linux) Unmount(dir string) error {
	if err := unix.Unmount(dir, 0); err != nil {
		return fmt.Errorf("umount %s: %w", dir, err)
	}
	return nil
}

func (linux) Kexec(kernel, initrd, cmdline string) error {
	k, err := os.Open(kernel)
	if err != nil {
		return err
	}
	defer k.Close()
	i, err := os.Open(initrd)
	if err != nil {
		return err
	}
	defer i.Close()
	if err := kexec.FileLoad(k, i, cmdline); err != nil {
		return fmt.Errorf("kexec_file_load %s: %w", kernel, err)
	}
	unix.Sync()
	return kexec.Reboot()
}

func (linux) Reboot() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}

func (linux) PowerOff() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func (linux) Shell() error {
	cmd := exec.Command("/bin/sh")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}
