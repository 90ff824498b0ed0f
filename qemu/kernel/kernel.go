// Package kernel fetches a Debian kernel package for the VM test tier and
// keeps it unpacked in a cache: the kernel image to boot and its modules,
// with a modules.dep (Debian generates that file at install time, so the
// package has none; we write it from the modules' .modinfo).
//
// A known build is pinned by version and .deb SHA-256, and by Debian
// architecture when it is not the host's: the arm64 kernel is fetched on an
// amd64 host with APT's own state under the cache (see Apt), without
// dpkg --add-architecture. When the mirror no
// longer has it (Debian drops superseded security builds), the current build
// the metapackage points at is used instead, with a log line saying so; and
// with no mirror at all, the newest kernel already in the cache.
package kernel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/kmod"
)

// Meta is the Debian metapackage that depends on the current cloud kernel.
const Meta = "linux-image-cloud-amd64"

// MetaArm64 is Meta for arm64.
const MetaArm64 = "linux-image-cloud-arm64"

// Pin names one build of a Debian kernel package.
type Pin struct {
	Package string // "linux-image-6.1.0-56-cloud-amd64"
	Version string // Debian version, "6.1.192-2"
	SHA256  string // of the .deb, hex
	Arch    string // Debian architecture, "arm64"; "" for the host's
}

// Pinned is the kernel the VM tier was last checked against.
func Pinned() Pin {
	return Pin{
		Package: "linux-image-6.1.0-56-cloud-amd64",
		Version: "6.1.192-2",
		SHA256:  "e7d02b943971edcb8790e256c02cfab3bca6c3d37c1bf25392a57c71300615ee",
	}
}

// PinnedArm64 is the arm64 kernel the U-Boot boot test (tests/boot) was
// last checked against: the same build as Pinned, for arm64. Its image is
// an uncompressed arm64 Image, which U-Boot's booti takes as it is.
func PinnedArm64() Pin {
	return Pin{
		Package: "linux-image-6.1.0-56-cloud-arm64",
		Version: "6.1.192-2",
		SHA256:  "481ab54a27246579aadeb372315c56de02f2fe0cba4e09b387946269fff2f415",
		Arch:    "arm64",
	}
}

var (
	// ErrChecksum means a downloaded package does not have the pinned SHA-256.
	ErrChecksum = errors.New("kernel package checksum mismatch")
	// ErrUnavailable means no kernel could be downloaded and none is cached.
	ErrUnavailable = errors.New("no kernel available")
)

// Kernel is an unpacked kernel package in the cache.
type Kernel struct {
	Package string `json:"package"`
	Version string `json:"version"`
	Release string `json:"release"`        // uname -r: "6.1.0-56-cloud-amd64"
	SHA256  string `json:"sha256"`         // of the .deb
	Arch    string `json:"arch,omitempty"` // Pin.Arch: "" for the host's
	Dir     string `json:"-"`              // root of the unpacked package
}

// Image is the path of the kernel image to boot: a bzImage on amd64, an
// uncompressed Image on arm64.
func (k *Kernel) Image() string { return filepath.Join(k.Dir, "boot", "vmlinuz-"+k.Release) }

// ModulesDir is the path of the package's lib/modules/RELEASE.
func (k *Kernel) ModulesDir() string { return filepath.Join(k.Dir, "lib", "modules", k.Release) }

// Config is the path of the kernel's build configuration.
func (k *Kernel) Config() string { return filepath.Join(k.Dir, "boot", "config-"+k.Release) }

// Modules opens the module index (modules.dep and modules.builtin).
func (k *Kernel) Modules() (*kmod.Index, error) { return kmod.Open(k.ModulesDir()) }

func (k *Kernel) String() string { return fmt.Sprintf("%s %s (%s)", k.Package, k.Version, k.Release) }

// Source fetches Debian packages.
type Source interface {
	// Depends returns the package that the metapackage meta depends on.
	Depends(ctx context.Context, meta string) (string, error)
	// Download fetches pkg at version ("" for the candidate) into dir and
	// returns the path of the .deb.
	Download(ctx context.Context, pkg, version, dir string) (string, error)
}

