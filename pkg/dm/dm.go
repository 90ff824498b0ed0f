// Package dm talks to the Linux device mapper through its ioctl interface,
// /dev/mapper/control: it creates, loads, suspends, resumes, inspects and
// removes mapped devices. It is written from the kernel's
// include/uapi/linux/dm-ioctl.h, without libdevmapper, and makes device
// nodes itself, since a ramdisk has no udev.
//
// Control is the seam: Kernel is the real implementation (Linux only), Fake
// an in-memory one for other packages' tests. The ioctl structures are
// encoded and decoded by pure Go code that is tested without a kernel.
package dm

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// DefaultControl is the device mapper's control node.
const DefaultControl = "/dev/mapper/control"

// Target is one line of a device-mapper table: Length sectors from Start
// (512-byte sectors) mapped by the target Type ("linear", "verity",
// "crypt", ...) configured by Params. In a status reply Params is the
// target's status line instead.
type Target struct {
	Start, Length uint64
	Type, Params  string
}

// String formats t as dmsetup table prints it.
//
// A crypt target's key is printed as "-", as dmsetup hides it without
// --showkeys: String is for logs and errors, never for loading.
func (t Target) String() string {
	params := t.Params
	if t.Type == "crypt" {
		if f := strings.Fields(params); len(f) > 1 {
			f[1] = "-"
			params = strings.Join(f, " ")
		}
	}
	return fmt.Sprintf("%d %d %s %s", t.Start, t.Length, t.Type, params)
}

// Flag is a set of flags given to Create.
type Flag uint32

const (
	// ReadOnly loads the table read-only (DM_READONLY_FLAG).
	ReadOnly Flag = 1 << iota
)

// DevT is a device number in the kernel's encoding (huge_encode_dev), as
// the dm ioctls carry it and stat(2) returns it on Linux.
type DevT uint64

// Mkdev returns the device number of major:minor.
func Mkdev(major, minor uint32) DevT {
	return DevT(minor&0xff) | DevT(major&0xfff)<<8 | DevT(minor&^0xff)<<12 | DevT(major&^0xfff)<<32
}

// Major returns d's major number.
func (d DevT) Major() uint32 { return uint32((d>>8)&0xfff) | uint32(d>>32)&^0xfff }

// Minor returns d's minor number.
func (d DevT) Minor() uint32 { return uint32(d&0xff) | uint32((d>>12)&0xffffff00) }

// String formats d as major:minor, as tables name devices.
func (d DevT) String() string { return fmt.Sprintf("%d:%d", d.Major(), d.Minor()) }

// Device is a mapped device that Create made.
type Device struct {
	Name, UUID string
	Dev        DevT
	// Path is the device node, /dev/mapper/<name> for the kernel.
	Path string
}

// Info is what DM_DEV_STATUS reports about a device.
type Info struct {
	Name, UUID string
	Dev        DevT
	OpenCount  int32
	EventNr    uint32
	// TargetCount is the number of targets in the live table.
	TargetCount uint32
	ReadOnly    bool
	Suspended   bool
	// LiveTable and InactiveTable say whether the device has a live table
	// and a loaded one waiting for resume.
	LiveTable, InactiveTable bool
}

// ListEntry is one device of List.
type ListEntry struct {
	Name    string
	Dev     DevT
	EventNr uint32 // zero from kernels before 4.37
	UUID    string // empty from kernels before 4.46, or when the device has none
}

// Version is the kernel's dm ioctl interface version, major.minor.patch.
type Version [3]uint32

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

// Errors callers branch on, wrapped by both implementations.
var (
	// ErrNoDevice is returned for a name that no mapped device has (ENXIO).
	ErrNoDevice = errors.New("no such mapped device")
	// ErrExists is returned by Create when the name or UUID is taken.
	ErrExists = errors.New("mapped device already exists")
	// ErrBusy is returned by Remove when the device stays open past its
	// retries.
	ErrBusy = errors.New("mapped device is busy")
	// ErrBadName is returned for names and UUIDs the kernel would refuse:
	// empty names, too long, or containing '/'.
	ErrBadName = errors.New("bad mapped device name")
	// ErrBadTarget is wrapped by errors about tables the kernel would
	// refuse: gaps, empty types, NULs.
	ErrBadTarget = errors.New("bad device-mapper target")
	// ErrBadReply is wrapped by errors about replies the kernel should not
	// have made.
	ErrBadReply = errors.New("malformed device-mapper reply")
)

// Control manages mapped devices.
type Control interface {
	// Create makes the device name with the given UUID (may be empty),
	// loads table and resumes it, and makes its device node.
	Create(ctx context.Context, name, uuid string, table []Target, flags Flag) (Device, error)
	// Remove removes the device and its node, retrying while it is busy
	// (open), until its retries or ctx run out.
	Remove(ctx context.Context, name string) error
	// Suspend and Resume suspend and resume I/O to the device.
	Suspend(ctx context.Context, name string) error
	Resume(ctx context.Context, name string) error
	// Info reports the device's state.
	Info(ctx context.Context, name string) (Info, error)
	// Status returns the live table's targets with their status lines as
	// Params (dmsetup status).
	Status(ctx context.Context, name string) ([]Target, error)
	// Table returns the live table (dmsetup table).
	Table(ctx context.Context, name string) ([]Target, error)
	// List returns all mapped devices.
	List(ctx context.Context) ([]ListEntry, error)
	// Deps returns the devices the device's live table maps onto.
	Deps(ctx context.Context, name string) ([]DevT, error)
	// Version returns the kernel's dm ioctl interface version.
	Version(ctx context.Context) (Version, error)
}

// checkName reports whether the kernel would accept name and uuid.
func checkName(name, uuid string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w: %q", ErrBadName, name)
	case len(name) >= nameLen:
		return fmt.Errorf("%w: %q is %d bytes, at most %d allowed", ErrBadName, name, len(name), nameLen-1)
	case len(uuid) >= uuidLen:
		return fmt.Errorf("%w: UUID %q is %d bytes, at most %d allowed", ErrBadName, uuid, len(uuid), uuidLen-1)
	}
	for _, c := range []byte(name) {
		if c == '/' || c == 0 {
			return fmt.Errorf("%w: %q contains %q", ErrBadName, name, c)
		}
	}
	for _, c := range []byte(uuid) {
		if c == 0 {
			return fmt.Errorf("%w: UUID %q contains NUL", ErrBadName, uuid)
		}
	}
	return nil
}
