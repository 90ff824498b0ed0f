package demoinit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/grub"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/pkg/verity"
)

const boardDir = "../../boards/qemu-x86_64"

// fixture is a demo system in a directory: the initramfs's files under
// root, slot A's partition as a file holding data and a real verity tree,
// a fake kernel that emulates dm-verity's refusal of a wrong root hash,
// and an environment in memory.
type fixture struct {
	root    string
	kernel  *Fake
	disks   MapDisks
	env     *slot.MemEnv
	envVars bootenv.Vars
	tree    *verity.Tree
	slot    fstest.MapFS // what the verified slot's file system holds
	console bytes.Buffer
	// corrupt, if set, makes the fake kernel count the verity device
	// corrupted once mounted, as after a bad block.
	corrupt bool
	// readErr, if set, fails reads of this file of the slot.
	readErr string
}

const fixtureDataSize = 16 * 4096

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{root: t.TempDir()}
	b, err := os.ReadFile(filepath.Join(boardDir, board.File))
	if err != nil {
		t.Fatal(err)
	}
	f.write(t, filepath.Join(BoardDir, board.File), string(b))
	f.write(t, ModulesOrder, "/lib/modules/r/kernel/drivers/md/dm-mod.ko\n\n/lib/modules/r/kernel/drivers/md/dm-verity.ko\n")
	f.write(t, "proc/cmdline", "")

	// Slot A: data, then the superblock and tree, as lifeboat-release
	// makes a slot.
	disk := t.TempDir()
	part := filepath.Join(disk, "rootfs-a")
	data := make([]byte, fixtureDataSize)
	rand.NewChaCha8([32]byte{1}).Read(data)
	if err := os.WriteFile(part, data, 0o600); err != nil {
		t.Fatal(err)
	}
	pf, err := os.OpenFile(part, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	p := verity.DefaultParams()
	p.Salt = bytes.Repeat([]byte{0x5a}, 32)
	if f.tree, err = verity.Build(ctx, pf, fixtureDataSize, pf, fixtureDataSize, p); err != nil {
		t.Fatal(err)
	}
	f.disks = MapDisks{"rootfs-a": part, "esp": filepath.Join(disk, "esp")}

	f.envVars = bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "0"}
	f.env = slot.NewMemEnv(f.envVars)
	f.slot = fstest.MapFS{
		"etc/lifeboat-version":     {Data: []byte("1.2\n")},
		"boot/vmlinuz":             {Data: bytes.Repeat([]byte("k"), 10000)},
		"usr/share/demo/base.bin":  {Data: bytes.Repeat([]byte("b"), 70000)},
		"usr/share/demo/link":      {Data: []byte("base.bin"), Mode: fs.ModeSymlink},
		"usr/share/demo/empty.txt": {},
	}
	f.kernel = NewFake(t.TempDir())
	f.kernel.MountHook = f.mountHook
	return f
}

func (f *fixture) write(t *testing.T, rel, content string) {
	t.Helper()
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) cmdline(t *testing.T, args ...string) {
	t.Helper()
	f.write(t, "proc/cmdline", strings.Join(append([]string{"console=ttyS0,115200"}, args...), " ")+"\n")
}

// verityArg is slot A's lifeboat.verity=.
func (f *fixture) verityArg() string {
	return "lifeboat.verity=" + VerityParam(f.tree.HashOffset, f.tree.RootHash)
}

// mountHook plays the kernel: ext4 on the verity device reads its
// superblock through dm-verity, which fails with EIO unless the table's
// root hash is the tree's.
func (f *fixture) mountHook(source, target, fstype string, readOnly bool) error {
	if fstype != "ext4" {
		return nil
	}
	ctx := context.Background()
	if source != filepath.Join(f.kernel.DM.Dir, DeviceName) || !readOnly {
		return fmt.Errorf("mount %s on %s: %w", source, target, syscall.EINVAL)
	}
	tt, err := f.kernel.DM.Table(ctx, DeviceName)
	if err != nil {
		return err
	}
	table, err := verity.ParseTable(tt[0].Params)
	if err != nil {
		return err
	}
	status := "V"
	if !bytes.Equal(table.RootHash, f.tree.RootHash) || f.corrupt {
		status = "C"
	}
	if err := f.kernel.DM.SetStatus(DeviceName, 0, status); err != nil {
		return err
	}
	if !bytes.Equal(table.RootHash, f.tree.RootHash) {
		return fmt.Errorf("mount %s on %s: %w", source, target, syscall.EIO)
	}
	return nil
}

