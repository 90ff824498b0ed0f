package media

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// bundle is a bundle's files, under dir ("." for the root).
func bundle(dir string) fstest.MapFS {
	p := func(name string) string { return filepath.ToSlash(filepath.Join(dir, name)) }
	return fstest.MapFS{
		p("metadata/1.root.json"):    {Data: []byte(`{"signed":{}}`)},
		p("metadata/timestamp.json"): {Data: []byte(`{"signed":{"_type":"timestamp"}}`)},
		p("store/ab/abcd.cacnk"):     {Data: []byte("chunk")},
	}
}

var notABundle = fstest.MapFS{
	"README.txt":               {Data: []byte("holiday photos")},
	"metadata":                 {Mode: 0o755 | os.ModeDir},
	"lifeboat/timestamp.json":  {Data: []byte("{}")}, // not in metadata/
	"lifeboat/metadata/x.json": {Data: []byte("{}")},
}

// tree is a fake root with disks and the file systems the kernel has.
func tree(t *testing.T, disks ...FakeDisk) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range disks {
		if err := d.Write(root); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteFakeFilesystems(root, "ext4", "vfat"); err != nil {
		t.Fatal(err)
	}
	return root
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testConfig(t *testing.T, root string, m *FakeMounter) Config {
	return Config{
		Root:    root,
		Dir:     filepath.Join(t.TempDir(), "media"),
		Timeout: 10 * time.Second,
		Settle:  time.Millisecond,
		Poll:    time.Millisecond,
		Mounter: m,
		Log:     testLogger(t),
	}
}

func TestScan(t *testing.T) {
	root := tree(t,
		FakeDisk{Name: "vda", Bus: "virtio", Sectors: 1 << 20, Parts: []int64{2048, 4096}},
		FakeDisk{Name: "loop0", Bus: "virtual", Sectors: 100},
		FakeDisk{Name: "mmcblk0", Bus: "mmc", Sectors: 1 << 22, Parts: []int64{8192}}, // the board's eMMC
		FakeDisk{Name: "mmcblk0boot0", Bus: "mmc", Sectors: 8192},
		FakeDisk{Name: "mmcblk1", Bus: "mmc", Sectors: 1 << 21, Parts: []int64{1 << 20}},
		FakeDisk{Name: "sda", Bus: "usb", Removable: true, Sectors: 1 << 20, Parts: []int64{2048, 2, 8192}}, // 2: an extended partition
		FakeDisk{Name: "sdb", Bus: "usb", Sectors: 1 << 16},                                                 // a stick that says it is fixed, no partitions
		FakeDisk{Name: "sdc", Bus: "ata", Removable: true, Sectors: 4096},
		FakeDisk{Name: "sdd", Bus: "usb", Removable: true}, // a card reader without a card
		FakeDisk{Name: "sde", Bus: "ata", Sectors: 1 << 20},
	)
	got, err := scan(root, []string{"mmcblk0"})
	if err != nil {
		t.Fatal(err)
	}
	dev := func(n string) string { return filepath.Join(root, "dev", n) }
	want := []Candidate{
		{Name: "mmcblk1p1", Disk: "mmcblk1", Device: dev("mmcblk1p1"), Bus: "mmc", Size: 512 << 20},
		{Name: "sda1", Disk: "sda", Device: dev("sda1"), Bus: "usb", Size: 1 << 20},
		{Name: "sda3", Disk: "sda", Device: dev("sda3"), Bus: "usb", Size: 4 << 20},
		{Name: "sdb", Disk: "sdb", Device: dev("sdb"), Bus: "usb", Size: 32 << 20},
		{Name: "sdc", Disk: "sdc", Device: dev("sdc"), Size: 2 << 20},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("scan (-want +got):\n%s", d)
	}
	if _, err := scan(t.TempDir(), nil); err == nil {
		t.Error("scan(no /sys/block) = nil error")
	}
}

func TestFind(t *testing.T) {
	root := tree(t, FakeDisk{Name: "vda", Bus: "virtio", Sectors: 1 << 20},
		FakeDisk{Name: "sda", Bus: "usb", Removable: true, Sectors: 1 << 20, Parts: []int64{1 << 19}})
	m := &FakeMounter{FS: map[string]FakeFS{filepath.Join(root, "dev/sda1"): {Type: "vfat", Files: bundle("lifeboat")}}}
	cfg := testConfig(t, root, m)
	med, err := Find(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Find = %v", err)
	}
	mp := filepath.Join(cfg.Dir, "sda1")
	if med.Name != "sda1" || med.FSType != "vfat" || med.MountPoint != mp || med.Bundle != filepath.Join(mp, "lifeboat") {
		t.Errorf("Find = %+v, want sda1 (vfat) on %s with the bundle in lifeboat/", med, mp)
	}
	if b, err := med.Fetcher().Fetch(t.Context(), "metadata/timestamp.json", 1<<10); err != nil || !strings.Contains(string(b), "timestamp") {
		t.Errorf("Fetcher().Fetch(metadata/timestamp.json) = %q, %v", b, err)
	}
	if err := med.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := med.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	want := []string{"mount -t vfat " + filepath.Join(root, "dev/sda1") + " " + mp, "umount " + mp}
	if d := cmp.Diff(want, m.Calls()); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	if _, err := os.Stat(mp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mount point after Close: %v, want it removed", err)
	}
}

// Media without a bundle are unmounted, and the next is tried; file
// systems are tried in order.
func TestFindSkipsMediaWithoutBundle(t *testing.T) {
	root := tree(t,
		FakeDisk{Name: "sda", Bus: "usb", Removable: true, Sectors: 1 << 20, Parts: []int64{1 << 19}},
		FakeDisk{Name: "sdb", Bus: "usb", Removable: true, Sectors: 1 << 20})
	dev := func(n string) string { return filepath.Join(root, "dev", n) }
	m := &FakeMounter{FS: map[string]FakeFS{
		dev("sda1"): {Type: "vfat", Files: notABundle},
		dev("sdb"):  {Type: "ext4", Files: bundle(".")},
	}}
	cfg := testConfig(t, root, m)
	med, err := Find(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Find = %v", err)
	}
	defer med.Close()
	mp := func(n string) string { return filepath.Join(cfg.Dir, n) }
	if med.Name != "sdb" || med.FSType != "ext4" || med.Bundle != mp("sdb") {
		t.Errorf("Find = %+v, want sdb (ext4) with the bundle at its root", med)
	}
	want := []string{
		"mount -t vfat " + dev("sda1") + " " + mp("sda1"),
		"umount " + mp("sda1"),
		"mount -t vfat " + dev("sdb") + " " + mp("sdb"),
		"mount -t ext4 " + dev("sdb") + " " + mp("sdb"),
	}
	if d := cmp.Diff(want, m.Calls()); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{mp("sdb")}, m.Mounted()); d != "" {
		t.Errorf("mounted (-want +got):\n%s", d)
	}
	if _, err := os.Stat(mp("sda1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sda1's mount point: %v, want it removed", err)
	}
}

