package dm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel is Control over the kernel's control node, /dev/mapper/control.
// It makes device nodes in the control node's directory. Its methods may be
// called concurrently.
type Kernel struct {
	f              *os.File
	dir            string
	removeAttempts int
	removeDelay    time.Duration
}

var _ Control = (*Kernel)(nil)

// Option is an optional setting of Open.
type Option func(*Kernel)

// WithRemoveRetries sets how often Remove tries a busy device and how long
// it waits between tries; the default is 25 tries 200ms apart, as
// libdevmapper's.
func WithRemoveRetries(attempts int, delay time.Duration) Option {
	return func(k *Kernel) { k.removeAttempts, k.removeDelay = attempts, delay }
}

// The control node's device number (misc major, MAPPER_CTRL_MINOR), for
// making it when devtmpfs has not.
const controlMajor, controlMinor = 10, 236

// Open opens the control node at path, usually DefaultControl, making it
// if it is missing.
func Open(path string, opts ...Option) (*Kernel, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("open device-mapper control: %w", err)
		}
		if err := unix.Mknod(path, unix.S_IFCHR|0o600, int(unix.Mkdev(controlMajor, controlMinor))); err != nil && err != unix.EEXIST {
			return nil, fmt.Errorf("mknod %s c %d %d: %w", path, controlMajor, controlMinor, err)
		}
		f, err = os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("open device-mapper control: %w", err)
	}
	k := &Kernel{f: f, dir: filepath.Dir(path), removeAttempts: 25, removeDelay: 200 * time.Millisecond}
	for _, o := range opts {
		o(k)
	}
	if k.removeAttempts < 1 {
		k.removeAttempts = 1
	}
	return k, nil
}

// Close closes the control node.
func (k *Kernel) Close() error { return k.f.Close() }

// Reply buffer sizes: libdevmapper starts at 16 KiB and doubles when the
// kernel sets DM_BUFFER_FULL_FLAG.
const (
	firstBufSize = 16 << 10
	maxBufSize   = 64 << 20
)

// ioctl issues req with h and data, growing the buffer from size while the
// reply does not fit, and returns the reply's header and a copy of its data.
// With DM_SECURE_DATA_FLAG in h, every buffer is wiped after use.
func (k *Kernel) ioctl(ctx context.Context, req uint32, h header, data []byte, size int) (header, []byte, error) {
	for {
		if err := ctx.Err(); err != nil {
			return header{}, nil, err
		}
		buf := request(h, data, size)
		rh, rdata, err := k.do(req, buf)
		var out []byte
		if err == nil && rh.Flags&flagBufferFull == 0 {
			out = append([]byte(nil), rdata...)
		}
		if h.Flags&flagSecureData != 0 {
			clear(buf)
		}
		switch {
		case err != nil:
			return rh, nil, err
		case rh.Flags&flagBufferFull == 0:
			return rh, out, nil
		case size >= maxBufSize:
			return rh, nil, fmt.Errorf("%w: reply larger than %d bytes", ErrBadReply, maxBufSize)
		}
		size = max(size, len(buf)) * 2
	}
}

func (k *Kernel) do(req uint32, buf []byte) (header, []byte, error) {
	conn, err := k.f.SyscallConn()
	if err != nil {
		return header{}, nil, err
	}
	var errno unix.Errno
	if err := conn.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), uintptr(unsafe.Pointer(&buf[0])))
	}); err != nil {
		return header{}, nil, err
	}
	if errno != 0 {
		return header{}, nil, errno
	}
	return parseHeader(buf)
}

// call issues req on the device name and wraps its error with the ioctl's
// and the device's names and, for ENXIO, ErrNoDevice.
func (k *Kernel) call(ctx context.Context, req uint32, name string, flags uint32, data []byte, size int) (header, []byte, error) {
	if req != ioctlVersionReq && req != ioctlList {
		if err := checkName(name, ""); err != nil {
			return header{}, nil, fmt.Errorf("%s: %w", ioctlNames[req], err)
		}
	}
	h, out, err := k.ioctl(ctx, req, header{Name: name, Flags: flags}, data, size)
	if err != nil {
		return h, nil, wrap(req, name, err)
	}
	return h, out, nil
}

