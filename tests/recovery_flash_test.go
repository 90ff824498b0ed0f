package tests

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/factory"
	"github.com/lifeboat-update/lifeboat/pkg/flash"
	"github.com/lifeboat-update/lifeboat/pkg/identity"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/qemu"
	qdevice "github.com/lifeboat-update/lifeboat/qemu/device"
)

// flashResult is the LIFEBOAT-RESULT line of lifeboat.mode=flash.
type flashResult struct {
	OK       bool                   `json:"ok"`
	Mode     string                 `json:"mode"`
	Check    string                 `json:"check"`
	Error    string                 `json:"error"`
	Version  string                 `json:"version"`
	Slot     string                 `json:"slot"`
	Source   string                 `json:"source"`
	Identity *identity.Registration `json:"identity"`
	PeakRSS  int64                  `json:"peak_rss_bytes"`
	Phases   []struct {
		Name    string  `json:"name"`
		Seconds float64 `json:"seconds"`
	} `json:"phases"`
}

// flashSource is what a line station serves for layout: the frozen
// mirror holding release 1 and, beside it, the ESP image built from this
// checkout (flash/).
func (f *recoveryFixture) flashSource(t *testing.T, layout string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	copyTree(t, dir, f.OldRepo)
	img := filepath.Join(t.TempDir(), "esp.img")
	label, err := qdevice.BootPartition(t.Context(), qdevice.Spec{Board: f.Board, Layout: layout, Kernel: f.Kernel, Ramdisk: f.Ramdisk}, img)
	if err != nil {
		t.Fatal(err)
	}
	if err := flash.Write(dir, f.Board.Name, map[string]string{label: img}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// blankDisk is an all-zero disk file of layout's disk_size.
func (f *recoveryFixture) blankDisk(t *testing.T, layout string) string {
	t.Helper()
	l, err := f.Board.Layout(layout)
	if err != nil {
		t.Fatal(err)
	}
	size, err := board.ParseSize(l.DiskSize)
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, size); err != nil {
		t.Fatal(err)
	}
	return disk
}

// flashSpec boots ramdisk from the line station, as a netboot or USB boot
// would, in flash mode, with the command line's extra parameters.
func (f *recoveryFixture) flashSpec(disk, ramdisk, layout, extra string) qdevice.RunSpec {
	return qdevice.RunSpec{
		Disk: disk, Kernel: f.Kernel, Initrd: ramdisk,
		Append: f.Board.BaseCmdline() + " lifeboat.mode=flash lifeboat.layout=" + layout + " lifeboat.after=poweroff lifeboat.onfail=poweroff " + extra,
	}
}

// espFile reads a file from the FAT in partition label of d with mtools.
func espFile(t *testing.T, d *qdevice.Disk, label, name string) []byte {
	t.Helper()
	off, _, err := d.Partition(label)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mtype", "-i", fmt.Sprintf("%s@@%d", d.Path, off), "::"+name).Output()
	if err != nil {
		t.Fatalf("mtype %s: %v", name, err)
	}
	return out
}

// checkFlashed checks a flashed disk: the identity on the ESP matches the
// registration printed, and through OVMF and GRUB slot A boots release 1,
// verified, and marks itself good.
func (f *recoveryFixture) checkFlashed(t *testing.T, disk, layout string, res flashResult) *qdevice.Disk {
	t.Helper()
	d, err := qdevice.Open(f.Board, layout, disk)
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.Parse(espFile(t, d, "esp", identity.Name))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := id.Registration("1")
	if err != nil {
		t.Fatal(err)
	}
	if res.Identity == nil || *res.Identity != reg {
		t.Errorf("registration printed %+v, the identity on the ESP gives %+v", res.Identity, reg)
	}
	t.Logf("registration: %+v; peak RSS of the flow %d bytes; phases %+v", reg, res.PeakRSS, res.Phases)
	lines := f.boot(t, qdevice.RunSpec{Disk: disk})
	if got := strings.Join(demoLines(lines), "; "); !strings.Contains(got, "version=1 slot=A verity=ok") || !strings.Contains(got, "marked-good slot=A") {
		t.Fatalf("A did not boot v1 after the flash: %s", got)
	}
	env := envOf(t, d)
	if env[slot.LeftVar("A")] != "3" || env[slot.TryVar] != "" || env["lifeboat_layout"] != layout || env["LIFEBOAT_A_VERITY"] != f.VerityArg("1") {
		t.Errorf("grubenv after the first boot: %v, want A good, lifeboat_layout=%s", env, layout)
	}
	return d
}

// TestRecoveryFlash is issue 7's acceptance 6: a blank disk flashed from
// the network (layout ab, the device ID from the line station) and from a
// USB stick (layout small: the factory partition and its record too)
// boots v1, with its identity in place; a disk that is not blank is
// refused and not written.
func TestRecoveryFlash(t *testing.T) {
	f := needRecovery(t)
	ramdisk := f.Ramdisk // it carries the repository's root.json, as a line station's must

	t.Run("network", func(t *testing.T) {
		srv := serveRepo(t, f.flashSource(t, "ab"))
		disk := f.blankDisk(t, "ab")
		spec := f.flashSpec(disk, ramdisk, "ab", "lifeboat.source=net lifeboat.repo="+srv.url+" lifeboat.device=line-7-0042")
		spec.Net = &qemu.NetUser{}
		lines := f.boot(t, spec)
		res := resultOf[flashResult](t, lines)
		if !res.OK || res.Mode != "flash" || res.Version != "1" || res.Slot != "A" || res.Source != srv.url {
			t.Fatalf("result %+v; console:\n%s", res, strings.Join(lines, "\n"))
		}
		if res.Identity == nil || res.Identity.DeviceID != "line-7-0042" {
			t.Errorf("registration %+v, want device line-7-0042", res.Identity)
		}
		for _, ph := range []string{"partition", "data", "network", "boot", "install", "identity", "switch"} {
			if !containsLine(lines, "LIFEBOAT-PHASE name="+ph+" ") {
				t.Errorf("console lacks phase %s", ph)
			}
		}
		f.checkFlashed(t, disk, "ab", res)
	})

	t.Run("usb", func(t *testing.T) {
		stick := filepath.Join(t.TempDir(), "stick.img")
		if err := qdevice.Stick(t.Context(), f.flashSource(t, "small"), stick); err != nil {
			t.Fatal(err)
		}
		disk := f.blankDisk(t, "small")
		spec := f.flashSpec(disk, ramdisk, "small", "lifeboat.source=usb")
		spec.USB = stick
		lines := f.boot(t, spec)
		res := resultOf[flashResult](t, lines)
		if !res.OK || res.Mode != "flash" || res.Version != "1" || res.Source != "usb" || res.Identity == nil {
			t.Fatalf("result %+v; console:\n%s", res, strings.Join(lines, "\n"))
		}
		d := f.checkFlashed(t, disk, "small", res)

		// The factory partition holds release 1's image, as its record says.
		var rec factory.Record
		if err := json.Unmarshal(espFile(t, d, "esp", factory.RecordName), &rec); err != nil {
			t.Fatal(err)
		}
		want := f.Releases["1"].Images[0]
		if rec.Version != "1" || rec.Image.Class != "rootfs" || rec.Image.Size != want.Size || rec.Image.SHA256 != want.SHA256 {
			t.Errorf("factory record %+v, want release 1's rootfs", rec)
		}
		off, _, err := d.Partition("factory")
		if err != nil {
			t.Fatal(err)
		}
		file, err := os.Open(disk)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(file, off, want.Size)); err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want.SHA256 {
			t.Errorf("the factory partition hashes to %s, release 1's rootfs to %s", got, want.SHA256)
		}
	})

	t.Run("not blank", func(t *testing.T) {
		// Refused before any source is looked for: no stick, no network.
		d := f.newDevice(t, nil)
		before := fileSHA256(t, d.Path)
		lines := f.boot(t, f.flashSpec(d.Path, ramdisk, "ab", "lifeboat.source=usb"))
		res := resultOf[flashResult](t, lines)
		if res.OK || res.Check != "refused" || !strings.Contains(res.Error, "/dev/vda is not blank") || !strings.Contains(res.Error, "lifeboat.force=1") {
			t.Fatalf("result %+v, want check refused naming the disk; console:\n%s", res, strings.Join(lines, "\n"))
		}
		if fileSHA256(t, d.Path) != before {
			t.Error("the disk changed, though the flash was refused")
		}
	})
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	h := sha256.New()
	if _, err := io.Copy(h, file); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
