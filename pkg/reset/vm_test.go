package reset

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
	"github.com/lifeboat-update/lifeboat/qemu/vmtest"
)

const vmDiskSize = 48 << 20

// TestWipeVM: a wipe leaves nothing of the old data readable. In the guest
// a known pattern is written to all of /dev/vdb, the disk is wiped, and
// every byte read back (through a fresh descriptor, past the page cache)
// must be zero. /dev/vda is a bystander that must keep its content.
func TestWipeVM(t *testing.T) {
	dir := t.TempDir()
	bystander, victim := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	if !vmtest.InGuest() {
		if err := os.WriteFile(bystander, pattern(1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(victim, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(victim, vmDiskSize); err != nil {
			t.Fatal(err)
		}
	}
	if !vmtest.Run(t, vmtest.Options{Disks: []string{bystander, victim}}) {
		return
	}

	dev, err := blockdev.Open(vmtest.Disk(1), os.O_RDWR|os.O_EXCL)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if dev.Size() != vmDiskSize {
		t.Fatalf("%s is %d bytes, want %d", dev.Name(), dev.Size(), vmDiskSize)
	}
	data := pattern(int(dev.Size()))
	if _, err := dev.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := dev.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, vmtest.Disk(1)); !bytes.Equal(got, data) {
		t.Fatalf("%s does not hold the pattern before the wipe", vmtest.Disk(1))
	}

	var log strings.Builder
	st, err := Wipe(context.Background(), dev, 0, dev.Size(), Secure(), Verify(), WithProgress(&progress.Lines{W: &log}))
	if err != nil {
		t.Fatalf("Wipe(%s) = %v", dev.Name(), err)
	}
	t.Logf("Wipe(%s) = %+v\n%s", dev.Name(), st, log.String())
	if st.Verified != vmDiskSize || st.ZeroedByDevice+st.ZeroedByWriting != vmDiskSize {
		t.Errorf("Wipe(%s) = %+v, want all of it zeroed and verified", dev.Name(), st)
	}

	// The pattern has no zero byte, so a disk of zeros holds nothing of it.
	got := readAll(t, vmtest.Disk(1))
	if i := firstNonZero(got); i >= 0 {
		t.Errorf("after Wipe, byte %d of %s is %#x, want every byte zero", i, vmtest.Disk(1), got[i])
	}
	if got := readAll(t, vmtest.Disk(0)); !bytes.Equal(got, pattern(1<<20)) {
		t.Errorf("Wipe of %s changed %s", vmtest.Disk(1), vmtest.Disk(0))
	}
}

// readAll reads a whole device through a new descriptor, after dropping
// the kernel's cache of it.
func readAll(t *testing.T, path string) []byte {
	t.Helper()
	d, err := blockdev.Open(path, os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, d.Size())
	if _, err := d.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}
