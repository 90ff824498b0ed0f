package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/grub"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/factory"
	"github.com/lifeboat-update/lifeboat/pkg/flash"
	"github.com/lifeboat-update/lifeboat/pkg/identity"
	"github.com/lifeboat-update/lifeboat/pkg/install"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

func (s *fakeSys) Disk(ctx context.Context, name string) (string, error) {
	if p, ok := s.disks[name]; ok {
		return p, nil
	}
	return "", fmt.Errorf("disk %s not found within 15s", name)
}

// RereadPartitions reads the GPT of the disk file at path and makes each
// of its partitions a file beside it, of the partition's size and reading
// as zeros, as a blank disk's do, mounted on a directory beside it.
func (s *fakeSys) RereadPartitions(path string) error {
	s.calls = append(s.calls, "reread "+filepath.Base(path))
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	t, err := blockdev.ReadGPT(f, fi.Size(), 0)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	for _, p := range t.Partitions {
		_, size := t.Extent(p)
		file := filepath.Join(dir, p.Name+".part")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			return err
		}
		if err := os.Truncate(file, size); err != nil {
			return err
		}
		mnt := filepath.Join(dir, p.Name+".mnt")
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			return err
		}
		s.parts[p.Name], s.mounts[file] = file, mnt
	}
	return nil
}

// blank is a qemu-x86_64 device with a blank disk: a sparse file, whose
// partitions appear as files when the flow has the kernel re-read it.
type blank struct {
	t     *testing.T
	board *board.Board
	sys   *fakeSys
	dir   string
	disk  string
	etc   string
	// productUUID is the file the DMI system UUID is read from.
	productUUID string
}

