package initramfs

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/qemu/boardkernel"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

// moduleRoot finds the checkout of Module to build in.
func (o *Options) moduleRoot() (string, error) {
	dir := o.ModuleRoot
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", fmt.Errorf("initramfs: %w", err)
		}
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = d
				break
			}
			if filepath.Dir(d) == d {
				return "", fmt.Errorf("initramfs: no go.mod in %s or above: run in a checkout of %s or set the module root", wd, Module)
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("initramfs: module root: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			if strings.Trim(f[1], `"`) != Module {
				return "", fmt.Errorf("initramfs: %s is module %s, want %s", dir, f[1], Module)
			}
			return dir, nil
		}
	}
	return "", fmt.Errorf("initramfs: %s/go.mod names no module", dir)
}

// kernel fetches the board's kernel: exactly the pinned build, since the
// modules must be the ones the device's kernel loads.
func (o *Options) kernel(ctx context.Context) (*kernel.Kernel, error) {
	ks := o.Kernels
	if ks == nil {
		dir, err := kernel.DefaultDir()
		if err != nil {
			return nil, fmt.Errorf("kernel: %w", err)
		}
		ks = &kernel.Cache{Dir: dir, Logf: o.Logf}
	}
	bk := o.Board.Kernel
	pin := boardkernel.Pin(o.Board)
	t := time.Now()
	k, err := ks.Get(ctx, pin, "") // no metapackage: no other build will do
	if err != nil {
		return nil, fmt.Errorf("kernel for %s: %w", o.Board.Name, err)
	}
	if k.Package != bk.Package || k.Version != bk.Version || k.SHA256 != bk.SHA256 || k.Arch != pin.Arch {
		return nil, fmt.Errorf("kernel for %s: %w: got %s %s (sha256 %s), want the pinned %s %s (sha256 %s)",
			o.Board.Name, kernel.ErrUnavailable, k.Package, k.Version, k.SHA256, bk.Package, bk.Version, bk.SHA256)
	}
	o.logf("kernel: %s in %v", k, time.Since(t).Round(time.Millisecond))
	return k, nil
}

// staged is a file to put in the ramdisk: its path in the stage directory
// and in the ramdisk.
type staged struct{ src, dest string }

// staging is what stage prepared.
type staging struct {
	files      []staged
	modules    []string // in-ramdisk paths of the module files, in load order
	moduleSrcs []string // their staged copies
}

// stage copies everything but the Go binaries into tmp/stage, with the
// modes the ramdisk gets.
func (o *Options) stage(tmp string, k *kernel.Kernel) (*staging, error) {
	dir := filepath.Join(tmp, "stage")
	st := &staging{}
	add := func(dest string, mode os.FileMode, write func(io.Writer) error) error {
		src := filepath.Join(dir, filepath.FromSlash(dest))
		if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(src, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return err
		}
		if err := write(f); err != nil {
			f.Close()
			return fmt.Errorf("stage %s: %w", dest, err)
		}
		if err := f.Close(); err != nil {
			return err
		}
		// The umask may have taken bits away.
		if err := os.Chmod(src, mode); err != nil {
			return err
		}
		st.files = append(st.files, staged{src: src, dest: dest})
		return nil
	}
	copyFrom := func(host string) func(io.Writer) error {
		return func(w io.Writer) error {
			f, err := os.Open(host)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(w, f)
			return err
		}
	}

	boardFile := filepath.Join(o.Board.Dir, board.File)
	if err := add(BoardPath, 0o644, copyFrom(boardFile)); err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	if o.Root != "" {
		b, err := os.ReadFile(o.Root)
		if err != nil {
			return nil, fmt.Errorf("root of trust: %w", err)
		}
		// What the device does with it on first boot: it must verify.
		check := filepath.Join(tmp, "rootcheck")
		if err := os.MkdirAll(check, 0o700); err != nil {
			return nil, err
		}
		if err := release.Provision(durable.OS(check), b); err != nil {
			return nil, fmt.Errorf("root of trust %s: %w", o.Root, err)
		}
		if err := add(RootPath, 0o644, func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
			return nil, fmt.Errorf("root of trust: %w", err)
		}
	}

	ix, err := k.Modules()
	if err != nil {
		return nil, fmt.Errorf("kernel %s: modules: %w", k, err)
	}
	rels, err := ResolveModules(ix, o.Board.Modules)
	if err != nil {
		return nil, fmt.Errorf("board %s: %w", o.Board.Name, err)
	}
	var modBytes int64
	for _, rel := range rels {
		dest := ModulePath(k.Release, rel)
		host := filepath.Join(k.ModulesDir(), filepath.FromSlash(rel))
		if err := add(dest, 0o644, copyFrom(host)); err != nil {
			return nil, fmt.Errorf("module: %w", err)
		}
		if fi, err := os.Stat(host); err == nil {
			modBytes += fi.Size()
		}
		st.modules = append(st.modules, dest)
		st.moduleSrcs = append(st.moduleSrcs, st.files[len(st.files)-1].src)
	}
	if err := add(ModulesOrderPath, 0o644, func(w io.Writer) error { return WriteModulesOrder(w, k.Release, rels) }); err != nil {
		return nil, err
	}
	o.logf("modules: %d names of %s need %d files, %s", len(o.Board.Modules), o.Board.Name, len(rels), MiB(modBytes))

	for _, f := range o.Files {
		fi, err := os.Stat(f.Src)
		if err != nil {
			return nil, fmt.Errorf("file: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("file %s: not a regular file", f.Src)
		}
		mode := os.FileMode(0o644)
		if fi.Mode()&0o111 != 0 {
			mode = 0o755
		}
		if err := add(f.Dest, mode, copyFrom(f.Src)); err != nil {
			return nil, fmt.Errorf("file: %w", err)
		}
	}
	return st, nil
}