func (f *fixture) config() Config {
	return Config{
		Root:    f.root,
		Kernel:  f.kernel,
		Disks:   f.disks,
		Env:     memOpener{f.env},
		Console: &f.console,
		FS: func(dir string) fs.FS {
			if dir == filepath.Join(f.root, RootMount) {
				return errFS{f.slot, f.readErr}
			}
			return os.DirFS(dir)
		},
		DiskWait: 50 * time.Millisecond,
	}
}

// lines returns the console lines of the protocol.
func (f *fixture) lines() []string {
	var out []string
	for _, l := range strings.Split(f.console.String(), "\n") {
		if strings.HasPrefix(l, Marker) {
			out = append(out, l)
		}
	}
	return out
}

type memOpener struct{ env bootenv.Env }

func (m memOpener) OpenEnv(string) (bootenv.Env, io.Closer, error) {
	return m.env, io.NopCloser(nil), nil
}

// errFS fails reads of the file named bad with EIO, as dm-verity does.
type errFS struct {
	fs.FS
	bad string
}

func (e errFS) Open(name string) (fs.File, error) {
	f, err := e.FS.Open(name)
	if err != nil || name != e.bad {
		return f, err
	}
	return eioFile{f}, nil
}

type eioFile struct{ fs.File }

func (f eioFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: "/dev/mapper/" + DeviceName, Err: syscall.EIO}
}

func TestRun(t *testing.T) {
	f := newFixture(t)
	f.cmdline(t, "lifeboat.slot=A", f.verityArg())
	res, err := Run(context.Background(), f.config())
	if err != nil {
		t.Fatalf("Run = %v\nconsole:\n%s", err, f.console.String())
	}
	want := []string{
		"LIFEBOAT-DEMO version=1.2 slot=A verity=ok files=4 bytes=80004",
		"LIFEBOAT-DEMO marked-good slot=A",
	}
	if diff := cmp.Diff(want, f.lines()); diff != "" {
		t.Errorf("console lines (-want +got):\n%s", diff)
	}
	wantRes := Result{
		Params:  Params{Slot: "A", Layout: "ab", DataSize: fixtureDataSize, RootHash: f.tree.RootHash, Action: Poweroff},
		Version: "1.2", Stats: Stats{Files: 4, Bytes: 80004}, MarkedGood: true,
	}
	if diff := cmp.Diff(wantRes, res); diff != "" {
		t.Errorf("Run result (-want +got):\n%s", diff)
	}
	// Marked good: a full count, recovery kept last.
	got, err := f.env.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantVars := bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"}
	if diff := cmp.Diff(wantVars, got); diff != "" {
		t.Errorf("environment after Run (-want +got):\n%s", diff)
	}
	if n := f.env.Saves(); n != 1 {
		t.Errorf("environment saved %d times, want 1", n)
	}
	wantMods := []string{
		filepath.Join(f.root, "lib/modules/r/kernel/drivers/md/dm-mod.ko"),
		filepath.Join(f.root, "lib/modules/r/kernel/drivers/md/dm-verity.ko"),
	}
	if diff := cmp.Diff(wantMods, f.kernel.Modules()); diff != "" {
		t.Errorf("modules loaded (-want +got):\n%s", diff)
	}
	r := func(p string) string { return filepath.Join(f.root, p) }
	dev := filepath.Join(f.kernel.DM.Dir, DeviceName)
	wantCalls := []string{
		"mount proc proc " + r("proc") + " rw",
		"mount sysfs sysfs " + r("sys") + " rw",
		"mount devtmpfs devtmpfs " + r("dev") + " rw",
		"mount ext4 " + dev + " " + r(RootMount) + " ro",
		"mount vfat " + f.disks["esp"] + " " + r(EnvMount) + " rw",
		"umount " + r(EnvMount),
		"umount " + r(RootMount),
	}
	if diff := cmp.Diff(wantCalls, f.kernel.Calls()); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	if list, _ := f.kernel.DM.List(context.Background()); len(list) != 0 {
		t.Errorf("device-mapper devices after Run = %v, want none (removed)", list)
	}
	if r := f.kernel.Reboots(); len(r) != 0 {
		t.Errorf("Run rebooted %v; only End does", r)
	}
}

