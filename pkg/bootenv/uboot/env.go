package uboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

// Errors callers branch on.
var (
	// ErrSingleCopy: Save was asked to rewrite an environment that has a
	// single copy, which no write can change power-cut safely, without
	// the AllowSingleCopy option.
	ErrSingleCopy = errors.New("single-copy U-Boot environment: a power cut during the write loses it (use a redundant environment, or allow it explicitly)")
	// ErrVerify: what was read back after a write differs from what was
	// written.
	ErrVerify = errors.New("U-Boot environment read back differs from what was written")
)

// Env is a U-Boot environment, single or redundant, as U-Boot and
// fw_printenv/fw_setenv see it.
type Env struct {
	cfg    Config
	devs   []Dev
	offs   []int64 // each copy's resolved offset
	closer []io.Closer
	opts   options

	mu sync.Mutex
}

var _ bootenv.Env = (*Env)(nil)

type options struct {
	single    bool
	scheme    FlagScheme
	setScheme bool
}

// Option is an optional setting of New and Open.
type Option func(*options)

// AllowSingleCopy lets Save rewrite a single-copy environment in place.
// Such a write is not power-cut safe: a cut before it completes leaves a
// copy with a bad CRC, and U-Boot boots with its built-in defaults.
func AllowSingleCopy() Option { return func(o *options) { o.single = true } }

// WithFlagScheme sets how the flags bytes of a redundant environment are
// read and written, overriding the default: Boolean on NOR flash,
// Incremental elsewhere (as libubootenv decides). It must match how the
// board's U-Boot saves: Boolean for CONFIG_ENV_IS_IN_FLASH, Incremental
// for the other drivers.
func WithFlagScheme(s FlagScheme) Option {
	return func(o *options) { o.scheme, o.setScheme = s, true }
}

// sizer is a Dev that knows its size, for offsets from the end.
type sizer interface{ Size() int64 }

// New returns the environment cfg describes over devs, devs[i] holding
// cfg.Copies[i] (both copies may share one Dev). A Flash is erased before
// each write.
func New(cfg Config, devs []Dev, opts ...Option) (*Env, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(devs) != len(cfg.Copies) {
		return nil, fmt.Errorf("%w: %d devices for %d copies", ErrConfig, len(devs), len(cfg.Copies))
	}
	e := &Env{cfg: cfg, devs: devs}
	for _, o := range opts {
		o(&e.opts)
	}
	schemes := map[FlagScheme]bool{}
	for i, l := range cfg.Copies {
		off := l.Offset
		if off < 0 {
			s, ok := devs[i].(sizer)
			if !ok {
				return nil, fmt.Errorf("%w: copy %d: offset %d from the end of a device of unknown size", ErrConfig, i+1, off)
			}
			off += s.Size()
			if off < 0 {
				return nil, fmt.Errorf("%w: copy %d: offset %d before the start of %s", ErrConfig, i+1, l.Offset, l.Device)
			}
		}
		e.offs = append(e.offs, off)
		s := Incremental
		if f, ok := devs[i].(Flash); ok {
			info := f.Info()
			if info.EraseSize <= 0 {
				return nil, fmt.Errorf("%w: %s: erase size %d", ErrConfig, l.Device, info.EraseSize)
			}
			if l.SectorSize != 0 && l.SectorSize%info.EraseSize != 0 {
				return nil, fmt.Errorf("%w: %s: sector size %#x is not a multiple of the erase size %#x", ErrConfig, l.Device, l.SectorSize, info.EraseSize)
			}
			if _, end := e.region(i); end > info.Size {
				return nil, fmt.Errorf("%w: copy %d ends at %#x, beyond the end of %s (%#x)", ErrConfig, i+1, end, l.Device, info.Size)
			}
			if info.NOR {
				s = Boolean
			}
		}
		schemes[s] = true
	}
	if !e.opts.setScheme {
		if len(schemes) > 1 {
			return nil, fmt.Errorf("%w: the copies are on NOR flash and on other storage; their flags schemes differ", ErrConfig)
		}
		for s := range schemes {
			e.opts.scheme = s
		}
	}
	if e.opts.scheme == Boolean {
		for i, d := range devs {
			if f, ok := d.(Flash); ok && !f.Info().NOR {
				return nil, fmt.Errorf("%w: boolean flags need NOR flash; %s is NAND", ErrConfig, cfg.Copies[i].Device)
			}
		}
	}
	if cfg.Redundant() && devs[0] == devs[1] {
		as, ae := e.region(0)
		bs, be := e.region(1)
		if as < be && bs < ae {
			return nil, fmt.Errorf("%w: the copies share erase blocks on %s", ErrConfig, cfg.Copies[0].Device)
		}
	}
	return e, nil
}

