package demoinit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/dm"
	"github.com/lifeboat-update/lifeboat/pkg/kmod"
	"github.com/lifeboat-update/lifeboat/pkg/netup"
)

// Linux is the running kernel. Its zero value is ready to use.
type Linux struct {
	mu  sync.Mutex
	ctl *dm.Kernel
}

var _ Kernel = (*Linux)(nil)

func (*Linux) Mount(source, target, fstype string, readOnly bool) error {
	var flags uintptr
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(source, target, fstype, flags, ""); err != nil {
		return fmt.Errorf("mount %s on %s (%s, flags %#x): %w", source, target, fstype, flags, err)
	}
	return nil
}

func (*Linux) Unmount(target string) error {
	if err := unix.Unmount(target, 0); err != nil {
		return fmt.Errorf("umount %s: %w", target, err)
	}
	return nil
}

func (*Linux) LoadModule(path string) error { return kmod.Load(path) }

// DeviceMapper opens dm.DefaultControl once and keeps it open.
func (l *Linux) DeviceMapper() (dm.Control, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctl == nil {
		ctl, err := dm.Open(dm.DefaultControl)
		if err != nil {
			return nil, err
		}
		l.ctl = ctl
	}
	return l.ctl, nil
}

func (*Linux) Reboot(a Action) error {
	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if a == Reboot {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	unix.Sync()
	if err := unix.Reboot(cmd); err != nil {
		return fmt.Errorf("reboot(%#x): %w", cmd, err)
	}
	return nil
}

// SysDisks finds partitions on the running system's disks by reading
// their GPTs (blockdev.FindPartition): no udev needed.
type SysDisks struct{}

var _ Disks = SysDisks{}

func (SysDisks) FindPartition(label string) (string, error) {
	p, err := blockdev.FindPartition(blockdev.Match{Label: label})
	if err != nil {
		return "", err
	}
	if p.Path == "" {
		// The kernel has not (yet) made the partition's node.
		return "", fmt.Errorf("%s partition %d: no device node: %w", p.Disk, p.Number, blockdev.ErrNotFound)
	}
	return p.Path, nil
}

// NetupNetwork brings the running system's network up with pkg/netup:
// links up, DHCP on each Ethernet device.
type NetupNetwork struct {
	// Timeout bounds the wait for a lease.
	Timeout time.Duration
}

var _ Network = NetupNetwork{}

func (n NetupNetwork) Up(ctx context.Context) error {
	_, err := netup.Up(ctx, netup.Config{ResolvConf: "-", Timeout: n.Timeout})
	return err
}
