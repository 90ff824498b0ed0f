// Package scenario sets up the recovery ramdisk's update story for a
// board, on the host: the ramdisk built from this checkout (carrying the
// repository's root.json), two demo OS releases signed into a repository,
// slot A's factory content (release 1 installed by the same pipeline a
// device runs), and disks for the board's QEMU machine. `make demo` and the end-to-end tests both start
// from it.
package scenario

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/lifeboat-update/lifeboat/demo"
	"github.com/lifeboat-update/lifeboat/initramfs"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/install"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/pkg/store"
	"github.com/lifeboat-update/lifeboat/pkg/verity"
	"github.com/lifeboat-update/lifeboat/qemu/boardkernel"
	"github.com/lifeboat-update/lifeboat/qemu/device"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

// Versions are the releases a scenario publishes, oldest first.
var Versions = []string{"1", "2"}

// Options say where to build a scenario.
type Options struct {
	Board *board.Board
	// Dir is the work directory: it receives the ramdisk, the images, the
	// keys and the repositories.
	Dir string
	// ModuleRoot is this checkout, for the ramdisk build; "" means the
	// module holding the working directory.
	ModuleRoot string
	Logf       func(format string, args ...any)
}

// Scenario is what Build made.
type Scenario struct {
	Board   *board.Board
	Kernel  string // the board kernel's image
	Ramdisk string
	// RamdiskResult says what the ramdisk weighs.
	RamdiskResult *initramfs.Result
	// Repo holds every version, signed; OldRepo is the same repository
	// when it held the first version only (a frozen mirror).
	Repo, OldRepo string
	// Root is the repository's root.json: a device's root of trust.
	Root []byte
	// SlotV1 is a slot's content with release 1 installed.
	SlotV1   string
	Releases map[string]release.Release
	// Images are the demo images, by version.
	Images map[string]string

	kernel *kernel.Kernel
	keys   publish.KeySet
}

// Build sets up the scenario in opt.Dir.
func Build(ctx context.Context, opt Options) (*Scenario, error) {
	b := opt.Board
	logf := opt.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(opt.Dir, 0o755); err != nil {
		return nil, err
	}
	s := &Scenario{Board: b, Releases: map[string]release.Release{}, Images: map[string]string{}}
	k, err := boardkernel.Get(ctx, "", b, logf)
	if err != nil {
		return nil, err
	}
	s.Kernel, s.kernel = k.Image(), k

	// New keys, for the repository made anew below.
	keyDir := filepath.Join(opt.Dir, "keys")
	if err := os.RemoveAll(keyDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return nil, err
	}
	ks, err := publish.GenerateKeySet(keyDir)
	if err != nil {
		return nil, err
	}
	s.Repo = filepath.Join(opt.Dir, "repo")
	if err := os.RemoveAll(s.Repo); err != nil {
		return nil, err
	}
	s.keys = ks
	repo, err := publish.Init(s.Repo, ks, nil)
	if err != nil {
		return nil, err
	}
	rootPath := filepath.Join(s.Repo, release.MetadataDir, "1.root.json")
	if s.Root, err = os.ReadFile(rootPath); err != nil {
		return nil, err
	}
	// The ramdisk carries the root too: a factory reset provisions the new
	// data partition's trusted state from it.
	s.Ramdisk = filepath.Join(opt.Dir, "ramdisk.cpio.xz")
	s.RamdiskResult, err = initramfs.Build(ctx, initramfs.Options{Board: b, Output: s.Ramdisk, Root: rootPath, ModuleRoot: opt.ModuleRoot, Logf: logf})
	if err != nil {
		return nil, fmt.Errorf("ramdisk: %w", err)
	}
	for i, v := range Versions {
		if err := s.publish(ctx, repo, opt.Dir, v, demo.Options{}); err != nil {
			return nil, err
		}
		logf("scenario: published release %s", v)
		if i == 0 {
			s.OldRepo = filepath.Join(opt.Dir, "repo-"+v)
			if err := os.RemoveAll(s.OldRepo); err != nil {
				return nil, err
			}
			if err := copyTree(s.OldRepo, s.Repo); err != nil {
				return nil, err
			}
		}
	}
	if err := s.factoryInstall(ctx, opt.Dir); err != nil {
		return nil, fmt.Errorf("factory install of release 1: %w", err)
	}
	return s, nil
}

// WithRelease returns a copy of the scenario whose repository, a copy of
// s's in dir, also holds release version: a demo image built with opt
// (its Board, Kernel, Version and Out are the scenario's), published and
// signed as Build publishes the others.
func (s *Scenario) WithRelease(ctx context.Context, dir, version string, opt demo.Options) (*Scenario, error) {
	c := *s
	c.Releases, c.Images = maps.Clone(s.Releases), maps.Clone(s.Images)
	c.Repo = filepath.Join(dir, "repo")
	if err := copyTree(c.Repo, s.Repo); err != nil {
		return nil, err
	}
	if err := c.publish(ctx, &publish.Repo{Dir: c.Repo}, dir, version, opt); err != nil {
		return nil, err
	}
	return &c, nil
}