// region returns the byte range copy i rewrites: the copy itself, or on a
// Flash the whole erase blocks it spans.
func (e *Env) region(i int) (start, end int64) {
	l := e.cfg.Copies[i]
	l.Offset = e.offs[i]
	f, ok := e.devs[i].(Flash)
	if !ok {
		return l.span(0)
	}
	sector := l.SectorSize
	if sector == 0 {
		sector = f.Info().EraseSize
	}
	return l.span(sector)
}

// Open opens the devices cfg names and returns the environment over them:
// an MTD character device with OpenMTD, a block device or file with
// blockdev.Open, read-write where it may and read-only otherwise. Close
// closes them.
func Open(cfg Config, opts ...Option) (*Env, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var devs []Dev
	var closers []io.Closer
	opened := map[string]Dev{}
	fail := func(err error) (*Env, error) {
		for _, c := range closers {
			c.Close()
		}
		return nil, err
	}
	for _, l := range cfg.Copies {
		if d, ok := opened[l.Device]; ok {
			devs = append(devs, d)
			continue
		}
		d, c, err := openDev(l)
		if err != nil {
			return fail(fmt.Errorf("open U-Boot environment %s: %w", l.Device, err))
		}
		opened[l.Device] = d
		devs = append(devs, d)
		closers = append(closers, c)
	}
	e, err := New(cfg, devs, opts...)
	if err != nil {
		return fail(err)
	}
	e.closer = closers
	return e, nil
}

// openDev opens one device, read-write if it may.
func openDev(l Location) (Dev, io.Closer, error) {
	fi, err := os.Stat(l.Device)
	if err != nil {
		return nil, nil, err
	}
	mtd := fi.Mode()&fs.ModeCharDevice != 0
	open := func(flag int) (Dev, io.Closer, error) {
		if mtd {
			m, err := OpenMTD(l.Device, flag)
			if err != nil {
				return nil, nil, err
			}
			m.SkipUnlock = l.NoLock
			return m, m, nil
		}
		f, err := blockdev.Open(l.Device, flag)
		if err != nil {
			return nil, nil, err
		}
		return f, f, nil
	}
	d, c, err := open(os.O_RDWR)
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		d, c, err = open(os.O_RDONLY)
	}
	return d, c, err
}

// Close closes the devices Open opened; it does nothing for an Env from
// New.
func (e *Env) Close() error {
	var errs []error
	for _, c := range e.closer {
		errs = append(errs, c.Close())
	}
	e.closer = nil
	return errors.Join(errs...)
}

// String names the environment by its devices.
func (e *Env) String() string {
	var names []string
	for _, l := range e.cfg.Copies {
		names = append(names, fmt.Sprintf("%s@%#x", l.Device, l.Offset))
	}
	return "U-Boot environment " + strings.Join(names, ",")
}

// CopyStatus is the state of one copy.
type CopyStatus struct {
	Location Location
	// Flags is the copy's flags byte (redundant environments only).
	Flags byte
	// Err is nil for a copy U-Boot can use, or wraps ErrBadCRC (U-Boot
	// skips the copy) or ErrImport (U-Boot takes it by its CRC, fails to
	// import it, and uses its defaults).
	Err error
	// Vars are the copy's variables when Err is nil.
	Vars bootenv.Vars
}

// Status is the state of both copies and which one U-Boot takes.
type Status struct {
	Copies []CopyStatus
	// Active is the index of the copy U-Boot takes, or -1 when none has
	// a good CRC.
	Active int
	Scheme FlagScheme
}

// Status reads every copy and tells which one U-Boot would take.
func (e *Env) Status(ctx context.Context) (Status, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return Status{}, err
	}
	return e.status()
}

func (e *Env) status() (Status, error) {
	st := Status{Scheme: e.opts.scheme, Active: -1}
	var valid [2]bool
	var flags [2]byte
	for i, l := range e.cfg.Copies {
		buf := make([]byte, l.Size)
		n, err := e.devs[i].ReadAt(buf, e.offs[i])
		if err != nil && !(errors.Is(err, io.EOF) && n == len(buf)) {
			if !errors.Is(err, io.EOF) {
				return Status{}, fmt.Errorf("read %s copy %d at %#x: %w", e, i+1, e.offs[i], err)
			}
			st.Copies = append(st.Copies, CopyStatus{Location: l, Err: fmt.Errorf("%w: device ends %d bytes into the copy", bootenv.ErrCorrupt, n)})
			continue
		}
		im, err := decode(buf, e.cfg.Redundant())
		st.Copies = append(st.Copies, CopyStatus{Location: l, Flags: im.Flags, Err: err, Vars: im.Vars})
		valid[i] = err == nil || errors.Is(err, ErrImport)
		flags[i] = im.Flags
	}
	if e.cfg.Redundant() {
		st.Active = Select(e.opts.scheme, valid, flags)
	} else if valid[0] {
		st.Active = 0
	}
	return st, nil
}