func TestFindErrors(t *testing.T) {
	stick := FakeDisk{Name: "sda", Bus: "usb", Removable: true, Sectors: 1 << 20, Parts: []int64{1 << 19}}
	tests := []struct {
		name  string
		disks []FakeDisk
		fs    map[string]FakeFS // by device name
		is    error
		want  string
	}{
		{
			name:  "nothing removable",
			disks: []FakeDisk{{Name: "vda", Bus: "virtio", Sectors: 1 << 20}},
			is:    ErrNoMedia,
			want:  "no removable media found after ",
		},
		{
			name:  "no device node",
			disks: []FakeDisk{{Name: "sda", Bus: "usb", Sectors: 1 << 20, NoNodes: true}},
			is:    ErrNoMedia,
			want:  "no removable media found after ",
		},
		{
			name:  "no bundle",
			disks: []FakeDisk{stick},
			fs:    map[string]FakeFS{"sda1": {Type: "vfat", Files: notABundle}},
			is:    ErrNoBundle,
			want:  "no bundle on the removable media: found sda1 (vfat) but no bundle in it: looked for metadata/timestamp.json and lifeboat/metadata/timestamp.json",
		},
		{
			name:  "no file system",
			disks: []FakeDisk{stick},
			is:    syscall.ENXIO,
			want:  "no bundle on the removable media: found sda1 but cannot mount it read-only as vfat or ext4: mount -t vfat ",
		},
		{
			name:  "a file system the kernel lacks",
			disks: []FakeDisk{stick},
			fs:    map[string]FakeFS{"sda1": {Type: "iso9660", Files: bundle(".")}},
			is:    syscall.EINVAL,
			want:  "found sda1 but cannot mount it read-only as vfat or ext4",
		},
		{
			name:  "each medium says why",
			disks: []FakeDisk{stick, {Name: "sdb", Bus: "usb", Sectors: 1 << 20}},
			fs:    map[string]FakeFS{"sda1": {Type: "ext4", Files: notABundle}},
			is:    ErrNoBundle,
			want:  "found sda1 (ext4) but no bundle in it: looked for metadata/timestamp.json and lifeboat/metadata/timestamp.json\nfound sdb but cannot mount it",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := tree(t, tt.disks...)
			m := &FakeMounter{FS: map[string]FakeFS{}}
			for name, fs := range tt.fs {
				m.FS[filepath.Join(root, "dev", name)] = fs
			}
			cfg := testConfig(t, root, m)
			cfg.Timeout = 50 * time.Millisecond
			med, err := Find(t.Context(), cfg)
			if err == nil {
				med.Close()
				t.Fatalf("Find = %+v, want an error", med)
			}
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Find = %q, want %v saying %q", err, tt.is, tt.want)
			}
			var de *DeviceError
			if errors.Is(err, ErrNoBundle) && !errors.As(err, &de) {
				t.Errorf("Find = %v, want a *DeviceError in it", err)
			}
			if got := m.Mounted(); len(got) != 0 {
				t.Errorf("still mounted: %q", got)
			}
			if ents, _ := os.ReadDir(cfg.Dir); len(ents) != 0 {
				t.Errorf("mount points left in %s: %v", cfg.Dir, ents)
			}
		})
	}
}

