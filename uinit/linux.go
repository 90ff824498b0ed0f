package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/boot/kexec"
	"golang.org/x/sys/unix"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/dm"
	"github.com/lifeboat-update/lifeboat/pkg/kmod"
	"github.com/lifeboat-update/lifeboat/pkg/tpm"
)

var _ System = linux{}

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

// Disk waits for /sys/block/<name> and returns the disk's device node.
func (l linux) Disk(ctx context.Context, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, l.wait)
	defer cancel()
	dir := filepath.Join("/sys/block", name)
	for {
		_, err := os.Stat(dir)
		if err == nil {
			node := blockdev.SysDevNode("/", dir, name)
			if _, err = os.Stat(node); err == nil {
				return node, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("disk %s not found within %s: %w", name, l.wait, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (linux) RereadPartitions(path string) error {
	d, err := blockdev.Open(path, os.O_RDONLY)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.RereadPartitions()
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

// TPM opens the kernel's TPM resource manager, waiting for the driver to
// make its device node.
func (l linux) TPM(ctx context.Context) (tpm.Sealer, io.Closer, error) {
	ctx, cancel := context.WithTimeout(ctx, l.wait)
	defer cancel()
	for {
		t, err := tpm.Open(tpm.DefaultDevice)
		if err == nil {
			return t, t, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("%s did not appear within %s: %w", tpm.DefaultDevice, l.wait, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (linux) DeviceMapper() (dm.Control, io.Closer, error) {
	k, err := dm.Open(dm.DefaultControl)
	if err != nil {
		return nil, nil, err
	}
	return k, k, nil
}

func (linux) KexecLoad(kernel, initrd, cmdline string) error {
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
	return nil
}

func (linux) KexecBoot() error {
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

// procStats reads the kernel's uptime and this process's peak resident
// memory from /proc; zero where it cannot.
func procStats() (uptime float64, peakRSS int64) {
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		fmt.Sscanf(string(b), "%f", &uptime)
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
				peakRSS = kb << 10
			}
		}
	}
	return uptime, peakRSS
}

// kernelRelease is the running kernel's release (uname -r), or "".
func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
