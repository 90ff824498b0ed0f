package grub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
)

// File is a grubenv file on a file system Linux has mounted, such as
// /boot/efi/EFI/BOOT/grubenv. Save replaces it whole, through a temporary
// file and a rename (see the package documentation), so it is power-cut
// safe on any file system where rename is.
type File struct {
	fsys       durable.FS
	name       string
	display    string
	grubWrites bool
}

var _ bootenv.Env = (*File)(nil)

// Option sets an optional behaviour of a File.
type Option func(*File)

// GRUBWrites declares that GRUB's save_env also writes this file (the
// try-counter scheme of docs/bootloader-grub.md). Save then keeps every
// variable within the first sector of the block, less [SectorReserve], so
// that GRUB's in-place rewrite changes one sector only, and refuses with
// [ErrTooLarge] variables that do not fit.
func GRUBWrites() Option {
	return func(f *File) { f.grubWrites = true }
}

// NewFile returns the grubenv file name (a slash path, see [durable.FS]) in
// fsys.
func NewFile(fsys durable.FS, name string, opts ...Option) *File {
	f := &File{fsys: fsys, name: name, display: name}
	for _, o := range opts {
		o(f)
	}
	return f
}

// Open returns the grubenv file at path p on the running system, for
// example "/boot/efi/EFI/BOOT/grubenv".
func Open(p string, opts ...Option) *File {
	dir, base := filepath.Split(filepath.Clean(p))
	if dir == "" {
		dir = "."
	}
	f := NewFile(durable.OS(dir), base, opts...)
	f.display = p
	return f
}

// String names the file.
func (f *File) String() string { return "grubenv " + f.display }

// Load returns the variables in the file. A missing file, or one that does
// not parse, is an error wrapping [bootenv.ErrNoEnv] (GRUB's load_env loads
// nothing from it and grub.cfg's defaults apply); the second also wraps
// [bootenv.ErrCorrupt].
func (f *File) Load(ctx context.Context) (bootenv.Vars, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load %s: %w", f, err)
	}
	b, err := f.fsys.ReadFile(f.name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("load %s: %w: %w", f, bootenv.ErrNoEnv, err)
	}
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", f, err)
	}
	v, err := Parse(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("load %s: %w: %w", f, bootenv.ErrNoEnv, err)
	}
	return v, nil
}

// Save replaces the variables in the file with v, atomically and durably:
// after a power cut at any point the file holds the old block or the new
// one, whole. The directory holding the file must exist. A cut may leave a
// temporary file beside it, which [File.Clean] removes.
func (f *File) Save(ctx context.Context, v bootenv.Vars) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %s: %w", f, err)
	}
	b, used, err := encode(v)
	if err != nil {
		return fmt.Errorf("save %s: %w", f, err)
	}
	if f.grubWrites && used > SectorSize-SectorReserve {
		return fmt.Errorf("save %s: %w: %d bytes, GRUB rewrites one sector safely only with the variables in the first %d",
			f, ErrTooLarge, used, SectorSize-SectorReserve)
	}
	if err := durable.WriteFile(f.fsys, f.name, b, 0o644); err != nil {
		return fmt.Errorf("save %s: %w", f, err)
	}
	return nil
}

// Clean removes the temporary files an interrupted Save left beside the
// file. Run it at start-up, before any Save.
func (f *File) Clean() error {
	if err := durable.Clean(f.fsys, path.Dir(f.name)); err != nil {
		return fmt.Errorf("clean %s: %w", f, err)
	}
	return nil
}
