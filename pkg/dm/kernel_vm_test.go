//go:build linux

package dm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/lifeboat-update/lifeboat/qemu/vmtest"
)

const vmDiskSize = 4 << 20

// vmDisk returns disk i's contents, made the same way on the host and in
// the guest: every 8-byte word its disk and offset.
func vmDisk(i int) []byte {
	b := make([]byte, vmDiskSize)
	for off := 0; off < len(b); off += 8 {
		ne.PutUint64(b[off:], uint64(i)<<56|uint64(off))
	}
	return b
}

func TestKernelVM(t *testing.T) {
	var disks []string
	if !vmtest.InGuest() {
		dir := t.TempDir()
		for i := range 2 {
			p := filepath.Join(dir, fmt.Sprintf("disk%d.img", i))
			if err := os.WriteFile(p, vmDisk(i), 0o600); err != nil {
				t.Fatal(err)
			}
			disks = append(disks, p)
		}
	}
	if !vmtest.Run(t, vmtest.Options{Disks: disks, Modules: []string{"dm-mod"}}) {
		return
	}
	ctx := context.Background()
	k, err := Open(DefaultControl, WithRemoveRetries(3, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()

	v, err := k.Version(ctx)
	if err != nil || v[0] != 4 {
		t.Fatalf("Version() = %v, %v, want 4.x.x", v, err)
	}
	t.Logf("dm ioctl interface %v", v)

	// Half of each disk, vdb's after vda's.
	dev := []DevT{stat(t, vmtest.Disk(0)), stat(t, vmtest.Disk(1))}
	table := []Target{
		{Start: 0, Length: 4096, Type: "linear", Params: vmtest.Disk(0) + " 0"},
		{Start: 4096, Length: 4096, Type: "linear", Params: vmtest.Disk(1) + " 4096"},
	}
	d, err := k.Create(ctx, "lbtest", "LIFEBOAT-TEST-1", table, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d.Path != "/dev/mapper/lbtest" || stat(t, d.Path) != d.Dev || d.Dev.Major() == 0 {
		t.Errorf("Create() = %+v; its node is %v", d, stat(t, d.Path))
	}
	want := append(bytes.Clone(vmDisk(0)[:2<<20]), vmDisk(1)[2<<20:]...)
	if got := readAll(t, d.Path); !bytes.Equal(got, want) {
		t.Errorf("reading %s: wrong data", d.Path)
	}

	if _, err := k.Create(ctx, "lbtest", "", table, 0); !errors.Is(err, ErrExists) {
		t.Errorf("Create(lbtest again) = %v, want ErrExists", err)
	}
	info, err := k.Info(ctx, "lbtest")
	wantInfo := Info{Name: "lbtest", UUID: "LIFEBOAT-TEST-1", Dev: d.Dev, TargetCount: 2, LiveTable: true, EventNr: info.EventNr}
	if diff := cmp.Diff(wantInfo, info); err != nil || diff != "" {
		t.Errorf("Info(lbtest) = %v, differs (-want +got):\n%s", err, diff)
	}

	list, err := k.List(ctx)
	if err != nil || !slices.ContainsFunc(list, func(e ListEntry) bool {
		return e.Name == "lbtest" && e.Dev == d.Dev && e.UUID == "LIFEBOAT-TEST-1"
	}) {
		t.Errorf("List() = %+v, %v, want lbtest %v with its UUID", list, err, d.Dev)
	}

	got, err := k.Table(ctx, "lbtest")
	wantTable := []Target{
		{Start: 0, Length: 4096, Type: "linear", Params: dev[0].String() + " 0"},
		{Start: 4096, Length: 4096, Type: "linear", Params: dev[1].String() + " 4096"},
	}
	if diff := cmp.Diff(wantTable, got); err != nil || diff != "" {
		t.Errorf("Table(lbtest) = %v, differs (-want +got):\n%s", err, diff)
	}
	st, err := k.Status(ctx, "lbtest")
	if err != nil || len(st) != 2 || st[0].Type != "linear" || st[0].Params != "" {
		t.Errorf("Status(lbtest) = %+v, %v, want two linear targets without status", st, err)
	}
	deps, err := k.Deps(ctx, "lbtest")
	slices.Sort(deps)
	slices.Sort(dev)
	if err != nil || !slices.Equal(deps, dev) {
		t.Errorf("Deps(lbtest) = %v, %v, want %v", deps, err, dev)
	}

	if err := k.Suspend(ctx, "lbtest"); err != nil {
		t.Fatal(err)
	}
	if info, err := k.Info(ctx, "lbtest"); err != nil || !info.Suspended {
		t.Errorf("Info(suspended lbtest) = %+v, %v, want suspended", info, err)
	}
	if err := k.Resume(ctx, "lbtest"); err != nil {
		t.Fatal(err)
	}
	if info, err := k.Info(ctx, "lbtest"); err != nil || info.Suspended {
		t.Errorf("Info(resumed lbtest) = %+v, %v, want running", info, err)
	}

	// Open, it cannot be removed.
	f, err := os.Open(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Remove(ctx, "lbtest"); !errors.Is(err, ErrBusy) {
		t.Errorf("Remove(open lbtest) = %v, want ErrBusy", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := k.Remove(cctx, "lbtest"); !errors.Is(err, context.Canceled) {
		t.Errorf("Remove(canceled) = %v, want context.Canceled", err)
	}
	f.Close()
	if err := k.Remove(ctx, "lbtest"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Remove(lbtest) left its node: %v", err)
	}
	if _, err := k.Info(ctx, "lbtest"); !errors.Is(err, ErrNoDevice) {
		t.Errorf("Info(removed lbtest) = %v, want ErrNoDevice", err)
	}
	if err := k.Remove(ctx, "lbtest"); !errors.Is(err, ErrNoDevice) {
		t.Errorf("Remove(removed lbtest) = %v, want ErrNoDevice", err)
	}
}

func TestKernelEdgesVM(t *testing.T) {
	var disks []string
	if !vmtest.InGuest() {
		p := filepath.Join(t.TempDir(), "disk.img")
		if err := os.WriteFile(p, vmDisk(0), 0o600); err != nil {
			t.Fatal(err)
		}
		disks = []string{p}
	}
	if !vmtest.Run(t, vmtest.Options{Disks: disks, Modules: []string{"dm-mod"}}) {
		return
	}
	ctx := context.Background()
	k, err := Open(DefaultControl)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()

	// A table whose reply outgrows the first 16 KiB buffer.
	var table []Target
	for i := range uint64(2000) {
		table = append(table, Target{Start: i * 4, Length: 4, Type: "linear", Params: fmt.Sprintf("%s %d", vmtest.Disk(0), i*4)})
	}
	d, err := k.Create(ctx, "big", "", table, ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Table(ctx, "big")
	if err != nil || len(got) != len(table) || got[1999].Params != fmt.Sprintf("%s %d", stat(t, vmtest.Disk(0)), 1999*4) {
		t.Errorf("Table(big) = %d targets, %v, want %d", len(got), err, len(table))
	}
	if info, err := k.Info(ctx, "big"); err != nil || !info.ReadOnly {
		t.Errorf("Info(big) = %+v, %v, want read-only", info, err)
	}
	// The kernel lets a read-only disk be opened for writing, not written.
	if f, err := os.OpenFile(d.Path, os.O_WRONLY, 0); err != nil {
		t.Error(err)
	} else {
		if _, err := f.Write(make([]byte, 512)); !errors.Is(err, unix.EPERM) {
			t.Errorf("writing read-only %s = %v, want EPERM", d.Path, err)
		}
		f.Close()
	}
	if err := k.Remove(ctx, "big"); err != nil {
		t.Fatal(err)
	}

	// A table the kernel refuses leaves no device behind.
	_, err = k.Create(ctx, "bad", "", []Target{{Length: 8, Type: "no-such-target"}}, 0)
	if err == nil {
		t.Fatal("Create(no-such-target) succeeded")
	}
	t.Logf("Create(no-such-target) = %v", err)
	if _, err := k.Info(ctx, "bad"); !errors.Is(err, ErrNoDevice) {
		t.Errorf("Info(bad) after a failed Create = %v, want ErrNoDevice", err)
	}
	if l, err := k.List(ctx); err != nil || len(l) != 0 {
		t.Errorf("List() = %v, %v, want no devices", l, err)
	}
}

func stat(t *testing.T, path string) DevT {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return Mkdev(unix.Major(st.Rdev), unix.Minor(st.Rdev))
}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
