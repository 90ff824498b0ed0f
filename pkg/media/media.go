// Package media finds removable media holding a release bundle, for the
// recovery ramdisk: USB sticks and SD cards. It scans /sys/block for disks
// that are removable or attached over USB or MMC (and their partitions),
// waiting for them to appear, since USB storage enumerates a second or two
// after boot; mounts each read-only (vfat, then ext4, then iso9660, those the
// kernel has) and looks for a bundle (pkg/publish.Bundle's layout, whose
// metadata/timestamp.json a device reads first) at the file system's root or
// in a lifeboat/ directory. What holds no bundle is unmounted again.
//
// Mounting goes through the Mounter seam (Linux, FakeMounter), and sysfs
// and /proc are read under a root directory, so the logic is tested on a
// fake tree without root; the VM test attaches real USB sticks.
package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/release"
)

var (
	// ErrNoMedia means no removable medium appeared in time.
	ErrNoMedia = errors.New("no removable media found")
	// ErrNoBundle means removable media appeared but none held a bundle;
	// the error also wraps a *DeviceError for each.
	ErrNoBundle = errors.New("no bundle on the removable media")
)

// BundleMarker is the file whose presence makes a directory a bundle: the
// timestamp role, which a device reads first.
var BundleMarker = path.Join(release.MetadataDir, "timestamp.json")

// BundleDirs are where on a medium a bundle is looked for, in order.
var BundleDirs = []string{".", "lifeboat"}

// DeviceError says why one medium was no use.
type DeviceError struct {
	Device string // "sda1"
	FSType string // the file system it was mounted as; "" if none would mount
	Err    error
}

func (e *DeviceError) Error() string {
	if e.FSType != "" {
		return fmt.Sprintf("found %s (%s) but %v", e.Device, e.FSType, e.Err)
	}
	return fmt.Sprintf("found %s but %v", e.Device, e.Err)
}

func (e *DeviceError) Unwrap() error { return e.Err }

// Mounter is media's seam to mount(2). Linux is the real one; FakeMounter
// is for tests.
type Mounter interface {
	// Mount mounts the file system of type fstype on the device dev at the
	// existing directory dir, read-only, without devices, set-uid or
	// executables.
	Mount(dev, dir, fstype string) error
	// Unmount unmounts dir.
	Unmount(dir string) error
}

// DefaultDir is where media are mounted by default.
const DefaultDir = "/run/lifeboat/media"

// DefaultFSTypes are the file systems tried, in order.
var DefaultFSTypes = []string{"vfat", "ext4", "iso9660"}

// Config says where to look and how long to wait. Zero values take the
// defaults in brackets.
type Config struct {
	// Root is the root of sysfs (Root/sys), /proc/filesystems and the
	// device nodes (Root/dev) ["/"]: a fake tree in tests.
	Root string
	// Dir is where media are mounted, each on Dir/NAME [/run/lifeboat/media].
	Dir string
	// Timeout bounds the wait for a medium [10s]; ctx may end it sooner.
	Timeout time.Duration
	// Settle is how long to go on waiting for another medium after the
	// last new one, once those found hold no bundle [2s].
	Settle time.Duration
	// Poll is how often /sys/block is read while waiting [250ms].
	Poll time.Duration
	// FSTypes are the file systems to try, in order, of those the kernel
	// has (/proc/filesystems lists them once their modules are loaded)
	// [vfat, ext4, iso9660].
	FSTypes []string
	// Exclude are disks (sysfs names) never to look at: the board's own
	// disk when it is an SD card or USB attached ("mmcblk0").
	Exclude []string

	Mounter Mounter      // [Linux]
	Log     *slog.Logger // progress, a line per step; nil discards
}

