// Package initramfs builds a board's recovery ramdisk: one u-root busybox
// binary holding u-root's init, our uinit, the lifeboat command and a few
// u-root tools for a rescue shell; the board definition and, optionally,
// the repository's root of trust; and the board's kernel modules with
// their dependencies, taken from the board's pinned Debian kernel, with
// the order to load them in. See uinit/README.md for the ramdisk's
// contract and README.md here for the build.
//
//	board.json ──► kernel.Cache ──► kmod.Index.Resolve ──► modules.order
//	     │                                                    │
//	     ▼                                                    ▼
//	  stage dir (etc/lifeboat, lib/modules/RELEASE) ──► u-root ──► cpio ──► xz ──► budget check
//
// The compressed archive must fit the board's ramdisk_budget: Build fails
// with a *BudgetError otherwise, and says what the parts weigh.
package initramfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

// Paths in the ramdisk (uinit/README.md).
const (
	BoardPath = "/etc/lifeboat/board.json"
	RootPath  = "/etc/lifeboat/root.json"
	// BusyboxPath is u-root's busybox binary; every command is a symlink to it.
	BusyboxPath = "/bbin/bb"
	// UinitPath is what u-root's init runs once the system is up.
	UinitPath = "/bbin/uinit"
)

// Module is the Go module the ramdisk is built from; its go.mod pins u-root
// and names the u-root commands as tools.
const Module = "github.com/lifeboat-update/lifeboat"

const (
	urootPackage  = "github.com/u-root/u-root"
	urootCommands = "github.com/u-root/u-root/cmds/core/"
)

// DefaultCommands are the u-root commands the ramdisk carries when
// Options.Commands is empty: init and the rescue shell's tools, the ones
// go.mod names as tools.
func DefaultCommands() []string {
	return []string{"init", "gosh", "ls", "cat", "dmesg", "mount", "umount", "ip", "ps",
		"mkdir", "cp", "sync", "shutdown", "kexec", "hexdump"}
}

// ErrInvalidOptions is wrapped by every error Options.Validate returns.
var ErrInvalidOptions = errors.New("invalid initramfs options")

// File is a host file put into the ramdisk as it is (mode 0755 if the
// host file is executable by anyone, else 0644).
type File struct {
	Src  string // host path
	Dest string // absolute path in the ramdisk
}

// Kernels fetches a pinned kernel package; *kernel.Cache is the real one.
type Kernels interface {
	Get(ctx context.Context, pin kernel.Pin, meta string) (*kernel.Kernel, error)
}

var _ Kernels = (*kernel.Cache)(nil)

// Options say what to build. Board and Output are required.
type Options struct {
	Board  *board.Board
	Output string // the .cpio.xz to write
	// Root is a root.json to bake in as /etc/lifeboat/root.json, or ""
	// for none. It must carry its own threshold of valid signatures.
	Root string
	// Commands are u-root commands: a name under u-root's cmds/core
	// ("ls") or a full import path. Empty means DefaultCommands. They
	// must include init and gosh (the rescue shell).
	Commands []string
	// Files are more host files to put in.
	Files []File

	// Kernels fetches the board's kernel; nil means a kernel.Cache in
	// kernel.DefaultDir().
	Kernels Kernels
	// ModuleRoot is the checkout of Module to build in; "" means the one
	// holding the working directory.
	ModuleRoot string
	// Go and XZ are the go and xz commands; "" means "go" and "xz" on
	// the PATH.
	Go, XZ string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
	// BuildOutput receives the output of go and u-root as it comes; nil
	// keeps it, to be quoted in the error if the build fails.
	BuildOutput io.Writer
}

