// Package demo builds the demo OS: release images for a board's rootfs
// slot class that show their version when they boot and mark themselves
// good, for the tests and `make demo` (demo/README.md).
//
// An image is an ext4 file system holding the board's kernel
// (/boot/vmlinuz), the demo system's initramfs (/boot/initrd.img, with
// demo/cmd/demoinit as /init), the version (/etc/lifeboat-version) and a
// payload of deterministic pseudo-random data (/usr/share/demo), shared
// by every version but for one file. `lifeboat-release create
// --verity=rootfs` appends the dm-verity tree when the release is made;
// AppendVerity does the same for tests that write a slot directly.
//
//	demo.BuildImage ─┬─ BuildInit        go build demo/cmd/demoinit (static, for the board's arch)
//	                 ├─ WriteInitramfs   /init, board.json, modules + modules.order  → /boot/initrd.img
//	                 ├─ kernel image                                                → /boot/vmlinuz
//	                 ├─ WritePayload                                                → /usr/share/demo
//	                 └─ mkfs.ext4 -d, then debugfs: owners and times fixed          → IMAGE
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/lifeboat-update/lifeboat/demo/demoinit"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/verity"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

// Defaults of Options.
const (
	DefaultSeed        = 1
	DefaultPayloadSize = 6 << 20
	DefaultChangedSize = 1 << 20
	// DefaultEpoch is every timestamp in an image: 2023-11-14 22:13:20 UTC.
	DefaultEpoch = 1700000000
)

// ErrInvalid is wrapped by every error of Options.Validate.
var ErrInvalid = errors.New("invalid demo image options")

// Options say what image BuildImage makes.
type Options struct {
	Board   *board.Board
	Version string // the release version: dotted numbers, as lifeboat-release wants
	// Kernel is the board's kernel, unpacked (BoardKernel fetches it).
	Kernel *kernel.Kernel
	Out    string // the image file, replaced

	// Size is the file system's size in bytes, a multiple of BlockSize;
	// zero sizes it to its content with a quarter and 4 MiB to spare,
	// rounded up to 4 MiB. Image and verity tree must fit in every
	// rootfs slot of every layout of the board.
	Size int64
	// PayloadSize is the payload every version shares [DefaultPayloadSize];
	// ChangedSize the part that changes with the version
	// [DefaultChangedSize]; both are made from Seed [DefaultSeed].
	PayloadSize, ChangedSize int64
	Seed                     uint64
	// Epoch is every timestamp in the image, in Unix seconds [DefaultEpoch].
	Epoch int64
	// Reordered lays the files out in another order, for an update that
	// must move most of the previous version's chunks: a file of
	// ReorderShift bytes (/boot/.reordered) comes before the others and
	// shifts them, and the shared payload files hold one another's
	// content in reverse order (base-00.bin what base-NN.bin holds
	// otherwise, and so on).
	Reordered bool

	// Init is a demoinit binary built for the board; empty builds one
	// with BuildInit (the go command must then run inside this module).
	Init string
	// Logf, if set, receives a line per step.
	Logf func(format string, args ...any)
}

