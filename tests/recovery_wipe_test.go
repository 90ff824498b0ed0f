package tests

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	qdevice "github.com/lifeboat-update/lifeboat/qemu/device"
)

// wipeResult is the LIFEBOAT-RESULT line of lifeboat.mode=wipe.
type wipeResult struct {
	OK    bool   `json:"ok"`
	Mode  string `json:"mode"`
	Check string `json:"check"`
	Error string `json:"error"`
	Wiped []struct {
		Label    string `json:"label"`
		Bytes    int64  `json:"bytes"`
		Verified int64  `json:"verified_bytes"`
	} `json:"wiped"`
}

// partitionHashes hashes every partition of the layout in d.
func partitionHashes(t *testing.T, d *qdevice.Disk) map[string][32]byte {
	t.Helper()
	f, err := os.Open(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][32]byte{}
	for _, p := range d.Table.Partitions {
		off, size, err := d.Partition(p.Name)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, off, size)); err != nil {
			t.Fatal(err)
		}
		out[p.Name] = [32]byte(h.Sum(nil))
	}
	return out
}

// partitionFile copies the partition label of d into a file and returns
// its path.
func partitionFile(t *testing.T, d *qdevice.Disk, label string) string {
	t.Helper()
	off, size, err := d.Partition(label)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p := filepath.Join(t.TempDir(), label+".img")
	dst, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(dst, io.NewSectionReader(src, off, size))
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// debugfsCat returns the file name in the ext4 image img, or an error
// saying it is not there.
func debugfsCat(img, name string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("debugfs", "-R", "cat /"+name, img)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// debugfs exits 0 for a file it cannot find, and says so on stderr.
	if err := cmd.Run(); err != nil || bytes.Contains(stderr.Bytes(), []byte("not found")) {
		return "", fmt.Errorf("debugfs cat %s: %v: %s", name, err, stderr.Bytes())
	}
	return stdout.String(), nil
}

// checkEmptyExt4 checks that the partition label of d is a clean ext4 that
// no longer holds the trusted state Build provisioned.
func checkEmptyExt4(t *testing.T, d *qdevice.Disk, label string) {
	t.Helper()
	img := partitionFile(t, d, label)
	if r := command(t, nil, "e2fsck", "-fn", img); r.code != 0 {
		t.Errorf("e2fsck -fn of %s: exit status %d\n%s%s", label, r.code, r.stdout, r.stderr)
	}
	if out, err := debugfsCat(img, qdevice.StateDir+"/root.json"); err == nil {
		t.Errorf("%s still holds the trusted state: %.60q", label, out)
	}
}

// TestRecoveryWipe is issue 7's acceptance 5: lifeboat.mode=wipe wipes
// the data partition, which is then a clean, empty ext4, every other
// partition stays byte for byte as it was, and the bootloader still boots
// v1 from slot A; a wipe of the good slot is refused and writes nothing.
func TestRecoveryWipe(t *testing.T) {
	f := needRecovery(t)
	requireTools(t, "e2fsck", "debugfs")

	t.Run("data", func(t *testing.T) {
		d := f.newDevice(t, nil)
		before := partitionHashes(t, d)
		if _, err := debugfsCat(partitionFile(t, d, "data"), qdevice.StateDir+"/root.json"); err != nil {
			t.Fatalf("no trusted state on the data partition before the wipe: %v", err)
		}
		lines := f.boot(t, f.direct(d, "lifeboat.mode=wipe lifeboat.wipe=data lifeboat.after=poweroff"))
		res := resultOf[wipeResult](t, lines)
		_, size, _ := d.Partition("data")
		if !res.OK || res.Mode != "wipe" || len(res.Wiped) != 1 || res.Wiped[0].Label != "data" || res.Wiped[0].Verified != size {
			t.Fatalf("result %+v, want data's %d bytes wiped and verified; console:\n%s", res, size, strings.Join(lines, "\n"))
		}
		for _, l := range lines {
			if strings.Contains(l, "lifeboat: wiped data") || strings.Contains(l, "LIFEBOAT-PHASE name=wipe ") {
				t.Log(strings.TrimSpace(l))
			}
		}
		for _, ph := range []string{"check", "wipe"} {
			if !containsLine(lines, "LIFEBOAT-PHASE name="+ph+" ") {
				t.Errorf("console lacks phase %s", ph)
			}
		}
		checkEmptyExt4(t, d, "data")
		after := partitionHashes(t, d)
		for label, h := range before {
			if label != "data" && after[label] != h {
				t.Errorf("partition %s changed, but only data was to be wiped", label)
			}
		}
		if t.Failed() {
			return
		}
		// Through OVMF and GRUB: A boots v1 and marks itself good without
		// its data.
		lines = f.boot(t, qdevice.RunSpec{Disk: d.Path})
		if got := strings.Join(demoLines(lines), "; "); !strings.Contains(got, "version=1 slot=A verity=ok") || !strings.Contains(got, "marked-good slot=A") {
			t.Errorf("A did not boot v1 after the wipe: %s", got)
		}
	})

	t.Run("good slot refused", func(t *testing.T) {
		d := f.newDevice(t, nil)
		before := partitionHashes(t, d)
		lines := f.boot(t, f.direct(d, "lifeboat.mode=wipe lifeboat.wipe=data,rootfs-a lifeboat.after=poweroff"))
		res := resultOf[wipeResult](t, lines)
		if res.OK || res.Mode != "wipe" || res.Check != "refused" || !strings.Contains(res.Error, "wipe rootfs-a: slot A is good") || len(res.Wiped) != 0 {
			t.Fatalf("result %+v, want check refused naming rootfs-a and slot A; console:\n%s", res, strings.Join(lines, "\n"))
		}
		if !containsLine(lines, "FAILED (refused)") {
			t.Error("the console does not name the check")
		}
		after := partitionHashes(t, d)
		for label, h := range before {
			if after[label] != h {
				t.Errorf("partition %s changed, though the wipe was refused", label)
			}
		}
	})
}
