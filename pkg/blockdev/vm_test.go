package blockdev

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/lifeboat-update/lifeboat/qemu/vmtest"
)

// vmLayout is the disk TestDeviceIoctlsVM attaches, planned the same on
// host and guest.
var vmLayout = Layout{
	DiskGUID: g("5e0c7a1d-3b2f-4a6e-8d91-0c4f2b7e6a01"),
	Partitions: []PartitionSpec{
		{Name: "boot", Type: TypeEFISystem, Size: 4 << 20, UUID: g("5e0c7a1d-3b2f-4a6e-8d91-0c4f2b7e6a11")},
		{Name: "scratch", Type: TypeLinuxFilesystem, Size: Rest, UUID: g("5e0c7a1d-3b2f-4a6e-8d91-0c4f2b7e6a12")},
	},
}

const vmDiskSize = 32 << 20

// TestDeviceIoctlsVM checks File's ioctls on a real virtio disk: size,
// sector sizes, discard, zero-out, flush, reading the GPT from /dev/vda and
// finding a partition through /sys (the guest has no udev).
func TestDeviceIoctlsVM(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	if !vmtest.InGuest() {
		if err := os.Truncate(mustCreate(t, img), vmDiskSize); err != nil {
			t.Fatal(err)
		}
		f, err := Open(img, os.O_RDWR)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := vmLayout.Create(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if !vmtest.Run(t, vmtest.Options{Disks: []string{img}}) {
		return
	}

	dev, err := Open(vmtest.Disk(0), os.O_RDWR|os.O_EXCL)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if !dev.BlockDevice() || dev.Size() != vmDiskSize {
		t.Errorf("Open(%s): BlockDevice() = %v, Size() = %d; want true, %d", dev.Name(), dev.BlockDevice(), dev.Size(), vmDiskSize)
	}
	if l, p := dev.SectorSizes(); l != 512 || p != 512 {
		t.Errorf("SectorSizes(%s) = %d, %d; want 512, 512", dev.Name(), l, p)
	}

	// The GPT the host wrote, read from the device.
	want, err := vmLayout.Plan(vmDiskSize)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := ReadGPT(dev, dev.Size(), 512)
	if err != nil {
		t.Fatalf("ReadGPT(%s) = %v", dev.Name(), err)
	}
	compareTables(t, "ReadGPT of /dev/vda", tab, want)

	// Found through /sys: the kernel read the same table at boot.
	sp, err := FindPartition(Match{Label: "scratch"})
	if err != nil {
		t.Fatalf("FindPartition(scratch) = %v", err)
	}
	off, size := tab.Extent(want.Partitions[1])
	if sp.Path != "/dev/vda2" || sp.Disk != "/dev/vda" || sp.Offset != off || sp.Size != size || sp.UUID != want.Partitions[1].UUID {
		t.Errorf("FindPartition(scratch) = %+v, want /dev/vda2 on /dev/vda at %d, %d bytes", sp, off, size)
	}
	if sp, err := FindPartition(Match{Type: TypeEFISystem}); err != nil || sp.Path != "/dev/vda1" {
		t.Errorf("FindPartition(type ESP) = %+v, %v; want /dev/vda1", sp, err)
	}

	part, err := tab.Section(dev, want.Partitions[1])
	if err != nil {
		t.Fatal(err)
	}
	data := pattern(int(part.Size()))
	write := func() {
		t.Helper()
		if _, err := part.WriteAt(data, 0); err != nil {
			t.Fatal(err)
		}
		if err := part.Flush(); err != nil {
			t.Fatalf("Flush(%s) = %v", dev.Name(), err)
		}
	}
	readBack := func(what string, off, n int64, zero bool) {
		t.Helper()
		got := make([]byte, n)
		if _, err := part.ReadAt(got, off); err != nil {
			t.Fatal(err)
		}
		w := data[off : off+n]
		if zero {
			w = make([]byte, n)
		}
		if !bytes.Equal(got, w) {
			t.Errorf("after %s, [%d, +%d) of the partition does not read as %s", what, off, n, map[bool]string{true: "zeros", false: "the pattern"}[zero])
		}
	}

	// Discard: virtio-blk offers it, but whether QEMU unmaps or ignores is
	// the drive's business, so only the call is checked.
	write()
	if err := part.Discard(1<<20, 1<<20); err != nil && !errors.Is(err, ErrNotSupported) {
		t.Errorf("Discard = %v", err)
	} else {
		t.Logf("Discard = %v", err)
	}
	if err := part.(SecureDiscarder).SecureDiscard(0, 1<<20); !errors.Is(err, ErrNotSupported) {
		t.Errorf("SecureDiscard(virtio) = %v, want ErrNotSupported", err)
	}

	// Zero-out, and zeroing with unaligned ends.
	write()
	if err := part.ZeroRange(4<<20, 2<<20); err != nil {
		t.Fatalf("ZeroRange = %v", err)
	}
	readBack("ZeroRange", 4<<20-4096, 4096, false)
	readBack("ZeroRange", 4<<20, 2<<20, true)
	readBack("ZeroRange", 6<<20, 4096, false)
	z, err := Zero(context.Background(), part, 8<<20+100, 1<<20)
	if err != nil || z.Device == 0 || z.Written != 4096 {
		t.Errorf("Zero(unaligned) = %+v, %v; want most by the device and 4096 bytes written", z, err)
	}
	if err := part.Flush(); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	readBack("Zero", 8<<20, 100, false)
	readBack("Zero", 8<<20+100, 1<<20, true)
	readBack("Zero", 9<<20+100, 4096, false)
	if err := dev.ZeroRange(100, 512); !errors.Is(err, ErrNotSupported) {
		t.Errorf("ZeroRange(unaligned) = %v, want ErrNotSupported", err)
	}
}

func mustCreate(t *testing.T, path string) string {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
