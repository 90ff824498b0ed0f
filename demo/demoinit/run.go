package demoinit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/dm"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/fleet"
	"github.com/lifeboat-update/lifeboat/pkg/identity"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/pkg/verity"
)

// DefaultDiskWait is how long Run waits for a partition to appear.
const DefaultDiskWait = 10 * time.Second

// Config is what Run runs on. Kernel and Disks are required.
type Config struct {
	// Root is the root of the system's file tree: "/" on the device, a
	// directory in tests. Every path demoinit uses is under it.
	Root    string
	Kernel  Kernel
	Disks   Disks
	Env     EnvOpener // nil: the board's own (board.Board.OpenEnv)
	FS      FSFunc    // nil: os.DirFS
	Console io.Writer // nil: discarded
	// DiskWait bounds each wait for a partition [DefaultDiskWait].
	DiskWait time.Duration
	// Network brings the network up for the report to the fleet server
	// the identity names (pkg/identity, on the partition holding the
	// bootloader environment); nil: no network, no report.
	Network Network
	// HTTP is the fleet server's client [pkg/fleet's default].
	HTTP *http.Client
}

// Run boots the demo system up to the point where it would hand over to
// its services: kernel file systems, modules, the verified slot, the
// health check, mark-good. It prints the console protocol (see the
// package documentation) and returns what it found; its error is a
// *Failure. It does not power off: see End.
func Run(ctx context.Context, c Config) (Result, error) {
	if c.Root == "" {
		c.Root = "/"
	}
	if c.FS == nil {
		c.FS = os.DirFS
	}
	if c.Console == nil {
		c.Console = io.Discard
	}
	if c.DiskWait <= 0 {
		c.DiskWait = DefaultDiskWait
	}
	r := &runner{c: c}
	res := Result{Params: Params{Layout: "ab", Action: Poweroff}}
	err := r.run(ctx, &res)
	r.cleanup(ctx)
	if err != nil {
		r.sayf("%s FAILED: %v", Marker, err)
		return res, err
	}
	return res, nil
}

// End does what a lifeboat.demo= action says once Run is done: power off
// or restart (it returns only if that fails), or stay (it returns at once;
// the caller, PID 1, must then never exit).
func End(k Kernel, a Action) error {
	switch a {
	case Poweroff, Reboot:
		return k.Reboot(a)
	}
	return nil
}

type runner struct {
	c       Config
	mounted []string // to unmount, in order
	ctl     dm.Control
	active  bool // the verity device exists
}

func (r *runner) sayf(format string, args ...any) {
	fmt.Fprintf(r.c.Console, format+"\n", args...)
}

func (r *runner) path(rel string) string { return filepath.Join(r.c.Root, rel) }

func fail(what string, err error) error { return &Failure{What: what, Err: err} }

func (r *runner) run(ctx context.Context, res *Result) error {
	for _, m := range []struct{ fstype, dir string }{{"proc", "proc"}, {"sysfs", "sys"}, {"devtmpfs", "dev"}} {
		if err := r.mkdirMount(m.fstype, r.path(m.dir), m.fstype, false); err != nil {
			return fail("kernel file systems", err)
		}
	}
	n, err := r.loadModules()
	if err != nil {
		return fail("modules", err)
	}
	r.sayf("demoinit: loaded %d kernel modules", n)
	b, err := board.Load(r.path(BoardDir))
	if err != nil {
		return fail("board", err)
	}
	cmdline, err := os.ReadFile(r.path("proc/cmdline"))
	if err != nil {
		return fail("kernel command line", err)
	}
	p, err := ParseCmdline(string(cmdline))
	res.Params = p
	switch {
	case err != nil:
		return fail("kernel command line", err)
	case p.Slot == "":
		return fail("booted slot", errors.New("no lifeboat.slot= on the kernel command line"))
	case p.RootHash == nil:
		return fail("no verity root hash", errors.New("no lifeboat.verity=DATASIZE:ROOTHASH on the kernel command line; a verified boot does not mount an unverified slot"))
	}
	l, err := b.Layout(p.Layout)
	if err != nil {
		return fail("layout", err)
	}
	label, err := slotPartition(l, p.Slot)
	if err != nil {
		return fail("layout", err)
	}
	dev, err := r.waitPartition(ctx, label)
	if err != nil {
		return fail("slot partition", err)
	}
	r.sayf("demoinit: slot %s is %s (%s)", p.Slot, dev, label)

	if r.ctl, err = r.c.Kernel.DeviceMapper(); err != nil {
		return fail("verity", err)
	}
	vdev, err := openVerity(ctx, r.ctl, dev, p.DataSize, p.RootHash)
	if err != nil {
		return fail("verity", err)
	}
	r.active = true
	mnt := r.path(RootMount)
	if err := r.mkdirMount(vdev, mnt, "ext4", true); err != nil {
		return fail(r.verityWhat(ctx, "mount", err), err)
	}
	fsys := r.c.FS(mnt)
	version, err := readVersion(fsys)
	if err != nil {
		return fail(r.verityWhat(ctx, "version", err), err)
	}
	st, err := HealthCheck(ctx, fsys)
	if err != nil {
		return fail(r.verityWhat(ctx, "health check", err), err)
	}
	if bad, err := verity.Corrupted(ctx, r.ctl, DeviceName); err != nil || bad {
		if err == nil {
			err = errors.New("the kernel saw blocks that do not match the tree")
		}
		return fail("verity", err)
	}
	res.Version, res.Stats = version, st
	r.sayf("%s version=%s slot=%s verity=ok files=%d bytes=%d", Marker, version, p.Slot, st.Files, st.Bytes)

	slots, envRoot, err := r.markGood(ctx, b, l, p.Slot)
	if err != nil {
		return fail("mark good", err)
	}
	res.MarkedGood = true
	r.sayf("%s marked-good slot=%s", Marker, p.Slot)
	res.Reported = r.report(ctx, envRoot, version, slots)
	return nil
}

