package media

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
)

// FakeMounter is a Mounter for tests, with no root: mounting a device
// copies the files of its FakeFS into the mount point, unmounting deletes
// them again. It records every call.
type FakeMounter struct {
	// FS are the file systems on the devices, by device node path.
	FS map[string]FakeFS

	mu      sync.Mutex
	mounted map[string]string // mount point → device
	calls   []string
}

var _ Mounter = (*FakeMounter)(nil)

// FakeFS is the file system on one device.
type FakeFS struct {
	Type  string // "vfat"
	Files fs.FS  // its content, such as an fstest.MapFS
}

// Calls returns the calls made, in order: "mount -t vfat /dev/sda1 DIR",
// "umount DIR".
func (f *FakeMounter) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Mounted returns the mount points that are mounted, sorted.
func (f *FakeMounter) Mounted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for mp := range f.mounted {
		out = append(out, mp)
	}
	slices.Sort(out)
	return out
}

// Mount implements Mounter. Like mount(2), it fails with EINVAL for the
// wrong file system type, ENXIO for a device with none, EBUSY for a busy
// mount point.
func (f *FakeMounter) Mount(dev, dir, fstype string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("mount -t %s %s %s", fstype, dev, dir))
	fail := func(err error) error { return fmt.Errorf("mount -t %s %s %s: %w", fstype, dev, dir, err) }
	if _, busy := f.mounted[dir]; busy {
		return fail(syscall.EBUSY)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fail(syscall.ENOENT)
	}
	fsys, ok := f.FS[dev]
	switch {
	case !ok:
		return fail(syscall.ENXIO)
	case fsys.Type != fstype:
		return fail(syscall.EINVAL)
	}
	if fsys.Files != nil {
		if err := os.CopyFS(dir, fsys.Files); err != nil {
			return fail(err)
		}
	}
	if f.mounted == nil {
		f.mounted = map[string]string{}
	}
	f.mounted[dir] = dev
	return nil
}

// Unmount implements Mounter.
func (f *FakeMounter) Unmount(dir string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "umount "+dir)
	if _, ok := f.mounted[dir]; !ok {
		return fmt.Errorf("umount %s: %w", dir, syscall.EINVAL)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("umount %s: %w", dir, err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("umount %s: %w", dir, err)
		}
	}
	delete(f.mounted, dir)
	return nil
}

// FakeDisk is a disk in a fake sysfs tree, for Config.Root in tests: Write
// puts it under root/sys/block (a link into root/sys/devices, as the
// kernel has it) with its partitions, and empty device nodes in root/dev.
type FakeDisk struct {
	Name      string  // "sda", "mmcblk1", "vda"
	Bus       string  // "usb", "mmc", "virtio", "ata", or "virtual" (loop, dm)
	Removable bool    // the removable attribute
	Sectors   int64   // size in 512-byte sectors; 0 for no medium
	Parts     []int64 // the partitions' sizes in sectors: NAME1 (or NAMEp1), ...
	NoNodes   bool    // no device nodes in root/dev (yet)
}

// PartName is the name of partition n of the disk.
func (d FakeDisk) PartName(n int) string {
	if c := d.Name[len(d.Name)-1]; '0' <= c && c <= '9' {
		return fmt.Sprintf("%sp%d", d.Name, n)
	}
	return fmt.Sprintf("%s%d", d.Name, n)
}

// Write adds the disk to the fake tree at root. The /sys/block link comes
// last, so a concurrent scan sees the whole disk or none of it.
func (d FakeDisk) Write(root string) error {
	var dev string
	switch d.Bus {
	case "usb":
		dev = "devices/pci0000:00/0000:00:02.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0/block/"
	case "mmc":
		dev = "devices/platform/soc/fe340000.mmc/mmc_host/mmc1/mmc1:59b4/block/"
	case "virtio":
		dev = "devices/pci0000:00/0000:00:03.0/virtio1/block/"
	case "ata":
		dev = "devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/"
	case "virtual":
		dev = "devices/virtual/block/"
	default:
		return fmt.Errorf("fake disk %s: unknown bus %q", d.Name, d.Bus)
	}
	dir := filepath.Join(root, "sys", dev, d.Name)
	removable := "0\n"
	if d.Removable {
		removable = "1\n"
	}
	files := map[string]string{
		"size":      fmt.Sprintf("%d\n", d.Sectors),
		"removable": removable,
		"uevent":    fmt.Sprintf("MAJOR=8\nMINOR=0\nDEVNAME=%s\nDEVTYPE=disk\n", d.Name),
	}
	start := int64(2048)
	for i, size := range d.Parts {
		p := d.PartName(i + 1)
		files[p+"/partition"] = fmt.Sprintf("%d\n", i+1)
		files[p+"/start"] = fmt.Sprintf("%d\n", start)
		files[p+"/size"] = fmt.Sprintf("%d\n", size)
		files[p+"/uevent"] = fmt.Sprintf("MAJOR=8\nMINOR=%d\nDEVNAME=%s\nDEVTYPE=partition\nPARTN=%d\n", i+1, p, i+1)
		start += size
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	if !d.NoNodes {
		if err := d.WriteNodes(root); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "sys/block"), 0o755); err != nil {
		return err
	}
	return os.Symlink(filepath.Join("..", dev, d.Name), filepath.Join(root, "sys/block", d.Name))
}

// WriteNodes adds the disk's device nodes (empty files) to root/dev.
func (d FakeDisk) WriteNodes(root string) error {
	nodes := []string{d.Name}
	for i := range d.Parts {
		nodes = append(nodes, d.PartName(i+1))
	}
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		return err
	}
	for _, n := range nodes {
		if err := os.WriteFile(filepath.Join(root, "dev", n), nil, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// WriteFakeFilesystems writes root/proc/filesystems listing the types, as
// the kernel does for block file systems.
func WriteFakeFilesystems(root string, types ...string) error {
	var b []byte
	b = append(b, "nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\n"...)
	for _, t := range types {
		b = append(b, "\t"+t+"\n"...)
	}
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, "proc/filesystems"), b, 0o644)
}
