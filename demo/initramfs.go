package demo

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/lifeboat-update/lifeboat/demo/demoinit"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/qemu/cpio"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

// Modules returns the kernel modules the demo system loads, before their
// dependencies are added: the virtio disk, ext4 for the slot, vfat and
// its code pages for the ESP (where GRUB keeps its environment),
// dm-verity, and the virtio network card for the report to the fleet
// server. Those built into the board's kernel need no file.
//
// crc32c_generic is ext4's soft dependency, which modules.dep does not
// list: without it ext4 refuses a file system with metadata checksums
// ("Cannot load crc32c driver").
func Modules() []string {
	return []string{"virtio_pci", "virtio_blk", "virtio_net", "crc32c_generic", "ext4", "vfat", "nls_cp437", "nls_ascii", "dm-verity"}
}

// InitPackage is the demo system's init.
const InitPackage = "github.com/lifeboat-update/lifeboat/demo/cmd/demoinit"

// BuildInit builds demoinit for goarch into out: static (CGO_ENABLED=0),
// stripped, and reproducible (-trimpath, no VCS stamp, so that a change
// elsewhere in the checkout does not change the binary). It runs the go
// command in the current directory, which must be inside this module.
func BuildInit(ctx context.Context, goarch, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, InitPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for linux/%s: %w\n%s", InitPackage, goarch, err, stderr.String())
	}
	return nil
}

// InitramfsStats describe an initramfs WriteInitramfs wrote.
type InitramfsStats struct {
	Modules []string `json:"modules"` // in load order, as in modules.order
	// Size is the uncompressed archive's size.
	Size int64 `json:"size"`
}

// WriteInitramfs writes the demo system's initramfs to w, gzipped: init
// (demoinit) as /init, the board's definition as
// /etc/lifeboat/board.json, and Modules with their dependencies from k
// under /lib/modules/RELEASE, listed dependencies first in
// /etc/lifeboat/modules.order (absolute paths, the recovery ramdisk's
// format). The same arguments give the same bytes.
func WriteInitramfs(w io.Writer, b *board.Board, k *kernel.Kernel, init io.Reader, initSize int64) (*InitramfsStats, error) {
	ix, err := k.Modules()
	if err != nil {
		return nil, fmt.Errorf("initramfs: modules of %s: %w", k, err)
	}
	rels, err := ix.Resolve(Modules()...)
	if err != nil {
		return nil, fmt.Errorf("initramfs: modules of %s: %w", k, err)
	}
	st := &InitramfsStats{}
	for _, rel := range rels {
		if rel == "" || path.IsAbs(rel) || path.Clean(rel) != rel || strings.HasPrefix(rel, "../") || strings.ContainsAny(rel, "\n\x00") {
			return nil, fmt.Errorf("initramfs: modules.dep of %s: %q is not a clean relative path", k, rel)
		}
		st.Modules = append(st.Modules, path.Join("/lib/modules", k.Release, rel))
	}
	boardJSON, err := boardFile(b)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}

	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	cw := &countWriter{w: zw}
	bw := bufio.NewWriterSize(cw, 1<<20)
	cw2 := cpio.NewWriter(bw)
	a := &archive{w: cw2, dirs: map[string]bool{}}
	a.dir("dev")
	a.do(func() error { return cw2.WriteCharDev("dev/console", 0o600, 5, 1) })
	for _, d := range []string{"proc", "sys", demoinit.RootMount, demoinit.EnvMount} {
		a.dir(d)
	}
	a.file(path.Join(demoinit.BoardDir, board.File), 0o644, boardJSON)
	a.file(demoinit.ModulesOrder, 0o644, []byte(strings.Join(st.Modules, "\n")+"\n"))
	for i, m := range st.Modules {
		src := filepath.Join(k.ModulesDir(), filepath.FromSlash(rels[i]))
		a.copy(strings.TrimPrefix(m, "/"), 0o644, src)
	}
	a.do(func() error { return cw2.CopyFile("init", 0o755, init, initSize) })
	a.do(cw2.Close)
	a.do(bw.Flush)
	a.do(zw.Close)
	if a.err != nil {
		return nil, fmt.Errorf("initramfs: %w", a.err)
	}
	st.Size = cw.n
	return st, nil
}

// boardFile returns the board's board.json as it is in its directory, or
// encoded when the board was not read from one.
func boardFile(b *board.Board) ([]byte, error) {
	if b.Dir != "" {
		return os.ReadFile(filepath.Join(b.Dir, board.File))
	}
	out, err := json.MarshalIndent(b, "", "  ")
	return append(out, '\n'), err
}

// archive writes cpio entries, each file's parent directories first, and
// keeps the first error.
type archive struct {
	w    *cpio.Writer
	dirs map[string]bool
	err  error
}

func (a *archive) do(f func() error) {
	if a.err == nil {
		a.err = f()
	}
}

func (a *archive) dir(name string) {
	if name == "." || a.dirs[name] {
		return
	}
	a.dir(path.Dir(name))
	a.dirs[name] = true
	a.do(func() error { return a.w.WriteDir(name, 0o755) })
}

func (a *archive) file(name string, perm os.FileMode, data []byte) {
	a.dir(path.Dir(name))
	a.do(func() error { return a.w.WriteFile(name, perm, data) })
}

func (a *archive) copy(name string, perm os.FileMode, src string) {
	a.dir(path.Dir(name))
	a.do(func() error {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", src)
		}
		return a.w.CopyFile(name, perm, f, fi.Size())
	})
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