// The table the fake kernel was given is the tree's, over the partition
// twice (data and hash device), with the hash area after the data.
func TestRunVerityTable(t *testing.T) {
	f := newFixture(t)
	f.cmdline(t, "lifeboat.slot=A", f.verityArg())
	var table verity.Table
	hook := f.kernel.MountHook
	f.kernel.MountHook = func(source, target, fstype string, ro bool) error {
		if fstype == "ext4" {
			tt, err := f.kernel.DM.Table(context.Background(), DeviceName)
			if err != nil {
				return err
			}
			if table, err = verity.ParseTable(tt[0].Params); err != nil {
				return err
			}
		}
		return hook(source, target, fstype, ro)
	}
	if _, err := Run(context.Background(), f.config()); err != nil {
		t.Fatalf("Run = %v", err)
	}
	part := f.disks["rootfs-a"]
	if table.DataDev != part || table.HashDev != part {
		t.Errorf("table devices = %s, %s; want %s twice", table.DataDev, table.HashDev, part)
	}
	if table.DataBlocks != fixtureDataSize/4096 || table.HashStartBlock != uint64(f.tree.HashStart/4096) {
		t.Errorf("table data blocks %d, hash start %d; want %d, %d", table.DataBlocks, table.HashStartBlock, fixtureDataSize/4096, f.tree.HashStart/4096)
	}
	if !bytes.Equal(table.RootHash, f.tree.RootHash) || !bytes.Equal(table.Params.Salt, f.tree.Params.Salt) {
		t.Errorf("table root %x salt %x; want %x, %x", table.RootHash, table.Params.Salt, f.tree.RootHash, f.tree.Params.Salt)
	}
}

// Every failure says what failed, and leaves the environment alone: the
// bootloader falls back.
func TestRunFailures(t *testing.T) {
	wrongRoot := "lifeboat.verity=" + VerityParam(fixtureDataSize, bytes.Repeat([]byte{1}, 32))
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, f *fixture)
		what  string // after "FAILED: "
		// checked says the slot was read and its version line printed.
		checked bool
	}{
		{
			name:  "no verity root hash",
			setup: func(t *testing.T, f *fixture) { f.cmdline(t, "lifeboat.slot=A") },
			what:  "no verity root hash: ",
		},
		{
			name:  "malformed root hash",
			setup: func(t *testing.T, f *fixture) { f.cmdline(t, "lifeboat.slot=A", "lifeboat.verity=65536:zz") },
			what:  "kernel command line: ",
		},
		{
			name:  "wrong root hash",
			setup: func(t *testing.T, f *fixture) { f.cmdline(t, "lifeboat.slot=A", wrongRoot) },
			what:  "verity: mount ",
		},
		{
			name: "no superblock at DATASIZE",
			setup: func(t *testing.T, f *fixture) {
				f.cmdline(t, "lifeboat.slot=A", "lifeboat.verity="+VerityParam(fixtureDataSize-4096, f.tree.RootHash))
			},
			what: "verity: ",
		},
		{
			name: "not a verity device",
			setup: func(t *testing.T, f *fixture) {
				f.cmdline(t, "lifeboat.slot=A", f.verityArg())
				f.kernel.DM = nil
			},
			what: "verity: open device-mapper control: ",
		},
		{
			name: "bad block in a file",
			setup: func(t *testing.T, f *fixture) {
				f.cmdline(t, "lifeboat.slot=A", f.verityArg())
				f.readErr = "usr/share/demo/base.bin"
			},
			what: "verity: read usr/share/demo/base.bin: ",
		},
		{
			name: "bad block the kernel counted",
			setup: func(t *testing.T, f *fixture) {
				f.cmdline(t, "lifeboat.slot=A", f.verityArg())
				f.corrupt = true
			},
			what: "verity: the kernel saw blocks",
		},
		{
			name: "no version",
			setup: func(t *testing.T, f *fixture) {
				f.cmdline(t, "lifeboat.slot=A", f.verityArg())
				delete(f.slot, VersionFile)
			},
			what: "version: read etc/lifeboat-version: ",
		},
		{
			name:  "no slot",
			setup: func(t *testing.T, f *fixture) { f.cmdline(t, f.verityArg()) },
			what:  "booted slot: ",
		},
		{
			name:  "unknown slot",
			setup: func(t *testing.T, f *fixture) { f.cmdline(t, "lifeboat.slot=C", f.verityArg()) },
			what:  `layout: no rootfs slot "C"`,
		},
		{
			name:  "unknown layout",
			setup: func(t *testing.T, f *fixture) { f.cmdline(t, "lifeboat.slot=A", "lifeboat.layout=abc", f.verityArg()) },
			what:  "layout: board qemu-x86_64 has no layout",
		},
		{
			name: "no disk",
			setup: func(t *testing.T, f *fixture) {
				f.cmdline(t, "lifeboat.slot=A", f.verityArg())
				delete(f.disks, "rootfs-a")
			},
			what: `slot partition: partition "rootfs-a" did not appear`,
		},
		{
			name: "environment not saved",
			setup: func(t *testing.T, f *fixture) {
				f.cmdline(t, "lifeboat.slot=A", f.verityArg())
				f.env.FailSaves(errors.New("write error"))
			},
			what:    "mark good: ",
			checked: true,
		},
		{
			name: "no board",
			setup: func(t *testing.T, f *fixture) {
				f.cmdline(t, "lifeboat.slot=A", f.verityArg())
				os.Remove(filepath.Join(f.root, BoardDir, board.File))
			},
			what: "board: ",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.setup(t, f)
			res, err := Run(context.Background(), f.config())
			var fl *Failure
			if !errors.As(err, &fl) {
				t.Fatalf("Run = %v, want a *Failure", err)
			}
			lines := f.lines()
			t.Logf("console: %q", lines)
			want := "LIFEBOAT-DEMO FAILED: " + tc.what
			if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], want) {
				t.Errorf("console lines = %q, want the last to start %q", lines, want)
			}
			if got := "LIFEBOAT-DEMO FAILED: " + err.Error(); lines[len(lines)-1] != got {
				t.Errorf("console line %q, error %q", lines[len(lines)-1], err)
			}
			if n := len(lines); tc.checked && n != 2 || !tc.checked && n != 1 {
				t.Errorf("console lines = %q", lines)
			}
			if res.MarkedGood || slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "marked-good") }) {
				t.Errorf("slot marked good after a failure: %q", lines)
			}
			if got, _ := f.env.Load(context.Background()); f.env.Saves() != 0 || !cmp.Equal(got, f.envVars) {
				t.Errorf("environment after a failure: %v, %d saves; want %v unchanged", got, f.env.Saves(), f.envVars)
			}
			if f.kernel.DM != nil {
				if list, _ := f.kernel.DM.List(context.Background()); len(list) != 0 {
					t.Errorf("device-mapper devices after Run = %v, want none", list)
				}
			}
		})
	}
}