// publish builds the demo image of version shaped by opt into dir and
// adds it to repo as a release.
func (s *Scenario) publish(ctx context.Context, repo *publish.Repo, dir, version string, opt demo.Options) error {
	img := filepath.Join(dir, "demo-"+version+".img")
	opt.Board, opt.Kernel, opt.Version, opt.Out = s.Board, s.kernel, version, img
	if _, err := demo.BuildImage(ctx, opt); err != nil {
		return fmt.Errorf("demo image %s: %w", version, err)
	}
	p := verity.DefaultParams()
	im, err := repo.AddImage(ctx, "rootfs", img, publish.ImageOptions{Params: chunk.DefaultParams, Digest: chunk.SHA512256, Verity: &p})
	if err != nil {
		return err
	}
	rel := release.Release{Board: s.Board.Name, Version: version, Created: time.Now().UTC(), Images: []release.Image{im}}
	if err := repo.AddRelease(rel, s.keys); err != nil {
		return err
	}
	s.Releases[version], s.Images[version] = rel, img
	return nil
}

// factoryInstall installs release 1 into a file, SlotV1, from the frozen
// mirror, by the pipeline a device runs.
func (s *Scenario) factoryInstall(ctx context.Context, dir string) error {
	s.SlotV1 = filepath.Join(dir, "slot-v1.img")
	state := filepath.Join(dir, "factory-state")
	for _, p := range []string{s.SlotV1, state} {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	if err := os.Mkdir(state, 0o700); err != nil {
		return err
	}
	if err := release.Provision(durable.OS(state), s.Root); err != nil {
		return err
	}
	st, err := store.NewLocal(filepath.Join(s.OldRepo, release.StoreDir))
	if err != nil {
		return err
	}
	c := &release.Client{State: durable.OS(state), Fetch: release.DirFetcher{Dir: s.OldRepo}, Board: s.Board.Name}
	_, err = install.Install(ctx, c, map[string]string{"rootfs": s.SlotV1}, install.Options{Stores: []store.Store{st}})
	return err
}

func copyTree(dst, src string) error {
	return filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if e.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
}

// VerityArg is the boot argument, DATASIZE:ROOTHASH, of a version's rootfs.
func (s *Scenario) VerityArg(version string) string {
	v := s.Releases[version].Images[0].Verity
	return fmt.Sprintf("%d:%s", v.HashOffset, v.RootHash)
}

// IndexPath is the repository file of a version's rootfs index.
func (s *Scenario) IndexPath(version string) string {
	return filepath.Join(s.Repo, filepath.FromSlash(s.Releases[version].Images[0].Index.Path))
}

// Disk builds a device's disk on the board's ab layout (Spec).
func (s *Scenario) Disk(ctx context.Context, out string, env bootenv.Vars) (*device.Disk, error) {
	return device.Build(ctx, s.Spec("ab", out, env))
}

// Spec is a device's disk on a layout: release 1 in slot A (the layout's
// first slot of class rootfs), good, its index kept beside it, the
// trusted state provisioned with release 1 installed, and env over those
// defaults.
func (s *Scenario) Spec(layout, out string, env bootenv.Vars) device.Spec {
	slotA := "rootfs-a"
	if l, err := s.Board.Layout(layout); err == nil {
		if ps := l.Slots("rootfs"); len(ps) > 0 {
			slotA = ps[0].Label
		}
	}
	vars := bootenv.Vars{
		slot.OrderVar: "A B recovery", slot.LeftVar("A"): "3", slot.LeftVar("B"): "0",
		"LIFEBOAT_A_VERITY": s.VerityArg("1"),
	}
	// ab is the bootloaders' default: grubenv's 448 bytes are tight
	// (docs/recovery.md).
	if layout != "ab" {
		vars["lifeboat_layout"] = layout
	}
	for k, v := range env {
		vars[k] = v
	}
	return device.Spec{
		Board: s.Board, Layout: layout, Out: out,
		Kernel: s.Kernel, Ramdisk: s.Ramdisk,
		Slots:     map[string]string{slotA: s.SlotV1},
		Env:       vars,
		RootJSON:  s.Root,
		Installed: "1",
		DataFiles: map[string]string{install.SlotIndexName("A", "rootfs"): s.IndexPath("1")},
	}
}

// NeedBytes is the stored size of the distinct chunks of version's rootfs
// that seed's lacks: what an update seeded by seed must fetch.
func (s *Scenario) NeedBytes(version, seed string) (int64, error) {
	have := map[chunk.ID]bool{}
	idx, err := chunk.ReadIndexFile(s.IndexPath(seed))
	if err != nil {
		return 0, err
	}
	for _, c := range idx.Chunks {
		have[c.ID] = true
	}
	if idx, err = chunk.ReadIndexFile(s.IndexPath(version)); err != nil {
		return 0, err
	}
	var n int64
	for _, c := range idx.Chunks {
		if have[c.ID] {
			continue
		}
		have[c.ID] = true
		id := c.ID.String()
		fi, err := os.Stat(filepath.Join(s.Repo, release.StoreDir, id[:4], id+".cacnk"))
		if err != nil {
			return 0, err
		}
		n += fi.Size()
	}
	return n, nil
}