// Load returns the variables U-Boot would import now: those of the copy
// it selects. When no copy has a good CRC, or the selected one cannot be
// imported, U-Boot uses its defaults and Load returns an error wrapping
// bootenv.ErrNoEnv.
func (e *Env) Load(ctx context.Context) (bootenv.Vars, error) {
	st, err := e.Status(ctx)
	if err != nil {
		return nil, err
	}
	if st.Active < 0 {
		var errs []error
		for i, c := range st.Copies {
			errs = append(errs, fmt.Errorf("copy %d: %w", i+1, c.Err))
		}
		return nil, fmt.Errorf("%s: %w (%w)", e, bootenv.ErrNoEnv, errors.Join(errs...))
	}
	c := st.Copies[st.Active]
	if c.Err != nil {
		return nil, fmt.Errorf("%s: copy %d: %w (%w)", e, st.Active+1, bootenv.ErrNoEnv, c.Err)
	}
	return c.Vars, nil
}

// Save replaces the variables. With two copies it writes the copy U-Boot
// does not use now, with the flags byte that makes it the newer one,
// flushes it and reads it back; only a whole copy has a good CRC, so a
// power cut at any point leaves U-Boot the old variables or the new. On
// NOR flash (Boolean flags) it then marks the old copy obsolete. With a
// single copy it fails with ErrSingleCopy unless AllowSingleCopy was
// given. Variables with empty values are left out: in U-Boot an empty
// value deletes the variable.
func (e *Env) Save(ctx context.Context, v bootenv.Vars) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if !e.cfg.Redundant() && !e.opts.single {
		return fmt.Errorf("save %s: %w", e, ErrSingleCopy)
	}
	st, err := e.status()
	if err != nil {
		return err
	}
	im := Image{Redundant: e.cfg.Redundant(), Vars: v}
	target, old := 0, st.Active
	if im.Redundant {
		switch old {
		case -1:
			im.Flags = e.opts.scheme.NextFlags(0)
		default:
			target = 1 - old
			im.Flags = e.opts.scheme.NextFlags(st.Copies[old].Flags)
		}
	}
	buf, err := im.Encode(e.cfg.Copies[target].Size)
	if err != nil {
		return fmt.Errorf("save %s: %w", e, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := e.write(target, buf); err != nil {
		return fmt.Errorf("save %s: write copy %d: %w", e, target+1, err)
	}
	if im.Redundant && old >= 0 && e.opts.scheme == Boolean {
		d := e.devs[old]
		if _, err := d.WriteAt([]byte{FlagObsolete}, e.offs[old]+4); err != nil {
			return fmt.Errorf("save %s: mark copy %d obsolete: %w", e, old+1, err)
		}
		if err := d.Flush(); err != nil {
			return fmt.Errorf("save %s: mark copy %d obsolete: %w", e, old+1, err)
		}
	}
	return nil
}

// write writes the whole copy buf as copy i, flushes it and reads it back.
// On a Flash it rewrites the erase blocks the copy spans, keeping what
// else they hold.
func (e *Env) write(i int, buf []byte) error {
	d, off := e.devs[i], e.offs[i]
	if f, ok := d.(Flash); ok {
		start, end := e.region(i)
		region := make([]byte, end-start)
		if _, err := f.ReadAt(region, start); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		copy(region[off-start:], buf)
		if err := f.Erase(start, end-start); err != nil {
			return err
		}
		if _, err := f.WriteAt(region, start); err != nil {
			return err
		}
	} else if _, err := d.WriteAt(buf, off); err != nil {
		return err
	}
	if err := d.Flush(); err != nil {
		return err
	}
	back := make([]byte, len(buf))
	if n, err := d.ReadAt(back, off); err != nil && !(errors.Is(err, io.EOF) && n == len(back)) {
		return fmt.Errorf("read back: %w", err)
	}
	if !bytes.Equal(back, buf) {
		return ErrVerify
	}
	return nil
}