func newBlank(t *testing.T, rootJSON []byte, size int64) *blank {
	t.Helper()
	b, err := board.Load(filepath.Join("..", "boards", "qemu-x86_64"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d := &blank{t: t, board: b, dir: dir, disk: filepath.Join(dir, "disk.img"), etc: filepath.Join(dir, "etc"),
		productUUID: filepath.Join(dir, "product_uuid")}
	d.sys = &fakeSys{parts: map[string]string{}, mounts: map[string]string{}, disks: map[string]string{b.Disk: d.disk}}
	if err := os.WriteFile(d.disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(d.disk, size); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(d.etc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.etc, "root.json"), rootJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	// What the ESP image holds, as the fake's mount of the ESP shows it:
	// an empty grubenv.
	if err := os.MkdirAll(filepath.Join(d.espDir(), "EFI", "BOOT"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := grub.Open(filepath.Join(d.espDir(), "EFI", "BOOT", "grubenv"), grub.GRUBWrites()).Save(context.Background(), bootenv.Vars{}); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *blank) espDir() string { return filepath.Join(d.dir, "esp.mnt") }

func (d *blank) run(src Sources, cmdline string) (string, Result) {
	d.t.Helper()
	var console bytes.Buffer
	d.sys.calls = nil
	f := &flow{sys: d.sys, src: src, board: d.board, etc: d.etc, console: &console, now: time.Now, productUUID: d.productUUID}
	if err := f.run(context.Background(), cmdline); err != nil {
		d.t.Fatalf("run: %v\n%s", err, console.String())
	}
	out := console.String()
	var res Result
	for _, line := range strings.Split(out, "\n") {
		if j, ok := strings.CutPrefix(line, ResultMarker+" "); ok {
			if err := json.Unmarshal([]byte(j), &res); err != nil {
				d.t.Fatalf("%s: %v", line, err)
			}
			return out, res
		}
	}
	d.t.Fatalf("no %s line:\n%s", ResultMarker, out)
	return out, res
}

func (d *blank) env() bootenv.Vars {
	d.t.Helper()
	v, err := grub.Open(filepath.Join(d.espDir(), "EFI", "BOOT", "grubenv")).Load(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	return v
}

func (d *blank) part(label string, n int64) []byte {
	d.t.Helper()
	b, err := os.ReadFile(d.sys.parts[label])
	if err != nil {
		d.t.Fatal(err)
	}
	return b[:n]
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// flashRepo is a repository holding release 1 and, beside it, an ESP
// image of 1 MiB of noise.
func flashRepo(t *testing.T) (*repo, []byte) {
	t.Helper()
	r := newRepo(t)
	r.publish("1")
	esp := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{'e', 's', 'p'}).Read(esp)
	img := filepath.Join(t.TempDir(), "esp.fat")
	if err := os.WriteFile(img, esp, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := flash.Write(r.dir, "qemu-x86_64", map[string]string{"esp": img}); err != nil {
		t.Fatal(err)
	}
	return r, esp
}

const abDiskSize = 320 << 20

// TestFlash flashes a blank disk over the network with the ab layout and
// checks every step's work: the GPT, the ESP image, release 1 in slot A,
// the data partition's file system with the trusted state, the index and
// the release recorded, the identity and its registration, and the
// bootloader environment, which boots A.
func TestFlash(t *testing.T) {
	r, esp := flashRepo(t)
	d := newBlank(t, r.root(), abDiskSize)
	srv := httptest.NewServer(http.FileServer(http.Dir(r.dir)))
	defer srv.Close()

	out, res := d.run(&fakeSources{offered: srv.URL + "/"}, "lifeboat.mode=flash lifeboat.layout=ab lifeboat.device=line-1-0001 lifeboat.server=https://fleet.example:8443/ lifeboat.after=poweroff")
	if !res.OK || res.Mode != "flash" || res.Version != "1" || res.Slot != "A" || res.Source != srv.URL+"/" {
		t.Fatalf("result %+v\n%s", res, out)
	}

	// The GPT.
	f, err := os.Open(d.disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := blockdev.ReadGPT(f, abDiskSize, 0)
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, p := range tab.Partitions {
		labels = append(labels, p.Name)
	}
	if got := strings.Join(labels, " "); got != "esp rootfs-a rootfs-b data" {
		t.Errorf("GPT partitions %s, want the ab layout's", got)
	}
	if !strings.Contains(strings.Join(d.sys.calls, ","), "reread disk.img") {
		t.Errorf("calls %v: the kernel was not asked to re-read the disk", d.sys.calls)
	}

	// The ESP, slot A and the data partition.
	if !bytes.Equal(d.part("esp", int64(len(esp))), esp) {
		t.Error("the ESP does not hold the image served beside the repository")
	}
	im, want := r.slotContent("1")
	if !bytes.Equal(d.part("rootfs-a", im.Size), want) {
		t.Error("slot A does not hold release 1")
	}
	if sb := d.part("data", 2048); sb[1024+56] != 0x53 || sb[1024+57] != 0xef {
		t.Error("the data partition has no ext4 superblock")
	}
	data := d.sys.mounts[d.sys.parts["data"]]
	state := durable.OS(filepath.Join(data, "lifeboat", "state"))
	if _, err := state.ReadFile("root.json"); err != nil {
		t.Errorf("trusted state not provisioned: %v", err)
	}
	c := &release.Client{State: state, Fetch: release.DirFetcher{Dir: r.dir}, Board: "qemu-x86_64"}
	if _, err := c.Plan(context.Background(), []string{"rootfs"}); !errors.Is(err, release.ErrUpToDate) {
		t.Errorf("Plan after the flash = %v, want ErrUpToDate: release 1 recorded as installed", err)
	}
	idx, err := chunk.ReadIndexFile(filepath.Join(data, install.SlotIndexName("A", "rootfs")))
	if err != nil || idx.Size() != uint64(im.Size) {
		t.Errorf("slot A's kept index: %v, %v; want release 1's, of %d bytes", idx, err, im.Size)
	}

	// The identity, and its registration in the result.
	id, err := identity.Read(durable.OS(d.espDir()))
	if err != nil {
		t.Fatal(err)
	}
	if id.Server != "https://fleet.example:8443/" {
		t.Errorf("identity's server %q, want lifeboat.server='s", id.Server)
	}
	reg, err := id.Registration("1")
	if err != nil {
		t.Fatal(err)
	}
	if res.Identity == nil || *res.Identity != reg || reg.DeviceID != "line-1-0001" || reg.Board != "qemu-x86_64" {
		t.Errorf("registration %+v, want %+v for device line-1-0001", res.Identity, reg)
	}
	if !strings.Contains(out, `"identity":{"device_id":"line-1-0001","board":"qemu-x86_64","version":"1","token_sha256":"`+reg.TokenSHA256+`"}`) {
		t.Errorf("the result line does not carry the registration:\n%s", out)
	}
	if strings.Contains(out, id.Token) {
		t.Error("the token itself is on the console")
	}

	// The switch: A on trial, with its verity argument and the layout; B,
	// empty, is not in BOOT_ORDER.
	env := d.env()
	wantVerity := fmt.Sprintf("%d:%s", im.Verity.HashOffset, im.Verity.RootHash)
	if env[slot.OrderVar] != "A recovery" || env[slot.LeftVar("A")] != "3" || env[slot.TryVar] != "A" ||
		env["LIFEBOAT_A_VERITY"] != wantVerity || env["lifeboat_layout"] != "ab" {
		t.Errorf("grubenv %v, want BOOT_ORDER=A recovery, A on trial with 3 tries, LIFEBOAT_A_VERITY=%s, lifeboat_layout=ab", env, wantVerity)
	}
	booted, err := slot.SimulateBoot(context.Background(), grub.Open(filepath.Join(d.espDir(), "EFI", "BOOT", "grubenv")), []slot.Name{"A", "B", slot.Recovery}, slot.DefaultTries)
	if err != nil || booted != "A" {
		t.Errorf("the bootloader boots %q (%v), want A", booted, err)
	}

	for _, ph := range []string{"partition", "data", "network", "boot", "install", "identity", "switch"} {
		if !strings.Contains(out, PhaseMarker+" name="+ph+" ") {
			t.Errorf("console lacks phase %s:\n%s", ph, out)
		}
	}
	if strings.Contains(out, PhaseMarker+" name=factory ") {
		t.Error("a factory phase on a layout without a factory partition")
	}
	if got := d.sys.calls[len(d.sys.calls)-1]; got != "poweroff" {
		t.Errorf("last call %s, want poweroff", got)
	}
}

// TestFlashSmall flashes the small layout from a bundle: the factory
// partition holds release 1 too, written from slot A without fetching,
// with its factory record; the device ID is the DMI system UUID; and the
// flow starts slot A with kexec.
func TestFlashSmall(t *testing.T) {
	r, _ := flashRepo(t)
	d := newBlank(t, r.root(), abDiskSize)
	if err := os.WriteFile(d.productUUID, []byte("4C4C4544-0042-3010-8052-B7C04F505931\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	out, res := d.run(&fakeSources{bundle: r.dir}, "lifeboat.mode=flash lifeboat.layout=small")
	if !res.OK || res.Version != "1" || res.Slot != "A" || res.Source != "usb" {
		t.Fatalf("result %+v\n%s", res, out)
	}
	im, want := r.slotContent("1")
	for _, label := range []string{"rootfs", "factory"} {
		if !bytes.Equal(d.part(label, im.Size), want) {
			t.Errorf("%s does not hold release 1", label)
		}
	}
	if res.FetchedBytes != r.storedBytes("1") || res.ImageBytes != 2*im.Size {
		t.Errorf("fetched %d bytes, wrote %d; want release 1's chunks once (%d bytes) and its image twice (%d)", res.FetchedBytes, res.ImageBytes, r.storedBytes("1"), 2*im.Size)
	}
	rec, idx, err := factory.Read(durable.OS(d.espDir()))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Board != "qemu-x86_64" || rec.Version != "1" || rec.Image.Class != "rootfs" || rec.Image.Size != im.Size || rec.Image.SHA256 != im.SHA256 || idx.Size() != uint64(im.Size) {
		t.Errorf("factory record %+v, want release 1's rootfs (%d bytes, %s)", rec, im.Size, im.SHA256)
	}
	if !strings.Contains(out, PhaseMarker+" name=factory ") {
		t.Errorf("console lacks phase factory:\n%s", out)
	}
	if res.Identity == nil || res.Identity.DeviceID != "4c4c4544-0042-3010-8052-b7c04f505931" {
		t.Errorf("identity %+v, want the DMI system UUID, lower-case", res.Identity)
	}
	if env := d.env(); env["lifeboat_layout"] != "small" || !strings.HasPrefix(env[slot.OrderVar], "A") {
		t.Errorf("grubenv %v, want lifeboat_layout=small and A first", env)
	}
	if got := d.sys.calls[len(d.sys.calls)-1]; got != "kexec" || !strings.Contains(d.sys.kexec[2], "lifeboat.slot=A lifeboat.layout=small") {
		t.Errorf("calls %v, kexec command line %q; want kexec into A", d.sys.calls, d.sys.kexec)
	}
}

// storedBytes is the stored size of release v's distinct chunks: what
// installing it from nothing fetches.
func (r *repo) storedBytes(v string) int64 {
	r.t.Helper()
	seen := map[chunk.ID]bool{}
	idx, err := chunk.ReadIndexFile(filepath.Join(r.dir, filepath.FromSlash(r.rels[v].Images[0].Index.Path)))
	if err != nil {
		r.t.Fatal(err)
	}
	var n int64
	for _, c := range idx.Chunks {
		if seen[c.ID] {
			continue
		}
		seen[c.ID] = true
		fi, err := os.Stat(filepath.Join(r.dir, release.StoreDir, c.ID.String()[:4], c.ID.String()+".cacnk"))
		if err != nil {
			r.t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// TestFlashRandomID: without lifeboat.device= or a usable DMI UUID (QEMU's
// is all zeros unless set), the device ID is a random UUID.
func TestFlashRandomID(t *testing.T) {
	r, _ := flashRepo(t)
	d := newBlank(t, r.root(), abDiskSize)
	if err := os.WriteFile(d.productUUID, []byte("00000000-0000-0000-0000-000000000000\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	out, res := d.run(&fakeSources{bundle: r.dir}, "lifeboat.mode=flash lifeboat.after=poweroff")
	if !res.OK || res.Identity == nil {
		t.Fatalf("result %+v\n%s", res, out)
	}
	if id := res.Identity.DeviceID; len(id) != 36 || id[14] != '4' || strings.Trim(id, "0-") == "" {
		t.Errorf("device ID %s, want a random version-4 UUID", id)
	}
}

// TestFlashRefused: a disk that is not blank or too small, a damaged or
// missing ESP image, and what a flash cannot do are refused with what was
// wrong named; a refused disk is not written at all, and a flash that
// fails later leaves no slot the bootloader would boot.
func TestFlashRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int64
		prepare func(t *testing.T, d *blank, r *repo)
		cmdline string
		check   string
		want    string
		// untouched: the disk is not written.
		untouched bool
	}{
		{"not blank", abDiskSize, writeGPT, "", "refused", "disk already has a partition table); give lifeboat.force=1 to overwrite it", true},
		{"too small", 200 << 20, nil, "", "refused", "has 209715200 bytes, layout ab needs 335544320 (disk_size 320M)", true},
		{"no disk", abDiskSize, func(t *testing.T, d *blank, r *repo) { d.board.Disk = "" }, "", "check", `names no disk to flash (board.json "disk")`, true},
		{"encrypted", abDiskSize, nil, "lifeboat.layout=ab-crypt", "check", "the data partition data is encrypted", true},
		{"device ID", abDiskSize, nil, "lifeboat.device=line/7", "check", `lifeboat.device=: invalid identity: device ID "line/7"`, true},
		{"damaged image", abDiskSize, func(t *testing.T, d *blank, r *repo) {
			p := filepath.Join(r.dir, filepath.FromSlash(flash.ImageName("esp")))
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "", "boot", "esp: flash image does not match its manifest: flash/esp.img.zst", false},
		{"no manifest", abDiskSize, func(t *testing.T, d *blank, r *repo) {
			if err := os.RemoveAll(filepath.Join(r.dir, flash.Dir)); err != nil {
				t.Fatal(err)
			}
		}, "", "boot", "flash/flash.json", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := flashRepo(t)
			d := newBlank(t, r.root(), tc.size)
			if tc.prepare != nil {
				tc.prepare(t, d, r)
			}
			var before [32]byte
			if tc.untouched {
				before = fileHash(t, d.disk)
			}
			out, res := d.run(&fakeSources{bundle: r.dir}, "lifeboat.mode=flash lifeboat.onfail=poweroff "+tc.cmdline)
			if res.OK || res.Check != tc.check || !strings.Contains(res.Error, tc.want) {
				t.Fatalf("result %+v, want check %q and an error containing %q\n%s", res, tc.check, tc.want, out)
			}
			if !strings.Contains(out, "FAILED ("+tc.check+")") {
				t.Errorf("the console does not name the check:\n%s", out)
			}
			if tc.untouched && fileHash(t, d.disk) != before {
				t.Error("the disk was written")
			}
			if env := d.env(); env[slot.OrderVar] != "" {
				t.Errorf("grubenv %v: a slot would boot", env)
			}
			if _, err := os.Stat(filepath.Join(d.espDir(), filepath.FromSlash(identity.Name))); err == nil || res.Identity != nil {
				t.Errorf("an identity was written (%v) or registered (%+v)", err, res.Identity)
			}
			if got := d.sys.calls[len(d.sys.calls)-1]; got != "poweroff" {
				t.Errorf("last call %s, want poweroff", got)
			}
		})
	}

	// lifeboat.force=1 overwrites the disk that was refused.
	r, _ := flashRepo(t)
	d := newBlank(t, r.root(), abDiskSize)
	writeGPT(t, d, r)
	out, res := d.run(&fakeSources{bundle: r.dir}, "lifeboat.mode=flash lifeboat.force=1 lifeboat.after=poweroff")
	if !res.OK || res.Version != "1" || !strings.Contains(out, "lifeboat.force=1: cleared the partition tables") {
		t.Fatalf("forced flash: result %+v\n%s", res, out)
	}
}

func TestParseParamsFlash(t *testing.T) {
	p, err := parseParams("lifeboat.mode=flash lifeboat.layout=small lifeboat.force=1 lifeboat.device=line-7-0042")
	if err != nil || p.mode != "flash" || p.layout != "small" || !p.force || p.device != "line-7-0042" {
		t.Errorf("parseParams = %+v, %v; want mode flash, layout small, force, device line-7-0042", p, err)
	}
	if p, err := parseParams("lifeboat.mode=flash"); err != nil || p.force || p.device != "" {
		t.Errorf("parseParams(no force, no device) = %+v, %v", p, err)
	}
	if _, err := parseParams("lifeboat.force=yes"); err == nil || !strings.Contains(err.Error(), "lifeboat.force") {
		t.Errorf("parseParams(lifeboat.force=yes) = %v, want an error naming lifeboat.force", err)
	}
}

// writeGPT puts another layout's GPT on d's disk: it is not blank.
func writeGPT(t *testing.T, d *blank, r *repo) {
	t.Helper()
	dev, err := blockdev.Open(d.disk, os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	l := blockdev.Layout{Partitions: []blockdev.PartitionSpec{{Name: "old", Type: blockdev.TypeLinuxFilesystem, Size: blockdev.Rest}}}
	if _, err := l.Create(dev); err != nil {
		t.Fatal(err)
	}
}