func (c Config) withDefaults() Config {
	if c.Root == "" {
		c.Root = "/"
	}
	if c.Dir == "" {
		c.Dir = DefaultDir
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Settle == 0 {
		c.Settle = 2 * time.Second
	}
	if c.Poll == 0 {
		c.Poll = 250 * time.Millisecond
	}
	if c.FSTypes == nil {
		c.FSTypes = DefaultFSTypes
	}
	if c.Mounter == nil {
		c.Mounter = Linux{}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate refuses settings that cannot work.
func (c *Config) Validate() error {
	if c.Timeout < 0 || c.Settle < 0 || c.Poll < 0 {
		return errors.New("media: negative duration")
	}
	if c.FSTypes != nil && len(c.FSTypes) == 0 {
		return errors.New("media: no file system types to try")
	}
	return nil
}

// Medium is a mounted medium holding a bundle.
type Medium struct {
	Candidate
	FSType     string // "vfat"
	MountPoint string // Dir/NAME
	// Bundle is the bundle's directory: MountPoint or MountPoint/lifeboat.
	Bundle string

	mounter Mounter
	closed  bool
}

func (m *Medium) String() string {
	what := m.FSType
	if m.Bus != "" {
		what = m.Bus + ", " + what
	}
	return fmt.Sprintf("%s (%s) on %s, bundle in %s", m.Name, what, m.MountPoint, m.Bundle)
}

// Fetcher reads the bundle as a repository.
func (m *Medium) Fetcher() release.DirFetcher { return release.DirFetcher{Dir: m.Bundle} }

// Close unmounts the medium and removes its mount point; again, it does
// nothing.
func (m *Medium) Close() error {
	if m.closed {
		return nil
	}
	if err := m.mounter.Unmount(m.MountPoint); err != nil {
		return err
	}
	m.closed = true
	os.Remove(m.MountPoint)
	return nil
}

// Find waits for removable media and returns the first that holds a
// bundle, mounted read-only; the caller closes it. Media without one are
// unmounted. When none appears in time its error wraps ErrNoMedia ("no
// removable media found after 10s"); when some did but held no bundle, it
// wraps ErrNoBundle and a *DeviceError for each ("found sda1 (vfat) but no
// bundle in it: looked for ...").
func Find(ctx context.Context, cfg Config) (*Medium, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	fstypes := c.fstypes()

	tried := map[string]bool{}
	var failed []*DeviceError
	partitioned := map[string]bool{} // disks seen with partitions
	var settled <-chan time.Time     // after Settle with nothing new
	tick := time.NewTicker(c.Poll)
	defer tick.Stop()
	waiting := false
	for {
		cands, err := scan(c.Root, c.Exclude)
		if err != nil {
			return nil, fmt.Errorf("media: %w", err)
		}
		found := false
		for _, cand := range cands {
			if cand.Name != cand.Disk {
				partitioned[cand.Disk] = true
			}
			if tried[cand.Name] {
				continue
			}
			if _, err := os.Stat(cand.Device); err != nil {
				continue // its node is not there yet
			}
			tried[cand.Name] = true
			found = true
			c.Log.Info("media: found", "device", cand.Name, "bus", cand.Bus, "size", cand.Size)
			m, derr := c.try(cand, fstypes)
			if derr == nil {
				c.Log.Info("media: bundle", "device", m.Name, "fs", m.FSType, "dir", m.Bundle)
				return m, nil
			}
			c.Log.Info("media: no bundle", "err", derr)
			failed = append(failed, derr)
		}
		if found {
			settled = time.After(c.Settle)
		}
		if !waiting && len(tried) == 0 {
			c.Log.Info("media: waiting for removable media", "timeout", c.Timeout)
			waiting = true
		}
		select {
		case <-ctx.Done():
			if err := context.Cause(ctx); !errors.Is(err, context.DeadlineExceeded) {
				return nil, fmt.Errorf("media: %w", err)
			}
			if len(failed) > 0 {
				return nil, noBundle(failed, partitioned)
			}
			return nil, fmt.Errorf("%w after %v", ErrNoMedia, time.Since(start).Round(100*time.Millisecond))
		case <-settled:
			return nil, noBundle(failed, partitioned)
		case <-tick.C:
		}
	}
}

// noBundle is Find's error when the media found held no bundle. A whole
// disk tried before the kernel had listed its partitions is left out.
func noBundle(failed []*DeviceError, partitioned map[string]bool) error {
	var errs []error
	for _, e := range failed {
		if !partitioned[e.Device] {
			errs = append(errs, e)
		}
	}
	if len(errs) == 0 { // every failure was such a disk: keep them
		for _, e := range failed {
			errs = append(errs, e)
		}
	}
	return fmt.Errorf("%w: %w", ErrNoBundle, errors.Join(errs...))
}

// fstypes are the file systems to try: those of c.FSTypes the kernel has,
// or all of them if it lists none (it may load modules on demand).
func (c *Config) fstypes() []string {
	have, err := kernelFS(c.Root)
	if err != nil {
		c.Log.Warn("media: cannot tell which file systems the kernel has", "err", err)
		return c.FSTypes
	}
	var out []string
	for _, t := range c.FSTypes {
		if have[t] {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		c.Log.Warn("media: the kernel lists none of the file systems; trying them all", "fs", c.FSTypes)
		return c.FSTypes
	}
	return out
}

// try mounts cand as each file system in turn and looks for a bundle.
func (c *Config) try(cand Candidate, fstypes []string) (*Medium, *DeviceError) {
	mp := filepath.Join(c.Dir, cand.Name)
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return nil, &DeviceError{Device: cand.Name, Err: fmt.Errorf("no mount point: %w", err)}
	}
	var errs []error
	for _, fs := range fstypes {
		err := c.Mounter.Mount(cand.Device, mp, fs)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if dir, ok := findBundle(mp); ok {
			return &Medium{Candidate: cand, FSType: fs, MountPoint: mp, Bundle: dir, mounter: c.Mounter}, nil
		}
		derr := &DeviceError{Device: cand.Name, FSType: fs, Err: fmt.Errorf("no bundle in it: looked for %s", lookedFor())}
		if err := c.Mounter.Unmount(mp); err != nil {
			derr.Err = fmt.Errorf("%w, and %w", derr.Err, err)
			return nil, derr // the mount point stays: it is still mounted
		}
		os.Remove(mp)
		return nil, derr
	}
	os.Remove(mp)
	return nil, &DeviceError{Device: cand.Name, Err: fmt.Errorf("cannot mount it read-only as %s: %w", orList(fstypes), errors.Join(errs...))}
}

// findBundle returns the bundle directory under mp, if there is one.
func findBundle(mp string) (string, bool) {
	for _, d := range BundleDirs {
		dir := filepath.Join(mp, d)
		if fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(BundleMarker))); err == nil && fi.Mode().IsRegular() {
			return dir, true
		}
	}
	return "", false
}

// lookedFor lists the files findBundle looks for.
func lookedFor() string {
	var s []string
	for _, d := range BundleDirs {
		s = append(s, path.Join(d, BundleMarker))
	}
	return strings.Join(s, " and ")
}

func orList(s []string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