// Cache keeps unpacked kernels in Dir/kernel/PACKAGE_VERSION.
type Cache struct {
	Dir    string
	Source Source                      // nil means Apt (for a Pin.Arch, with its state in Dir/apt/ARCH)
	Logf   func(string, ...any)        // progress and fallback notes; nil discards
	Unpack func(deb, dir string) error // nil means dpkg-deb -x
}

// DefaultDir is the cache directory: $LIFEBOAT_CACHE, else
// $XDG_CACHE_HOME/lifeboat, else ~/.cache/lifeboat.
func DefaultDir() (string, error) {
	if d := os.Getenv("LIFEBOAT_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache directory: %w", err)
	}
	return filepath.Join(d, "lifeboat"), nil
}

func (c *Cache) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

func (c *Cache) source(arch string) Source {
	switch {
	case c.Source != nil:
		return c.Source
	case arch != "":
		return Apt{Arch: arch, Dir: filepath.Join(c.Dir, "apt", arch)}
	}
	return Apt{}
}

func (c *Cache) root() string { return filepath.Join(c.Dir, "kernel") }

func entryName(pkg, version string) string {
	return pkg + "_" + strings.ReplaceAll(version, ":", "%3a")
}

// Get returns the pinned kernel, downloading and unpacking it the first time.
// If the mirror no longer has the pinned build it falls back to the build meta
// depends on (or "" for no fallback), and if that cannot be had either, to the
// newest kernel in the cache of the pin's architecture. Concurrent callers, in
// this process or others, download at most once: they serialise on a lock
// file, and an entry appears in the cache only when complete.
func (c *Cache) Get(ctx context.Context, pin Pin, meta string) (*Kernel, error) {
	if err := os.MkdirAll(c.root(), 0o755); err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	unlock, err := lock(ctx, filepath.Join(c.root(), ".lock"))
	if err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	defer unlock()

	if k, err := c.load(entryName(pin.Package, pin.Version)); err == nil {
		return k, nil
	}
	k, err := c.fetch(ctx, pin.Arch, pin.Package, pin.Version, pin.SHA256)
	if err == nil || errors.Is(err, ErrChecksum) || ctx.Err() != nil {
		return k, err
	}
	pinErr := err
	if meta != "" {
		c.logf("kernel: pinned %s %s is not available (%v); falling back to the current %s", pin.Package, pin.Version, err, meta)
		var pkg string
		pkg, err = c.source(pin.Arch).Depends(ctx, meta)
		if err == nil {
			k, err = c.fetchCurrent(ctx, pin.Arch, pkg)
		}
		if err == nil {
			c.logf("kernel: using %s instead of the pinned %s %s", k, pin.Package, pin.Version)
			return k, nil
		}
	}
	if k, cerr := c.newest(pin.Arch); cerr == nil {
		c.logf("kernel: cannot download a kernel (%v); using the cached %s", err, k)
		return k, nil
	}
	return nil, fmt.Errorf("%w: pinned %s %s: %w; current: %w", ErrUnavailable, pin.Package, pin.Version, pinErr, err)
}

// fetchCurrent reuses a cached build of pkg when the candidate version is
// already there; apt tells us the version only by downloading, so a cached
// entry of pkg is taken as current.
func (c *Cache) fetchCurrent(ctx context.Context, arch, pkg string) (*Kernel, error) {
	ents, _ := filepath.Glob(filepath.Join(c.root(), entryName(pkg, "*")))
	sort.Strings(ents)
	for i := len(ents) - 1; i >= 0; i-- {
		if k, err := c.load(filepath.Base(ents[i])); err == nil {
			return k, nil
		}
	}
	return c.fetch(ctx, arch, pkg, "", "")
}