// With the board's own environment, the grubenv file on the ESP is
// rewritten as GRUB reads it.
func TestRunGrubenv(t *testing.T) {
	f := newFixture(t)
	f.cmdline(t, "lifeboat.slot=A", f.verityArg(), "lifeboat.demo=stay")
	c := f.config()
	c.Env = nil
	grubenv := filepath.Join(f.root, EnvMount, "EFI/BOOT/grubenv")
	if err := os.MkdirAll(filepath.Dir(grubenv), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := grub.Encode(&buf, f.envVars); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(grubenv, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), c)
	if err != nil {
		t.Fatalf("Run = %v\n%s", err, f.console.String())
	}
	if !res.MarkedGood || res.Params.Action != Stay {
		t.Errorf("Run = %+v, want marked good, action stay", res)
	}
	got, err := grub.Open(grubenv).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("grubenv after Run (-want +got):\n%s", diff)
	}
}

func TestEnd(t *testing.T) {
	for _, a := range []Action{Poweroff, Reboot, Stay} {
		k := NewFake("")
		if err := End(k, a); err != nil {
			t.Fatal(err)
		}
		want := []Action{a}
		if a == Stay {
			want = nil
		}
		if got := k.Reboots(); !slices.Equal(got, want) {
			t.Errorf("End(%s) rebooted %v, want %v", a, got, want)
		}
	}
}

func TestHealthCheck(t *testing.T) {
	fsys := fstest.MapFS{
		"a":     {Data: []byte("hello")},
		"d/b":   {Data: make([]byte, 3<<20)},
		"d/e":   {Mode: fs.ModeDir},
		"d/dev": {Mode: fs.ModeDevice},
	}
	st, err := HealthCheck(context.Background(), fsys)
	if want := (Stats{Files: 2, Bytes: 5 + 3<<20}); err != nil || st != want {
		t.Errorf("HealthCheck = %+v, %v; want %+v", st, err, want)
	}
	_, err = HealthCheck(context.Background(), errFS{fsys, "d/b"})
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "read d/b") {
		t.Errorf("HealthCheck(bad block) = %v, want EIO reading d/b", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := HealthCheck(ctx, fsys); !errors.Is(err, context.Canceled) {
		t.Errorf("HealthCheck(cancelled) = %v", err)
	}
}

func TestEntries(t *testing.T) {
	b, err := board.Load(boardDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		layout string
		want   []slot.Name
	}{
		{"ab", []slot.Name{"A", "B", slot.Recovery}},
		{"small", []slot.Name{"A", slot.Factory, slot.Recovery}},
	} {
		l, err := b.Layout(tc.layout)
		if err != nil {
			t.Fatal(err)
		}
		if got := Entries(l); !slices.Equal(got, tc.want) {
			t.Errorf("Entries(%s) = %v, want %v", tc.layout, got, tc.want)
		}
	}
}