// report tells the fleet server the device's identity names, if any,
// that version booted and is good. A failure is said on the console,
// never fatal: the slot is good whatever the server hears.
func (r *runner) report(ctx context.Context, envRoot, version string, st slot.Status) bool {
	id, err := identity.Read(durable.OS(envRoot))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false
	case err != nil:
		r.sayf("demoinit: identity: %v; not reporting", err)
		return false
	case id.Server == "":
		return false
	case r.c.Network == nil:
		r.sayf("demoinit: no network to report to %s on", id.Server)
		return false
	}
	if err := r.c.Network.Up(ctx); err != nil {
		r.sayf("demoinit: network: %v; not reporting to %s", err, id.Server)
		return false
	}
	if err := fleet.ReportInstalled(ctx, id, r.c.HTTP, version, st); err != nil {
		r.sayf("demoinit: %v", err)
		return false
	}
	r.sayf("%s reported installed version=%s server=%s", Marker, version, id.Server)
	return true
}

// verityWhat names a failure of step on the verified slot: "verity" when
// dm-verity refused a block (the read failed with EIO, or the kernel
// counts the device corrupted), step otherwise.
func (r *runner) verityWhat(ctx context.Context, step string, err error) string {
	if errors.Is(err, syscall.EIO) {
		return "verity"
	}
	if bad, cerr := verity.Corrupted(ctx, r.ctl, DeviceName); cerr == nil && bad {
		return "verity"
	}
	return step
}

func (r *runner) mkdirMount(source, target, fstype string, readOnly bool) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := r.c.Kernel.Mount(source, target, fstype, readOnly); err != nil {
		return err
	}
	r.mounted = append(r.mounted, target)
	return nil
}

// cleanup unmounts the slot and the environment's partition and removes
// the verity device; the kernel file systems stay.
func (r *runner) cleanup(ctx context.Context) {
	for i := len(r.mounted) - 1; i >= 0; i-- {
		m := r.mounted[i]
		if m == r.path("proc") || m == r.path("sys") || m == r.path("dev") {
			continue
		}
		if err := r.c.Kernel.Unmount(m); err != nil {
			r.sayf("demoinit: %v", err)
			return // the device below stays busy
		}
	}
	if r.active {
		if err := verity.Deactivate(ctx, r.ctl, DeviceName); err != nil {
			r.sayf("demoinit: %v", err)
		}
	}
}

// loadModules loads the modules ModulesOrder lists, in order.
func (r *runner) loadModules() (int, error) {
	b, err := os.ReadFile(r.path(ModulesOrder))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil // everything built in
	}
	if err != nil {
		return 0, err
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if !filepath.IsAbs(p) {
			return n, fmt.Errorf("%s: %q is not an absolute path", ModulesOrder, p)
		}
		if err := r.c.Kernel.LoadModule(r.path(p)); err != nil {
			return n, err
		}
		n++
	}
	return n, sc.Err()
}

// slotPartition returns the PARTLABEL of slot s of the root class.
func slotPartition(l *board.Layout, s slot.Name) (string, error) {
	for _, p := range l.Slots(RootClass) {
		if slot.Name(p.Slot) == s {
			return p.Label, nil
		}
	}
	return "", fmt.Errorf("no %s slot %q in the layout", RootClass, s)
}

// Entries returns the boot entries of a layout as slot.WithSlots wants
// them: its slots, then the read-only entries it has: factory with a
// factory partition, recovery with an ESP or a recovery partition (where
// the Lifeboat ramdisk lives). Leaving recovery out would drop it from
// BOOT_ORDER at the first write.
func Entries(l *board.Layout) []slot.Name {
	var out []slot.Name
	for _, n := range l.SlotNames() {
		out = append(out, slot.Name(n))
	}
	if _, ok := l.Role(board.RoleFactory); ok {
		out = append(out, slot.Factory)
	}
	_, esp := l.Role(board.RoleESP)
	_, rec := l.Role(board.RoleRecovery)
	if esp || rec {
		out = append(out, slot.Recovery)
	}
	return out
}