var (
	shortName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	importRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~/-]*$`)
)

// reserved returns the ramdisk paths Build writes itself; extra files may
// not replace them or go under them.
func reserved() []string {
	return []string{"/init", "/bbin", "/bin", BoardPath, RootPath, ModulesOrderPath, "/lib/modules"}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, args...))
}

// Validate checks the options on their own, without touching files. A
// ramdisk that could not boot (no init) or would leave a failed update
// without its rescue shell (no gosh) is refused.
func (o *Options) Validate() error {
	if o.Board == nil {
		return invalid("no board")
	}
	if err := o.Board.Validate(); err != nil {
		return fmt.Errorf("%w: board %s: %w", ErrInvalidOptions, o.Board.Name, err)
	}
	if o.Board.Dir == "" {
		return invalid("board %s: no directory (load it with board.Load)", o.Board.Name)
	}
	if o.Output == "" {
		return invalid("no output path")
	}
	cmds := o.commands()
	seen := map[string]bool{}
	for _, c := range cmds {
		pkg := commandPackage(c)
		if pkg == "" {
			return invalid("command %q: want a u-root command name or an import path", c)
		}
		base := path.Base(pkg)
		switch {
		case seen[base]:
			return invalid("command %q: a command called %s is already in", c, base)
		case base == "uinit" || base == "lifeboat" || base == "bb":
			return invalid("command %q: %s is ours", c, base)
		}
		seen[base] = true
	}
	if !seen["init"] {
		return invalid("commands %q have no init: the ramdisk would not boot", cmds)
	}
	if !seen["gosh"] {
		return invalid("commands %q have no gosh: a failed update would have no rescue shell", cmds)
	}
	dests := map[string]bool{}
	for _, f := range o.Files {
		if f.Src == "" {
			return invalid("file for %q: no source", f.Dest)
		}
		if !path.IsAbs(f.Dest) || path.Clean(f.Dest) != f.Dest || f.Dest == "/" || strings.ContainsAny(f.Dest, "\n\x00") {
			return invalid("file %s: destination %q is not a clean absolute path", f.Src, f.Dest)
		}
		for _, r := range reserved() {
			if f.Dest == r || strings.HasPrefix(f.Dest, r+"/") || strings.HasPrefix(r, f.Dest+"/") {
				return invalid("file %s: destination %s clashes with the ramdisk's own %s", f.Src, f.Dest, r)
			}
		}
		if dests[f.Dest] {
			return invalid("file %s: destination %s given twice", f.Src, f.Dest)
		}
		dests[f.Dest] = true
	}
	return nil
}

func (o *Options) commands() []string {
	if len(o.Commands) == 0 {
		return DefaultCommands()
	}
	return o.Commands
}

// commandPackage is the import path of a command, or "" if c is neither a
// name nor an import path.
func commandPackage(c string) string {
	switch {
	case shortName.MatchString(c):
		return urootCommands + c
	case strings.Contains(c, "/") && importRE.MatchString(c) && path.Clean(c) == c && !strings.HasPrefix(c, "."):
		return c
	}
	return ""
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// Part is what one part of the ramdisk weighs.
type Part struct {
	Files int   // regular files; for Other, every entry that is not in another part
	Size  int64 // uncompressed bytes; Other's include every cpio header and padding
	// Compressed is what the part adds to the compressed ramdisk, about:
	// Modules and Other compressed on their own as the whole is, and the
	// busybox binary the rest.
	Compressed int64
}

// Result is what Build made.
type Result struct {
	Board   string
	Output  string
	Kernel  string // the kernel package and version
	Release string // the kernel release, uname -r
	// KernelImage is the board kernel's image in the kernel cache: what
	// boots with this ramdisk.
	KernelImage string
	// ModuleFiles are the module files in the ramdisk, in load order.
	ModuleFiles []string
	// Size and Compressed are the archive's size before and after xz.
	Size, Compressed int64
	Budget           int64
	// Busybox is u-root's busybox binary (our commands and u-root's),
	// Modules the kernel modules, Other the rest: files, symlinks,
	// directories and cpio headers.
	Busybox, Modules, Other Part
	Elapsed                 time.Duration
}

// WriteReport writes the sizes for people.
func (r *Result) WriteReport(w io.Writer) error {
	mib := func(n int64) string { return fmt.Sprintf("%.2f", float64(n)/(1<<20)) }
	share := func(n int64) string {
		if r.Compressed <= 0 {
			return "-"
		}
		return fmt.Sprintf("%d%%", (n*100+r.Compressed/2)/r.Compressed)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s: ramdisk for %s, kernel %s (%s), %d module files\n", r.Output, r.Board, r.Release, r.Kernel, len(r.ModuleFiles))
	fmt.Fprintf(&b, "  %-8s %6s %9s %8s %6s\n", "part", "files", "size MiB", "xz MiB", "of xz")
	for _, p := range []struct {
		name string
		p    Part
	}{{"busybox", r.Busybox}, {"modules", r.Modules}, {"other", r.Other}} {
		fmt.Fprintf(&b, "  %-8s %6d %9s %8s %6s\n", p.name, p.p.Files, mib(p.p.Size), mib(p.p.Compressed), share(p.p.Compressed))
	}
	left := mib(r.Budget-r.Compressed) + " MiB left"
	if r.Compressed > r.Budget {
		left = mib(r.Compressed-r.Budget) + " MiB OVER"
	}
	fmt.Fprintf(&b, "  %-8s %6s %9s %8s  of a %s MiB budget: %s (%d of %d bytes)\n", "total", "",
		mib(r.Size), mib(r.Compressed), mib(r.Budget), left, r.Compressed, r.Budget)
	_, err := b.WriteTo(w)
	return err
}

// MiB formats a byte count in MiB with two decimals, and the bytes.
func MiB(n int64) string { return fmt.Sprintf("%.2f MiB (%d bytes)", float64(n)/(1<<20), n) }

// ErrOverBudget is what a *BudgetError is.
var ErrOverBudget = errors.New("ramdisk over budget")

// BudgetError says that the compressed ramdisk exceeds its board's budget.
type BudgetError struct {
	Board        string
	Size, Budget int64 // xz-compressed size and the board's ramdisk_budget
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("ramdisk for %s is %s xz-compressed, %d bytes over its ramdisk_budget of %s",
		e.Board, MiB(e.Size), e.Size-e.Budget, MiB(e.Budget))
}

// Is makes errors.Is(err, ErrOverBudget) true.
func (e *BudgetError) Is(target error) bool { return target == ErrOverBudget }

// checkBudget fails when the compressed size exceeds the board's budget.
func checkBudget(b *board.Board, compressed int64) error {
	if compressed > b.RamdiskBudget {
		return &BudgetError{Board: b.Name, Size: compressed, Budget: b.RamdiskBudget}
	}
	return nil
}

// Build builds the ramdisk for opt.Board into opt.Output. If the compressed
// archive exceeds the board's budget it returns the Result, to say what
// the parts weigh, with a *BudgetError, and leaves opt.Output as it was.
func Build(ctx context.Context, opt Options) (*Result, error) {
	start := time.Now()
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	b := opt.Board
	res := &Result{Board: b.Name, Output: opt.Output, Budget: b.RamdiskBudget}
	root, err := opt.moduleRoot()
	if err != nil {
		return nil, err
	}
	xz, err := lookPath(opt.XZ, "xz")
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "initramfs-")
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	k, err := opt.kernel(ctx)
	if err != nil {
		return nil, err
	}
	res.Kernel = k.Package + " " + k.Version
	res.Release = k.Release
	res.KernelImage = k.Image()
	st, err := opt.stage(tmp, k)
	if err != nil {
		return nil, err
	}
	res.ModuleFiles = st.modules

	// The modules are known now: compress them while u-root builds.
	var modXZ int64
	var modErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		part := filepath.Join(tmp, "part-modules")
		if modErr = concat(part, st.moduleSrcs); modErr == nil {
			modXZ, modErr = compressFile(ctx, xz, part, part+".xz")
		}
	})
	defer func() { cancel(); wg.Wait() }()

	archive := filepath.Join(tmp, "ramdisk.cpio")
	t := time.Now()
	if err := opt.uroot(ctx, root, tmp, archive, st.files); err != nil {
		return nil, err
	}
	opt.logf("u-root: built %s for linux/%s in %v", BusyboxPath, b.Arch, time.Since(t).Round(time.Millisecond))

	t = time.Now()
	otherData := filepath.Join(tmp, "part-other")
	if err := measure(archive, res, otherData); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(opt.Output), 0o755); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	out, err := os.CreateTemp(filepath.Dir(opt.Output), filepath.Base(opt.Output)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	out.Close()
	defer os.Remove(out.Name()) // a no-op once renamed
	var otherXZ int64
	var otherErr error
	wg.Go(func() { otherXZ, otherErr = compressFile(ctx, xz, otherData, otherData+".xz") })
	res.Compressed, err = compressFile(ctx, xz, archive, out.Name())
	wg.Wait()
	if err := errors.Join(err, modErr, otherErr); err != nil {
		return nil, err
	}
	res.Modules.Compressed = modXZ
	res.Other.Compressed = otherXZ
	res.Busybox.Compressed = max(0, res.Compressed-modXZ-otherXZ)
	opt.logf("xz: %s -> %s in %v", MiB(res.Size), MiB(res.Compressed), time.Since(t).Round(time.Millisecond))

	res.Elapsed = time.Since(start)
	if err := checkBudget(b, res.Compressed); err != nil {
		return res, err
	}
	if err := os.Chmod(out.Name(), 0o644); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	if err := os.Rename(out.Name(), opt.Output); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	return res, nil
}

// lookPath finds the command name, or def when name is "".
func lookPath(name, def string) (string, error) {
	if name == "" {
		name = def
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s command: %w", def, err)
	}
	return p, nil
}