func wrap(req uint32, name string, err error) error {
	what := ioctlNames[req]
	if name != "" {
		what += " " + name
	}
	if errors.Is(err, unix.ENXIO) {
		return fmt.Errorf("%s: %w: %w", what, ErrNoDevice, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Create makes the device, loads and resumes its table, and makes its node
// in the control node's directory. If a step fails it removes the device.
func (k *Kernel) Create(ctx context.Context, name, uuid string, table []Target, flags Flag) (Device, error) {
	if err := checkName(name, uuid); err != nil {
		return Device{}, err
	}
	if err := checkTable(table); err != nil {
		return Device{}, fmt.Errorf("create %s: %w", name, err)
	}
	spec, err := encodeTable(table)
	if err != nil {
		return Device{}, fmt.Errorf("create %s: %w", name, err)
	}
	defer clear(spec)

	h, _, err := k.ioctl(ctx, ioctlCreate, header{Name: name, UUID: uuid}, nil, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return Device{}, fmt.Errorf("DM_DEV_CREATE %s: %w: %w", name, ErrExists, err)
		}
		return Device{}, wrap(ioctlCreate, name, err)
	}
	d := Device{Name: name, UUID: uuid, Dev: DevT(h.Dev), Path: filepath.Join(k.dir, name)}
	if err := k.load(ctx, name, table, spec, flags); err != nil {
		return Device{}, errors.Join(err, k.removeNow(name))
	}
	if err := k.makeNode(d); err != nil {
		return Device{}, errors.Join(err, k.removeNow(name))
	}
	return d, nil
}

// load loads the table and resumes the device, making the table live.
func (k *Kernel) load(ctx context.Context, name string, table []Target, spec []byte, flags Flag) error {
	f := uint32(flagSecureData)
	if flags&ReadOnly != 0 {
		f |= flagReadOnly
	}
	_, _, err := k.ioctl(ctx, ioctlTableLoad, header{Name: name, Flags: f, TargetCount: uint32(len(table))}, spec, 0)
	if err != nil {
		return wrap(ioctlTableLoad, name, err)
	}
	return k.Resume(ctx, name)
}

// removeNow removes a device Create failed to finish, once.
func (k *Kernel) removeNow(name string) error {
	_, _, err := k.call(context.Background(), ioctlRemove, name, 0, nil, 0)
	return err
}

// makeNode makes the block device node of d, replacing a stale one.
func (k *Kernel) makeNode(d Device) error {
	if err := os.MkdirAll(k.dir, 0o755); err != nil {
		return fmt.Errorf("device node for %s: %w", d.Name, err)
	}
	dev := int(unix.Mkdev(d.Dev.Major(), d.Dev.Minor()))
	err := unix.Mknod(d.Path, unix.S_IFBLK|0o600, dev)
	if err == unix.EEXIST {
		var st unix.Stat_t
		if unix.Stat(d.Path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK && st.Rdev == uint64(dev) {
			return nil
		}
		if err := os.Remove(d.Path); err != nil {
			return fmt.Errorf("device node for %s: %w", d.Name, err)
		}
		err = unix.Mknod(d.Path, unix.S_IFBLK|0o600, dev)
	}
	if err != nil {
		return fmt.Errorf("mknod %s b %s: %w", d.Path, d.Dev, err)
	}
	return nil
}

// Remove removes the device and its node. While the device is open it
// retries, as set by WithRemoveRetries, then returns an error wrapping
// ErrBusy.
func (k *Kernel) Remove(ctx context.Context, name string) error {
	if err := checkName(name, ""); err != nil {
		return err
	}
	delay := time.NewTimer(0)
	defer delay.Stop()
	<-delay.C
	for attempt := 1; ; attempt++ {
		_, _, err := k.ioctl(ctx, ioctlRemove, header{Name: name}, nil, 0)
		switch {
		case err == nil:
		case errors.Is(err, unix.EBUSY) && attempt < k.removeAttempts:
			delay.Reset(k.removeDelay)
			select {
			case <-ctx.Done():
				return fmt.Errorf("DM_DEV_REMOVE %s: %w: %w", name, ErrBusy, ctx.Err())
			case <-delay.C:
			}
			continue
		case errors.Is(err, unix.EBUSY):
			return fmt.Errorf("DM_DEV_REMOVE %s: %w after %d tries: %w", name, ErrBusy, attempt, err)
		case errors.Is(err, unix.ENXIO):
			k.removeNode(name)
			return wrap(ioctlRemove, name, err)
		default:
			return wrap(ioctlRemove, name, err)
		}
		return k.removeNode(name)
	}
}

func (k *Kernel) removeNode(name string) error {
	if err := os.Remove(filepath.Join(k.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove device node of %s: %w", name, err)
	}
	return nil
}

// Suspend suspends the device, waiting for its I/O in flight.
func (k *Kernel) Suspend(ctx context.Context, name string) error {
	_, _, err := k.call(ctx, ioctlSuspend, name, flagSuspend, nil, 0)
	return err
}

// Resume resumes the device, making a loaded table live.
func (k *Kernel) Resume(ctx context.Context, name string) error {
	_, _, err := k.call(ctx, ioctlSuspend, name, 0, nil, 0)
	return err
}

// Info reports the device's state (DM_DEV_STATUS).
func (k *Kernel) Info(ctx context.Context, name string) (Info, error) {
	h, _, err := k.call(ctx, ioctlDevStatus, name, 0, nil, 0)
	if err != nil {
		return Info{}, err
	}
	return infoFrom(h), nil
}

// Status returns the live table's status lines (DM_TABLE_STATUS).
func (k *Kernel) Status(ctx context.Context, name string) ([]Target, error) {
	return k.targets(ctx, name, 0)
}

// Table returns the live table (DM_TABLE_STATUS with DM_STATUS_TABLE_FLAG),
// its devices as major:minor. Buffers are wiped, as tables may hold keys.
func (k *Kernel) Table(ctx context.Context, name string) ([]Target, error) {
	return k.targets(ctx, name, flagStatusTable|flagSecureData)
}

func (k *Kernel) targets(ctx context.Context, name string, flags uint32) ([]Target, error) {
	h, data, err := k.call(ctx, ioctlStatus, name, flags, nil, firstBufSize)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	t, err := decodeTargets(data, h.TargetCount)
	if err != nil {
		return nil, wrap(ioctlStatus, name, err)
	}
	return t, nil
}

// List returns all mapped devices (DM_LIST_DEVICES).
func (k *Kernel) List(ctx context.Context) ([]ListEntry, error) {
	_, data, err := k.call(ctx, ioctlList, "", flagUUID, nil, firstBufSize)
	if err != nil {
		return nil, err
	}
	l, err := decodeList(data)
	if err != nil {
		return nil, wrap(ioctlList, "", err)
	}
	return l, nil
}

// Deps returns the devices the live table maps onto (DM_TABLE_DEPS).
func (k *Kernel) Deps(ctx context.Context, name string) ([]DevT, error) {
	_, data, err := k.call(ctx, ioctlDeps, name, 0, nil, firstBufSize)
	if err != nil {
		return nil, err
	}
	d, err := decodeDeps(data)
	if err != nil {
		return nil, wrap(ioctlDeps, name, err)
	}
	return d, nil
}

// Version returns the kernel's dm ioctl interface version (DM_VERSION).
func (k *Kernel) Version(ctx context.Context) (Version, error) {
	h, _, err := k.call(ctx, ioctlVersionReq, "", 0, nil, 0)
	if err != nil {
		return Version{}, err
	}
	return Version(h.Version), nil
}
