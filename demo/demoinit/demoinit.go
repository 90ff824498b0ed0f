// Package demoinit is the demo OS's boot (demo/README.md): what
// demo/cmd/demoinit, the /init of the demo system's initramfs, does
// between the kernel and power-off. It finds the slot it booted from by
// PARTLABEL, opens it through dm-verity with the root hash the kernel
// command line gives, mounts it read-only, reads every file in full (a
// health check: with dm-verity a corrupted block fails the read with EIO
// instead of returning wrong data), and only then marks the slot good in
// the bootloader's environment; then, when the device's identity names a
// fleet server, it brings the network up and reports the release
// installed (pkg/fleet). On any failure it leaves the environment
// as it was, so that the bootloader falls back.
//
// It prints one line a test can parse for each outcome:
//
//	LIFEBOAT-DEMO version=<v> slot=<s> verity=ok files=<n> bytes=<n>
//	LIFEBOAT-DEMO marked-good slot=<s>
//	LIFEBOAT-DEMO reported installed version=<v> server=<url>
//	LIFEBOAT-DEMO FAILED: <what>: <error>
//
// where <what> starts with "verity" whenever dm-verity refused a block.
//
// The kernel, the disks and the bootloader environment are seams (Kernel,
// Disks, EnvOpener) with fakes beside them (Fake, MapDisks), so that Run
// is tested without root, a VM or a disk.
package demoinit

import (
	"context"
	"io"
	"io/fs"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/dm"
)

// Marker starts every line of demoinit's console protocol.
const Marker = "LIFEBOAT-DEMO"

// Paths in the initramfs, relative to Config.Root.
const (
	// BoardDir holds board.json, a copy of boards/<name>/board.json.
	BoardDir = "etc/lifeboat"
	// ModulesOrder lists the module files to load, dependencies first,
	// one absolute path per line (the recovery ramdisk's format).
	ModulesOrder = "etc/lifeboat/modules.order"
	// RootMount is where the verified slot is mounted, read-only.
	RootMount = "mnt/root"
	// EnvMount is where the bootloader environment's partition is mounted.
	EnvMount = "mnt/env"
)

// VersionFile is the release version's file in a demo image.
const VersionFile = "etc/lifeboat-version"

// RootClass is the slot class the demo OS's images are for.
const RootClass = "rootfs"

// DeviceName is the device-mapper name of the verified slot.
const DeviceName = "demo-root"

// Kernel is what demoinit asks of the running kernel.
type Kernel interface {
	// Mount mounts source on target (which exists) as fstype.
	Mount(source, target, fstype string, readOnly bool) error
	Unmount(target string) error
	// LoadModule loads the module file at path; one already loaded is
	// not an error.
	LoadModule(path string) error
	// DeviceMapper opens the device-mapper control; call it after the
	// modules are loaded (dm-mod is one).
	DeviceMapper() (dm.Control, error)
	// Reboot syncs the file systems and powers off (Poweroff) or
	// restarts (Reboot). It returns only on failure.
	Reboot(a Action) error
}

// Disks finds partitions.
type Disks interface {
	// FindPartition returns the device node of the one partition whose
	// PARTLABEL is label, or an error wrapping blockdev.ErrNotFound while
	// there is none (the disk may not have appeared yet).
	FindPartition(label string) (string, error)
}

// Network brings the network up.
type Network interface {
	Up(ctx context.Context) error
}

// EnvOpener opens the bootloader environment whose partition is mounted
// at root (board.Board.OpenEnv).
type EnvOpener interface {
	OpenEnv(root string) (bootenv.Env, io.Closer, error)
}

var _ EnvOpener = (*board.Board)(nil)

// FSFunc returns the file tree mounted at dir, for reading.
type FSFunc func(dir string) fs.FS

// Stats are what a successful health check found.
type Stats struct {
	Files int   // regular files read in full
	Bytes int64 // bytes read
}

// Result is what Run did.
type Result struct {
	Params  Params
	Version string
	Stats   Stats
	// MarkedGood is set once the environment says the slot is good.
	MarkedGood bool
	// Reported is set once the fleet server heard the release is
	// installed.
	Reported bool
}

// Failure is Run's error: what failed, and why. Its text is what follows
// "FAILED: " on the console.
type Failure struct {
	What string
	Err  error
}

func (f *Failure) Error() string { return f.What + ": " + f.Err.Error() }
func (f *Failure) Unwrap() error { return f.Err }
