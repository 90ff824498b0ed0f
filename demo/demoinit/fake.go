package demoinit

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/dm"
)

// Fake is a Kernel in memory, for tests: Mount checks its target exists
// and records the mount but mounts nothing, LoadModule records the path,
// Reboot records the action. It is safe for concurrent use.
type Fake struct {
	// DM is what DeviceMapper returns.
	DM *dm.Fake
	// MountHook, if set, is called by Mount before it records the mount:
	// the test's stand-in for a file system driver, which may refuse
	// (dm-verity failing the superblock's read with EIO, say).
	MountHook func(source, target, fstype string, readOnly bool) error

	mu      sync.Mutex
	mounts  map[string]string // target -> source
	calls   []string
	modules []string
	reboots []Action
}

var _ Kernel = (*Fake)(nil)

// NewFake returns a Fake whose device-mapper devices are files in dmDir.
func NewFake(dmDir string) *Fake { return &Fake{DM: dm.NewFake(dmDir)} }

func (f *Fake) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *Fake) Mount(source, target, fstype string, readOnly bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	mode := "rw"
	if readOnly {
		mode = "ro"
	}
	f.record("mount %s %s %s %s", fstype, source, target, mode)
	if fi, err := os.Stat(target); err != nil || !fi.IsDir() {
		return fmt.Errorf("mount %s on %s: %w", source, target, syscall.ENOENT)
	}
	if _, busy := f.mounts[target]; busy {
		return fmt.Errorf("mount %s on %s: %w", source, target, syscall.EBUSY)
	}
	if f.MountHook != nil {
		if err := f.MountHook(source, target, fstype, readOnly); err != nil {
			return err
		}
	}
	if f.mounts == nil {
		f.mounts = map[string]string{}
	}
	f.mounts[target] = source
	return nil
}

func (f *Fake) Unmount(target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("umount %s", target)
	if _, ok := f.mounts[target]; !ok {
		return fmt.Errorf("umount %s: %w", target, syscall.EINVAL)
	}
	delete(f.mounts, target)
	return nil
}

func (f *Fake) LoadModule(path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.modules = append(f.modules, path)
	return nil
}

func (f *Fake) DeviceMapper() (dm.Control, error) {
	if f.DM == nil {
		return nil, fmt.Errorf("open device-mapper control: %w", syscall.ENOENT)
	}
	return f.DM, nil
}

func (f *Fake) Reboot(a Action) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reboots = append(f.reboots, a)
	return nil
}

// Calls returns the mounts and unmounts made so far, as
// "mount ext4 SOURCE TARGET ro" and "umount TARGET".
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Mounted returns what is mounted on target.
func (f *Fake) Mounted(target string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.mounts[target]
	return s, ok
}

// Modules returns the module files loaded, in order.
func (f *Fake) Modules() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.modules)
}

// Reboots returns the actions Reboot was called with.
func (f *Fake) Reboots() []Action {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reboots)
}

// MapDisks is Disks over a map from PARTLABEL to device path.
type MapDisks map[string]string

var _ Disks = MapDisks(nil)

func (m MapDisks) FindPartition(label string) (string, error) {
	if p, ok := m[label]; ok {
		return p, nil
	}
	return "", fmt.Errorf("label %q: %w", label, blockdev.ErrNotFound)
}