// fetch downloads pkg of arch ("" for the host's) and unpacks it into the
// cache.
func (c *Cache) fetch(ctx context.Context, arch, pkg, version, sum string) (*Kernel, error) {
	tmp, err := os.MkdirTemp(c.root(), ".tmp-")
	if err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	c.logf("kernel: downloading %s %s", pkg, version)
	deb, err := c.source(arch).Download(ctx, pkg, version, tmp)
	if err != nil {
		return nil, err
	}
	got, err := fileSHA256(deb)
	if err != nil {
		return nil, err
	}
	if sum != "" && got != sum {
		return nil, fmt.Errorf("%w: %s %s has SHA-256 %s, want %s", ErrChecksum, pkg, version, got, sum)
	}
	root := filepath.Join(tmp, "root")
	unpack := c.Unpack
	if unpack == nil {
		unpack = dpkgUnpack
	}
	if err := unpack(deb, root); err != nil {
		return nil, err
	}
	k, err := describe(root, pkg, version, deb)
	if err != nil {
		return nil, err
	}
	k.SHA256 = got
	k.Arch = arch
	if err := c.prepare(k, root); err != nil {
		return nil, err
	}
	final := filepath.Join(c.root(), entryName(k.Package, k.Version))
	if err := os.Rename(root, final); err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	k.Dir = final
	c.logf("kernel: %s unpacked into %s in %v", k, final, time.Since(start).Round(time.Millisecond))
	return k, nil
}

// describe finds the release of an unpacked package and its version (from the
// .deb file name when the caller asked for the candidate).
func describe(root, pkg, version, deb string) (*Kernel, error) {
	imgs, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(imgs) != 1 {
		return nil, fmt.Errorf("%s: want one boot/vmlinuz-*, found %d", filepath.Base(deb), len(imgs))
	}
	release := strings.TrimPrefix(filepath.Base(imgs[0]), "vmlinuz-")
	if version == "" {
		// pkg_VERSION_ARCH.deb, the epoch's ':' escaped as %3a.
		parts := strings.Split(strings.TrimSuffix(filepath.Base(deb), ".deb"), "_")
		if len(parts) != 3 || parts[0] != pkg {
			return nil, fmt.Errorf("%s: cannot tell the version from the file name", filepath.Base(deb))
		}
		version = strings.ReplaceAll(parts[1], "%3a", ":")
	}
	return &Kernel{Package: pkg, Version: version, Release: release}, nil
}

// prepare writes modules.dep (if the package has none) and kernel.json.
func (c *Cache) prepare(k *Kernel, root string) error {
	k.Dir = root
	if _, err := os.Stat(k.Image()); err != nil {
		return fmt.Errorf("kernel package %s: %w", k.Package, err)
	}
	dep := filepath.Join(k.ModulesDir(), "modules.dep")
	if _, err := os.Stat(dep); errors.Is(err, os.ErrNotExist) {
		d, err := kmod.GenerateDep(k.ModulesDir())
		if err != nil {
			return err
		}
		f, err := os.Create(dep)
		if err != nil {
			return err
		}
		if _, err := d.WriteTo(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, "kernel.json"), append(b, '\n'), 0o644)
}

// load reads a complete cache entry.
func (c *Cache) load(name string) (*Kernel, error) {
	dir := filepath.Join(c.root(), name)
	b, err := os.ReadFile(filepath.Join(dir, "kernel.json"))
	if err != nil {
		return nil, err
	}
	var k Kernel
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if k.Release == "" || strings.ContainsAny(k.Release, "/\x00") {
		return nil, fmt.Errorf("%s: bad release %q", dir, k.Release)
	}
	k.Dir = dir
	return &k, nil
}

// newest returns the most recently unpacked complete entry of arch.
func (c *Cache) newest(arch string) (*Kernel, error) {
	ents, err := os.ReadDir(c.root())
	if err != nil {
		return nil, err
	}
	var best *Kernel
	var bestTime time.Time
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || !e.IsDir() {
			continue
		}
		k, err := c.load(e.Name())
		if err != nil || k.Arch != arch {
			continue
		}
		fi, err := os.Stat(filepath.Join(k.Dir, "kernel.json"))
		if err != nil {
			continue
		}
		if best == nil || fi.ModTime().After(bestTime) {
			best, bestTime = k, fi.ModTime()
		}
	}
	if best == nil {
		return nil, ErrUnavailable
	}
	return best, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
