package tests

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
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

func wipeResultOf(t *testing.T, lines []string) wipeResult {
	t.Helper()
	for _, l := range lines {
		if m := resultRE.FindStringSubmatch(l); m != nil {
			var r wipeResult
			if err := json.Unmarshal([]byte(m[1]), &r); err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return r
		}
	}
	t.Fatalf("no LIFEBOAT-RESULT on the console:\n%s", strings.Join(lines, "\n"))
	return wipeResult{}
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

// partitionIsZero reports whether the partition label of d reads as zeros, and
// the offset of the first byte that does not.
func partitionIsZero(t *testing.T, d *qdevice.Disk, label string) (bool, int64) {
	t.Helper()
	f, err := os.Open(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off, size, err := d.Partition(label)
	if err != nil {
		t.Fatal(err)
	}
	buf, zero := make([]byte, 1<<20), make([]byte, 1<<20)
	r := io.NewSectionReader(f, off, size)
	for pos := int64(0); pos < size; {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-pos)], pos)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], zero[:n]) {
			return false, pos
		}
		pos += int64(n)
	}
	return true, 0
}

// TestRecoveryWipe is issue 7's acceptance 5: lifeboat.mode=wipe wipes
// the data partition, every other partition stays byte for byte as it
// was, and the bootloader still boots v1 from slot A; a wipe of the good
// slot is refused and writes nothing.
func TestRecoveryWipe(t *testing.T) {
	f := needRecovery(t)

	t.Run("data", func(t *testing.T) {
		d := f.newDevice(t, nil)
		before := partitionHashes(t, d)
		if zero, _ := partitionIsZero(t, d, "data"); zero {
			t.Fatal("the data partition reads as zeros before the wipe")
		}
		lines := f.boot(t, f.direct(d, "lifeboat.mode=wipe lifeboat.wipe=data lifeboat.after=poweroff"))
		res := wipeResultOf(t, lines)
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
		if zero, at := partitionIsZero(t, d, "data"); !zero {
			t.Errorf("the data partition has a non-zero byte at %d after the wipe", at)
		}
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
		res := wipeResultOf(t, lines)
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