// waitPartition waits up to DiskWait for the partition labelled label,
// backing off between looks.
func (r *runner) waitPartition(ctx context.Context, label string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.c.DiskWait)
	defer cancel()
	delay := 10 * time.Millisecond
	for {
		dev, err := r.c.Disks.FindPartition(label)
		if err == nil {
			return dev, nil
		}
		if !errors.Is(err, blockdev.ErrNotFound) {
			return "", err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("partition %q did not appear within %v: %w", label, r.c.DiskWait, err)
		case <-t.C:
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// openVerity maps the verity device over dev, whose data is dataSize
// bytes with the superblock and tree after it, and returns its path. The
// root hash is trusted (the kernel command line); the superblock is not:
// its parameters must be those lifeboat-release builds with, and its data
// size must be dataSize.
func openVerity(ctx context.Context, ctl dm.Control, dev string, dataSize int64, root []byte) (string, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", err
	}
	sb, err := verity.ReadSuperblock(io.NewSectionReader(f, dataSize, verity.SuperblockSize))
	f.Close()
	if err != nil {
		return "", fmt.Errorf("%s at %d: %w", dev, dataSize, err)
	}
	got, want := sb.Params, verity.DefaultParams()
	if got.HashAlg != want.HashAlg || got.DataBlockSize != want.DataBlockSize || got.HashBlockSize != want.HashBlockSize || got.Version != want.Version {
		return "", fmt.Errorf("%s at %d: %w: %s, %d/%d-byte blocks, format %d; want %s, %d/%d, format %d",
			dev, dataSize, verity.ErrBadSuperblock, got.HashAlg, got.DataBlockSize, got.HashBlockSize, got.Version,
			want.HashAlg, want.DataBlockSize, want.HashBlockSize, want.Version)
	}
	if n := int64(sb.DataBlocks) * int64(got.DataBlockSize); n != dataSize {
		return "", fmt.Errorf("%s at %d: %w: it covers %d bytes of data, lifeboat.verity= says %d",
			dev, dataSize, verity.ErrBadSuperblock, n, dataSize)
	}
	return verity.Activate(ctx, ctl, DeviceName, dev, dev, dataSize, got, root, verity.WithDataSize(dataSize))
}

// readVersion reads VersionFile: one line of printable, non-space ASCII.
func readVersion(fsys fs.FS) (string, error) {
	b, err := fs.ReadFile(fsys, VersionFile)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", VersionFile, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" || len(v) > 64 || strings.IndexFunc(v, func(c rune) bool { return c <= ' ' || c > '~' }) >= 0 {
		return "", fmt.Errorf("%s: %q is not a version", VersionFile, v)
	}
	return v, nil
}

// HealthCheck reads every regular file of fsys in full and counts them.
// On a dm-verity device a block that does not match its tree fails the
// read with EIO: a file system that reads through is the one signed.
func HealthCheck(ctx context.Context, fsys fs.FS) (Stats, error) {
	var st Stats
	buf := make([]byte, 1<<20)
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := fsys.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		// Wrapped, so that the copy reads through buf, 1 MiB at a time.
		n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{f}, buf)
		st.Bytes += n
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		st.Files++
		return nil
	})
	return st, err
}

// markGood marks s good in the bootloader's environment, mounting the
// partition that holds it first when the board names one (at envRoot,
// which stays mounted), and returns the slots' states after.
func (r *runner) markGood(ctx context.Context, b *board.Board, l *board.Layout, s slot.Name) (st slot.Status, envRoot string, err error) {
	if label := b.Bootloader.EnvPartition; label != "" {
		dev, err := r.waitPartition(ctx, label)
		if err != nil {
			return st, "", err
		}
		fstype := "vfat"
		if p, ok := l.Partition(label); ok && p.FS != "" {
			fstype = p.FS
		}
		envRoot = r.path(EnvMount)
		if err := r.mkdirMount(dev, envRoot, fstype, false); err != nil {
			return st, "", err
		}
	}
	var opener EnvOpener = b
	if r.c.Env != nil {
		opener = r.c.Env
	}
	env, closer, err := opener.OpenEnv(envRoot)
	if err != nil {
		return st, envRoot, err
	}
	v, err := slot.NewVars(env, slot.WithSlots(Entries(l)...), slot.WithCmdline(r.path("proc/cmdline")))
	if err == nil {
		err = v.MarkGood(ctx, s)
	}
	if err == nil {
		st, err = v.Status(ctx)
	}
	return st, envRoot, errors.Join(err, closer.Close())
}