func (o *Options) withDefaults() Options {
	c := *o
	if c.PayloadSize == 0 {
		c.PayloadSize = DefaultPayloadSize
	}
	if c.ChangedSize == 0 {
		c.ChangedSize = DefaultChangedSize
	}
	if c.Seed == 0 {
		c.Seed = DefaultSeed
	}
	if c.Epoch == 0 {
		c.Epoch = DefaultEpoch
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Validate checks the options on their own, before anything is built.
func (o *Options) Validate() error {
	switch {
	case o.Board == nil:
		return invalid("no board")
	case o.Kernel == nil:
		return invalid("no kernel")
	case o.Out == "":
		return invalid("no output file")
	case o.Size < 0 || o.Size%BlockSize != 0:
		return invalid("size %d: want a multiple of %d", o.Size, BlockSize)
	case o.PayloadSize < 0 || o.ChangedSize < 0:
		return invalid("negative payload size")
	case o.Epoch < 0 || o.Epoch > 1<<32-1:
		return invalid("epoch %d: want 0 to 2^32-1", o.Epoch)
	}
	if _, err := release.CompareVersions(o.Version, o.Version); err != nil {
		return invalid("version %q: %v", o.Version, err)
	}
	k, b := o.Kernel, o.Board.Kernel
	if k.Package != b.Package || k.Version != b.Version {
		return invalid("kernel %s %s is not the board's %s %s", k.Package, k.Version, b.Package, b.Version)
	}
	if _, err := SlotSize(o.Board); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// SlotSize returns the size of the board's smallest rootfs slot
// partition, of every layout: what an image and its verity tree must fit.
func SlotSize(b *board.Board) (int64, error) {
	var smallest int64
	for name, l := range b.Layouts {
		for _, p := range l.Slots(demoinit.RootClass) {
			if p.Size == "rest" {
				continue
			}
			n, err := board.ParseSize(p.Size)
			if err != nil {
				return 0, fmt.Errorf("board %s layout %s: %w", b.Name, name, err)
			}
			if smallest == 0 || n < smallest {
				smallest = n
			}
		}
	}
	if smallest == 0 {
		return 0, fmt.Errorf("board %s has no %s slot of fixed size", b.Name, demoinit.RootClass)
	}
	return smallest, nil
}

// VeritySize is the size of the hash area (superblock and tree) that
// lifeboat-release appends to an image of size bytes.
func VeritySize(size int64) (int64, error) {
	t, err := verity.Layout(verity.DefaultParams(), size, size)
	if err != nil {
		return 0, err
	}
	return t.HashSize, nil
}

// Stats describe a built image.
type Stats struct {
	Image      string        `json:"image"`
	Version    string        `json:"version"`
	Size       int64         `json:"size"`        // the file system, the image file
	Content    int64         `json:"content"`     // bytes of the files in it
	Kernel     int64         `json:"kernel"`      // /boot/vmlinuz
	Initramfs  int64         `json:"initramfs"`   // /boot/initrd.img, gzipped
	Init       int64         `json:"init"`        // demoinit
	Modules    []string      `json:"modules"`     // in the initramfs, in load order
	Payload    int64         `json:"payload"`     // /usr/share/demo
	VeritySize int64         `json:"verity_size"` // the hash area lifeboat-release appends
	SlotSize   int64         `json:"slot_size"`   // the smallest rootfs slot
	Duration   time.Duration `json:"duration_ns"`
}

// BuildImage builds a demo release image for the rootfs slot class: see
// the package documentation. The same options give the same bytes (with
// the same Go toolchain, when it builds demoinit).
func BuildImage(ctx context.Context, opt Options) (*Stats, error) {
	start := time.Now()
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	o := opt.withDefaults()
	st := &Stats{Image: o.Out, Version: o.Version}
	tmp, err := os.MkdirTemp("", "demo-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	init := o.Init
	if init == "" {
		init = filepath.Join(tmp, "demoinit")
		t := time.Now()
		if err := BuildInit(ctx, o.Board.Arch, init); err != nil {
			return nil, err
		}
		o.Logf("demo: built demoinit for linux/%s in %v", o.Board.Arch, time.Since(t).Round(time.Millisecond))
	}
	root := filepath.Join(tmp, "root")
	for _, d := range []string{"boot", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, err
		}
	}
	if st.Init, st.Initramfs, st.Modules, err = writeInitrd(o, init, filepath.Join(root, "boot", "initrd.img")); err != nil {
		return nil, err
	}
	if st.Kernel, err = copyFile(o.Kernel.Image(), filepath.Join(root, "boot", "vmlinuz")); err != nil {
		return nil, fmt.Errorf("kernel image: %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, filepath.FromSlash(demoinit.VersionFile)), []byte(o.Version+"\n"), 0o644); err != nil {
		return nil, err
	}
	if st.Payload, err = WritePayload(root, o.Seed, o.Version, o.PayloadSize, o.ChangedSize); err != nil {
		return nil, err
	}
	if o.Reordered {
		if err := reorder(root, o.Seed); err != nil {
			return nil, fmt.Errorf("reorder: %w", err)
		}
	}
	blocks, err := normalizeTree(root)
	if err != nil {
		return nil, err
	}
	st.Content = contentBytes(root)
	o.Logf("demo: %d bytes in %d blocks: kernel %d, initramfs %d (demoinit %d, %d modules), payload %d",
		st.Content, blocks, st.Kernel, st.Initramfs, st.Init, len(st.Modules), st.Payload)

	st.Size = o.Size
	if st.Size == 0 {
		used := blocks * BlockSize
		st.Size = roundUp(used+used/4+4<<20, 4<<20)
	}
	if st.VeritySize, err = VeritySize(st.Size); err != nil {
		return nil, err
	}
	if st.SlotSize, err = SlotSize(o.Board); err != nil {
		return nil, err
	}
	if st.Size+st.VeritySize > st.SlotSize {
		return nil, fmt.Errorf("demo image: %d bytes of file system and %d of verity tree do not fit in %s's %d-byte %s slot",
			st.Size, st.VeritySize, o.Board.Name, st.SlotSize, demoinit.RootClass)
	}
	if st.Size < blocks*BlockSize {
		return nil, fmt.Errorf("demo image: %d bytes of files do not fit in a %d-byte file system", blocks*BlockSize, st.Size)
	}

	part := o.Out + ".part"
	if err := mkfsExt4(ctx, root, part, st.Size, o.Epoch); err != nil {
		os.Remove(part)
		return nil, err
	}
	if err := os.Rename(part, o.Out); err != nil {
		os.Remove(part)
		return nil, err
	}
	st.Duration = time.Since(start)
	o.Logf("demo: %s: version %s, %d bytes, built in %v", o.Out, o.Version, st.Size, st.Duration.Round(time.Millisecond))
	return st, nil
}

// writeInitrd writes the initramfs with the demoinit binary at init.
func writeInitrd(o Options, init, out string) (initSize, size int64, mods []string, err error) {
	in, err := os.Open(init)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("demoinit: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return 0, 0, nil, err
	}
	f, err := os.Create(out)
	if err != nil {
		return 0, 0, nil, err
	}
	ist, err := WriteInitramfs(f, o.Board, o.Kernel, in, fi.Size())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, 0, nil, err
	}
	ofi, err := os.Stat(out)
	if err != nil {
		return 0, 0, nil, err
	}
	return fi.Size(), ofi.Size(), ist.Modules, nil
}

// normalizeTree gives every file and directory of the tree at root the
// mode the image wants (0755 directories, 0644 files), whatever the umask,
// and returns how many blocks the files take.
func normalizeTree(root string) (int64, error) {
	var blocks int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		switch {
		case d.IsDir():
			mode = 0o755
			blocks++
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			blocks += (fi.Size() + BlockSize - 1) / BlockSize
		default:
			return fmt.Errorf("%s: only files and directories go in a demo image", p)
		}
		return os.Chmod(p, mode)
	})
	return blocks, err
}

// contentBytes sums the sizes of the files under root.
func contentBytes(root string) int64 {
	var n int64
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

func copyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// AppendVerity builds the dm-verity tree of the image at path (all of
// it, a whole number of data blocks) and writes it after the image,
// superblock first, as `lifeboat-release create --verity` lays out a
// slot: the data, then the hash area at hash offset = the data's size. p
// is usually verity.DefaultParams with a salt; opts may fix the
// superblock's UUID (verity.WithUUID). The root hash and the hash offset
// are in the tree returned: lifeboat.verity=HASHOFFSET:ROOTHASH
// (demoinit.VerityParam).
func AppendVerity(ctx context.Context, path string, p verity.Params, opts ...verity.Option) (*verity.Tree, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	bs := int64(p.DataBlockSize)
	if bs == 0 {
		bs = int64(verity.DefaultParams().DataBlockSize)
	}
	if size == 0 || size%bs != 0 {
		return nil, fmt.Errorf("append verity to %s: %d bytes is not a whole number of %d-byte blocks", path, size, bs)
	}
	t, err := verity.Build(ctx, f, size, f, size, p, opts...)
	if err != nil {
		return nil, fmt.Errorf("append verity to %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	return t, f.Close()
}
