package media

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Linux is the Mounter of the running kernel.
type Linux struct{}

var _ Mounter = Linux{}

// Mount implements Mounter. An ext4 file system is mounted with noload: a
// journal left to replay is not replayed, which would write to the medium.
func (Linux) Mount(dev, dir, fstype string) error {
	const flags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	data := ""
	if fstype == "ext4" {
		data = "noload"
	}
	if err := unix.Mount(dev, dir, fstype, flags, data); err != nil {
		opts := "ro,nosuid,nodev,noexec"
		if data != "" {
			opts += "," + data
		}
		return fmt.Errorf("mount -t %s -o %s %s %s: %w", fstype, opts, dev, dir, err)
	}
	return nil
}

// Unmount implements Mounter.
func (Linux) Unmount(dir string) error {
	if err := unix.Unmount(dir, 0); err != nil {
		return fmt.Errorf("umount %s: %w", dir, err)
	}
	return nil
}