// A stick plugged in while Find waits is found.
func TestFindWaits(t *testing.T) {
	root := tree(t, FakeDisk{Name: "vda", Bus: "virtio", Sectors: 1 << 20})
	stick := FakeDisk{Name: "sda", Bus: "usb", Removable: true, Sectors: 1 << 20, Parts: []int64{1 << 19}, NoNodes: true}
	m := &FakeMounter{FS: map[string]FakeFS{filepath.Join(root, "dev/sda1"): {Type: "vfat", Files: bundle(".")}}}
	cfg := testConfig(t, root, m)
	type result struct {
		m   *Medium
		err error
	}
	done := make(chan result, 1)
	go func() {
		med, err := Find(t.Context(), cfg)
		done <- result{med, err}
	}()
	// The kernel lists the disk before devtmpfs has its nodes.
	if err := stick.Write(root); err != nil {
		t.Fatal(err)
	}
	if err := stick.WriteNodes(root); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("Find = %v", r.err)
	}
	defer r.m.Close()
	if r.m.Name != "sda1" {
		t.Errorf("Find = %+v, want sda1", r.m)
	}
}

func TestFindCancelled(t *testing.T) {
	root := tree(t, FakeDisk{Name: "vda", Bus: "virtio", Sectors: 1 << 20})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Find(ctx, testConfig(t, root, &FakeMounter{})); !errors.Is(err, context.Canceled) {
		t.Errorf("Find(cancelled) = %v, want context.Canceled", err)
	}
}

// A whole disk tried before the kernel listed its partitions is not
// blamed once they are there.
func TestNoBundleLeavesOutPartitionedDisks(t *testing.T) {
	disk := &DeviceError{Device: "sda", Err: errors.New("cannot mount it")}
	part := &DeviceError{Device: "sda1", FSType: "vfat", Err: errors.New("no bundle in it")}
	err := noBundle([]*DeviceError{disk, part}, map[string]bool{"sda": true})
	if want := "no bundle on the removable media: found sda1 (vfat) but no bundle in it"; err.Error() != want {
		t.Errorf("noBundle = %q, want %q", err, want)
	}
	err = noBundle([]*DeviceError{disk}, map[string]bool{"sda": true})
	if !strings.Contains(err.Error(), "found sda but cannot mount it") {
		t.Errorf("noBundle(only the disk) = %q, want the disk's error", err)
	}
}

func TestFSTypes(t *testing.T) {
	root := t.TempDir()
	c := Config{Root: root}
	c = c.withDefaults()
	if got := c.fstypes(); !cmp.Equal(got, DefaultFSTypes) {
		t.Errorf("fstypes(no /proc/filesystems) = %q, want all", got)
	}
	if err := WriteFakeFilesystems(root, "iso9660", "btrfs", "vfat"); err != nil {
		t.Fatal(err)
	}
	if got, want := c.fstypes(), []string{"vfat", "iso9660"}; !cmp.Equal(got, want) {
		t.Errorf("fstypes = %q, want %q", got, want)
	}
	if err := WriteFakeFilesystems(root, "btrfs"); err != nil {
		t.Fatal(err)
	}
	if got := c.fstypes(); !cmp.Equal(got, DefaultFSTypes) {
		t.Errorf("fstypes(none listed) = %q, want all", got)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{Timeout: -1}, {Settle: -1}, {FSTypes: []string{}}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Config%+v.Validate() = nil", c)
		}
		if _, err := Find(t.Context(), c); err == nil {
			t.Errorf("Find(Config%+v) = nil error", c)
		}
	}
}

func TestPartName(t *testing.T) {
	for d, want := range map[string]string{"sda": "sda2", "mmcblk1": "mmcblk1p2", "nvme0n1": "nvme0n1p2"} {
		if got := (FakeDisk{Name: d}).PartName(2); got != want {
			t.Errorf("PartName(%s, 2) = %q, want %q", d, got, want)
		}
	}
}
