package dm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Fake is an in-memory Control for tests of the packages above this one.
// It checks names and tables as the kernel does, records tables as given
// (the kernel would print devices as major:minor), and represents each
// device by an empty file in Dir, its Path. Status lines are empty unless
// set with SetStatus. Its methods may be called concurrently.
type Fake struct {
	// Dir holds the devices' stand-in files; empty means no files, with
	// paths under /dev/mapper.
	Dir string

	mu    sync.Mutex
	devs  map[string]*fakeDev
	minor uint32
}

type fakeDev struct {
	info   Info
	table  []Target
	status []string
}

var _ Control = (*Fake)(nil)

// NewFake returns a Fake with no devices whose device files go in dir.
func NewFake(dir string) *Fake { return &Fake{Dir: dir} }

// FakeMajor is the major number of Fake's devices.
const FakeMajor = 253

func (f *Fake) path(name string) string {
	if f.Dir == "" {
		return filepath.Join("/dev/mapper", name)
	}
	return filepath.Join(f.Dir, name)
}

func (f *Fake) get(op, name string) (*fakeDev, error) {
	if err := checkName(name, ""); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	d := f.devs[name]
	if d == nil {
		return nil, fmt.Errorf("%s %s: %w", op, name, ErrNoDevice)
	}
	return d, nil
}

// Create records the device and its table and makes its file.
func (f *Fake) Create(ctx context.Context, name, uuid string, table []Target, flags Flag) (Device, error) {
	if err := ctx.Err(); err != nil {
		return Device{}, err
	}
	if err := checkName(name, uuid); err != nil {
		return Device{}, err
	}
	if err := checkTable(table); err != nil {
		return Device{}, fmt.Errorf("create %s: %w", name, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.devs == nil {
		f.devs = map[string]*fakeDev{}
	}
	for n, d := range f.devs {
		if n == name || uuid != "" && d.info.UUID == uuid {
			return Device{}, fmt.Errorf("DM_DEV_CREATE %s: %w", name, ErrExists)
		}
	}
	dev := Mkdev(FakeMajor, f.minor)
	if f.Dir != "" {
		if err := os.WriteFile(f.path(name), nil, 0o600); err != nil {
			return Device{}, fmt.Errorf("create %s: %w", name, err)
		}
	}
	f.minor++
	f.devs[name] = &fakeDev{
		info: Info{
			Name: name, UUID: uuid, Dev: dev, TargetCount: uint32(len(table)),
			ReadOnly: flags&ReadOnly != 0, LiveTable: true,
		},
		table:  slices.Clone(table),
		status: make([]string, len(table)),
	}
	return Device{Name: name, UUID: uuid, Dev: dev, Path: f.path(name)}, nil
}

// Remove forgets the device and removes its file; it fails with ErrBusy
// while the device is open (see SetOpen).
func (f *Fake) Remove(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.get("DM_DEV_REMOVE", name)
	if err != nil {
		return err
	}
	if d.info.OpenCount > 0 {
		return fmt.Errorf("DM_DEV_REMOVE %s: %w", name, ErrBusy)
	}
	if f.Dir != "" {
		if err := os.Remove(f.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", name, err)
		}
	}
	delete(f.devs, name)
	return nil
}

// SetOpen sets the device's open count, as if n processes held it open.
func (f *Fake) SetOpen(name string, n int32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.get("open", name)
	if err != nil {
		return err
	}
	d.info.OpenCount = n
	return nil
}

// SetStatus sets the status line of the device's i-th target.
func (f *Fake) SetStatus(name string, i int, status string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.get("status", name)
	if err != nil {
		return err
	}
	if i < 0 || i >= len(d.status) {
		return fmt.Errorf("status %s: no target %d", name, i)
	}
	d.status[i] = status
	return nil
}

func (f *Fake) setSuspended(ctx context.Context, op, name string, s bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.get(op, name)
	if err != nil {
		return err
	}
	d.info.Suspended = s
	return nil
}

// Suspend marks the device suspended.
func (f *Fake) Suspend(ctx context.Context, name string) error {
	return f.setSuspended(ctx, "DM_DEV_SUSPEND", name, true)
}

// Resume marks the device running.
func (f *Fake) Resume(ctx context.Context, name string) error {
	return f.setSuspended(ctx, "DM_DEV_SUSPEND", name, false)
}

// Info returns the device's state.
func (f *Fake) Info(ctx context.Context, name string) (Info, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.get("DM_DEV_STATUS", name)
	if err != nil {
		return Info{}, err
	}
	return d.info, nil
}

// Status returns the targets with the status lines SetStatus set.
func (f *Fake) Status(ctx context.Context, name string) ([]Target, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.get("DM_TABLE_STATUS", name)
	if err != nil {
		return nil, err
	}
	t := slices.Clone(d.table)
	for i := range t {
		t[i].Params = d.status[i]
	}
	return t, nil
}

// Table returns the table as Create was given it.
func (f *Fake) Table(ctx context.Context, name string) ([]Target, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.get("DM_TABLE_STATUS", name)
	if err != nil {
		return nil, err
	}
	return slices.Clone(d.table), nil
}

// List returns the devices in name order.
func (f *Fake) List(ctx context.Context) ([]ListEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var l []ListEntry
	for _, d := range f.devs {
		l = append(l, ListEntry{Name: d.info.Name, Dev: d.info.Dev, EventNr: d.info.EventNr, UUID: d.info.UUID})
	}
	slices.SortFunc(l, func(a, b ListEntry) int { return strings.Compare(a.Name, b.Name) })
	return l, nil
}

// Deps returns nothing: the fake does not parse tables.
func (f *Fake) Deps(ctx context.Context, name string) ([]DevT, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.get("DM_TABLE_DEPS", name); err != nil {
		return nil, err
	}
	return nil, nil
}

// Version returns 4.47.0, Linux 6.1's.
func (f *Fake) Version(ctx context.Context) (Version, error) {
	return Version{4, 47, 0}, ctx.Err()
}
