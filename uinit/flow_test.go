package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/grub"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/dm"
	"github.com/lifeboat-update/lifeboat/pkg/install"
	"github.com/lifeboat-update/lifeboat/pkg/mkfs"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/pkg/tpm"
	"github.com/lifeboat-update/lifeboat/pkg/verity"
)

const (
	slotSize  = 6 << 20
	imageSize = 3<<20 + 12345
	// dataSize fits the smallest ext4 the flow makes (pkg/mkfs).
	dataSize = mkfs.MinExt4Size + 4<<20
)

// fakeSys is a System over files: partitions are files, mounts are
// directories made beforehand, the TPM is a tpm.Fake, the device mapper a
// dm.Fake, and the calls that leave Linux are recorded. A partition that
// holds an ext4 file system the fake has not mounted before (a new
// superblock UUID: mkfs ran) is mounted on its directory emptied, as the
// kernel would show a new file system.
type fakeSys struct {
	parts  map[string]string // PARTLABEL -> file
	disks  map[string]string // kernel name of a whole disk -> file (flash_test.go)
	mounts map[string]string // device -> directory
	uuids  map[string]string // device -> the ext4 UUID last mounted
	tpm    tpm.Sealer        // nil: the machine has no TPM
	dm     *dm.Fake
	calls  []string
	kexec  []string // kernel, initrd, cmdline
}

var _ System = (*fakeSys)(nil)

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

func (s *fakeSys) TPM(ctx context.Context) (tpm.Sealer, io.Closer, error) {
	if s.tpm == nil {
		return nil, nil, fmt.Errorf("%s did not appear within 15s", tpm.DefaultDevice)
	}
	s.calls = append(s.calls, "tpm")
	return s.tpm, nopCloser{}, nil
}

func (s *fakeSys) DeviceMapper() (dm.Control, io.Closer, error) { return s.dm, nopCloser{}, nil }

func (s *fakeSys) LoadModule(path string) error {
	s.calls = append(s.calls, "load "+path)
	return nil
}

func (s *fakeSys) Partition(ctx context.Context, label string) (string, error) {
	if p, ok := s.parts[label]; ok {
		return p, nil
	}
	return "", fmt.Errorf("partition %q not found", label)
}

func (s *fakeSys) Mount(dev, fstype string, ro bool) (string, error) {
	d, ok := s.mounts[dev]
	if !ok {
		return "", fmt.Errorf("mount %s: no file system", dev)
	}
	if uuid, ok := ext4UUID(dev); ok && fstype == "ext4" && s.uuids[dev] != uuid {
		if s.uuids == nil {
			s.uuids = map[string]string{}
		}
		s.uuids[dev] = uuid
		if err := os.RemoveAll(d); err != nil {
			return "", err
		}
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", err
		}
	}
	s.calls = append(s.calls, "mount "+filepath.Base(dev))
	return d, nil
}

// ext4UUID reads the UUID of the ext4 file system in file, if it holds
// one: its superblock is at 1024, the magic 0xEF53 at 0x38 in it, the
// UUID at 0x68.
func ext4UUID(file string) (string, bool) {
	f, err := os.Open(file)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sb := make([]byte, 0x78)
	if _, err := f.ReadAt(sb, 1024); err != nil || sb[0x38] != 0x53 || sb[0x39] != 0xef {
		return "", false
	}
	return fmt.Sprintf("%x", sb[0x68:0x78]), true
}

func (s *fakeSys) Unmount(dir string) error {
	s.calls = append(s.calls, "unmount")
	return nil
}

func (s *fakeSys) KexecLoad(kernel, initrd, cmdline string) error {
	s.calls = append(s.calls, "kexec-load")
	s.kexec = []string{kernel, initrd, cmdline}
	return nil
}

func (s *fakeSys) KexecBoot() error {
	s.calls = append(s.calls, "kexec")
	return nil
}

func (s *fakeSys) Reboot() error   { s.calls = append(s.calls, "reboot"); return nil }
func (s *fakeSys) PowerOff() error { s.calls = append(s.calls, "poweroff"); return nil }
func (s *fakeSys) Shell() error    { s.calls = append(s.calls, "shell"); return nil }

// fakeSources offer a bundle directory, or a network with a repository.
type fakeSources struct {
	bundle  string // "" for no removable media
	offered string
	netErr  error
}

func (s *fakeSources) Bundle(ctx context.Context) (string, func(), error) {
	if s.bundle == "" {
		return "", nil, errors.New("no removable media found")
	}
	return s.bundle, func() {}, nil
}

func (s *fakeSources) Network(ctx context.Context) (string, error) { return s.offered, s.netErr }

// device is a qemu-x86_64 board in files: slot files, a data directory,
// an ESP directory with grubenv, and the ramdisk's /etc/lifeboat.
type device struct {
	t     *testing.T
	board *board.Board
	sys   *fakeSys
	sysw  System // if set, the System the flow runs on, wrapping sys
	esp   string
	etc   string
}

func newDevice(t *testing.T, rootJSON []byte, env bootenv.Vars) *device {
	t.Helper()
	b, err := board.Load(filepath.Join("..", "boards", "qemu-x86_64"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d := &device{t: t, board: b, sys: &fakeSys{parts: map[string]string{}, mounts: map[string]string{}, dm: dm.NewFake(t.TempDir())},
		esp: filepath.Join(dir, "esp"), etc: filepath.Join(dir, "etc")}
	for _, label := range []string{"rootfs-a", "rootfs-b", "esp", "data"} {
		file := filepath.Join(dir, label+".part")
		size := slotSize
		if label == "data" {
			size = dataSize
		}
		junk := make([]byte, size)
		rand.NewChaCha8([32]byte{byte(len(label))}).Read(junk)
		if err := os.WriteFile(file, junk, 0o600); err != nil {
			t.Fatal(err)
		}
		d.sys.parts[label] = file
		mnt := filepath.Join(dir, label+".mnt")
		if err := os.MkdirAll(filepath.Join(mnt, "boot"), 0o755); err != nil {
			t.Fatal(err)
		}
		d.sys.mounts[file] = mnt
	}
	d.esp = d.sys.mounts[d.sys.parts["esp"]]
	if err := os.MkdirAll(filepath.Join(d.esp, "EFI", "BOOT"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(d.etc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.etc, "root.json"), rootJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.etc, "modules.order"), []byte("/lib/modules/x/virtio_blk.ko\n\n/lib/modules/x/ext4.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.envFile().Save(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *device) envFile() *grub.File {
	return grub.Open(filepath.Join(d.esp, "EFI", "BOOT", "grubenv"), grub.GRUBWrites())
}

func (d *device) env() bootenv.Vars {
	d.t.Helper()
	v, err := d.envFile().Load(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	return v
}

// run runs the flow and returns its console and result.
func (d *device) run(src Sources, cmdline string) (string, Result) {
	d.t.Helper()
	return d.runConsole(src, cmdline, nil)
}

func (d *device) slotBytes(label string, n int64) []byte {
	d.t.Helper()
	b, err := os.ReadFile(d.sys.parts[label])
	if err != nil {
		d.t.Fatal(err)
	}
	return b[:n]
}

// repo is a signed repository for the board.
type repo struct {
	t    *testing.T
	dir  string
	keys publish.KeySet
	r    *publish.Repo
	imgs map[string][]byte
	rels map[string]release.Release
}

func newRepo(t *testing.T) *repo {
	t.Helper()
	keyDir := t.TempDir()
	ks := publish.KeySet{}
	for _, role := range release.Roles {
		s, err := release.GenerateKey(filepath.Join(keyDir, role+".key"))
		if err != nil {
			t.Fatal(err)
		}
		ks[role] = []release.Signer{s}
	}
	dir := t.TempDir()
	r, err := publish.Init(dir, ks, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &repo{t: t, dir: dir, keys: ks, r: r, imgs: map[string][]byte{}, rels: map[string]release.Release{}}
}

func (r *repo) root() []byte {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, release.MetadataDir, "1.root.json"))
	if err != nil {
		r.t.Fatal(err)
	}
	return b
}

// publish adds version: v1's bytes, or v1's with one region changed.
func (r *repo) publish(version string) {
	r.t.Helper()
	img := make([]byte, imageSize)
	rand.NewChaCha8([32]byte{1}).Read(img)
	if version != "1" {
		rand.NewChaCha8([32]byte{byte(len(r.imgs) + 2)}).Read(img[1<<20 : 1<<20+300<<10])
	}
	path := filepath.Join(r.t.TempDir(), "rootfs.img")
	if err := os.WriteFile(path, img, 0o600); err != nil {
		r.t.Fatal(err)
	}
	p := verity.DefaultParams()
	im, err := r.r.AddImage(context.Background(), "rootfs", path, publish.ImageOptions{
		Params: chunk.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}, Digest: chunk.SHA512256, Verity: &p,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	rel := release.Release{Board: "qemu-x86_64", Version: version, Created: time.Now().UTC(), Images: []release.Image{im}}
	if err := r.r.AddRelease(rel, r.keys); err != nil {
		r.t.Fatal(err)
	}
	r.imgs[version] = img
	r.rels[version] = rel
}

// slotContent is what a slot holding version must start with: the image,
// its padding and its verity tree, as signed.
func (r *repo) slotContent(version string) (release.Image, []byte) {
	r.t.Helper()
	im := r.rels[version].Images[0]
	idx, err := chunk.ReadIndexFile(filepath.Join(r.dir, filepath.FromSlash(im.Index.Path)))
	if err != nil {
		r.t.Fatal(err)
	}
	var out []byte
	for _, c := range idx.Chunks {
		b, err := os.ReadFile(filepath.Join(r.dir, release.StoreDir, c.ID.String()[:4], c.ID.String()+".cacnk"))
		if err != nil {
			r.t.Fatal(err)
		}
		raw, err := chunk.Decode(nil, idx.Digest, c.ID, b, 1<<20)
		if err != nil {
			r.t.Fatal(err)
		}
		out = append(out, raw...)
	}
	return im, out
}

// needBytes is what fetching version costs when the seed holds seedVersion:
// the stored size of each distinct chunk the seed lacks.
func (r *repo) needBytes(version, seedVersion string) int64 {
	r.t.Helper()
	read := func(v string) *chunk.Index {
		idx, err := chunk.ReadIndexFile(filepath.Join(r.dir, filepath.FromSlash(r.rels[v].Images[0].Index.Path)))
		if err != nil {
			r.t.Fatal(err)
		}
		return idx
	}
	have := map[chunk.ID]bool{}
	for _, c := range read(seedVersion).Chunks {
		have[c.ID] = true
	}
	var n int64
	for _, c := range read(version).Chunks {
		if have[c.ID] {
			continue
		}
		have[c.ID] = true
		fi, err := os.Stat(filepath.Join(r.dir, release.StoreDir, c.ID.String()[:4], c.ID.String()+".cacnk"))
		if err != nil {
			r.t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

func TestParseParams(t *testing.T) {
	p, err := parseParams(`console=ttyS0 lifeboat.mode=update lifeboat.repo=http://10.0.2.2:8080/r/ lifeboat.after=reboot "lifeboat.layout=ab" quiet`)
	if err != nil {
		t.Fatal(err)
	}
	want := params{mode: "update", source: "auto", repo: "http://10.0.2.2:8080/r/", layout: "ab", after: "reboot", onfail: "shell"}
	if p != want {
		t.Errorf("parseParams = %+v, want %+v", p, want)
	}
	p, err = parseParams("lifeboat.inplace_ram=8M lifeboat.inplace_commit=262144")
	if err != nil || p.inplaceRAM != 8<<20 || p.inplaceCommit != 256<<10 {
		t.Errorf("parseParams(in-place sizes) = %+v, %v; want inplaceRAM %d, inplaceCommit %d", p, err, 8<<20, 256<<10)
	}
	for _, bad := range []string{"lifeboat.mode=upgrade", "lifeboat.after=", "lifeboat.source=tftp", "lifeboat.onfail=ignore",
		"lifeboat.inplace_ram=", "lifeboat.inplace_ram=-1", "lifeboat.inplace_ram=8MB", "lifeboat.inplace_commit=0", "lifeboat.inplace_commit=lots"} {
		if _, err := parseParams(bad); err == nil || !strings.Contains(err.Error(), strings.SplitN(bad, "=", 2)[0]) {
			t.Errorf("parseParams(%q) = %v, want an error naming the parameter", bad, err)
		}
	}
}

// TestUpdateAB installs v1 into B from a bundle, marks it good, then v2
// into A over the network, seeded by B: what the ramdisk does on an A/B
// device, checked byte for byte.
func TestUpdateAB(t *testing.T) {
	r := newRepo(t)
	r.publish("1")
	d := newDevice(t, r.root(), bootenv.Vars{slot.OrderVar: "A B recovery", slot.LeftVar("A"): "3", slot.LeftVar("B"): "0"})

	// v1 from a bundle (the repository directory has the bundle's shape).
	out, res := d.run(&fakeSources{bundle: r.dir}, "lifeboat.mode=update")
	if !res.OK || res.Version != "1" || res.Slot != "B" || res.Seed != "A" || res.Source != "usb" {
		t.Fatalf("result %+v\n%s", res, out)
	}
	im, want := r.slotContent("1")
	if !bytes.Equal(d.slotBytes("rootfs-b", im.Size), want) {
		t.Fatal("slot B does not hold v1")
	}
	env := d.env()
	wantVerity := fmt.Sprintf("%d:%s", im.Verity.HashOffset, im.Verity.RootHash)
	if env["LIFEBOAT_B_VERITY"] != wantVerity || env[slot.OrderVar] != "B A recovery" || env[slot.LeftVar("B")] != "2" {
		t.Errorf("grubenv after v1 = %v; want B first with 2 tries left (one taken by kexec) and LIFEBOAT_B_VERITY=%s", env, wantVerity)
	}
	// Modules first; the kernel loaded while its slot is mounted; every
	// file system unmounted before the jump.
	if got := strings.Join(d.sys.calls, ","); !strings.HasPrefix(got, "load /lib/modules/x/virtio_blk.ko,load /lib/modules/x/ext4.ko,") ||
		!strings.HasSuffix(got, ",kexec-load,unmount,unmount,unmount,kexec") {
		t.Errorf("calls = %s", got)
	}
	if want := filepath.Join(d.sys.mounts[d.sys.parts["rootfs-b"]], "boot", "vmlinuz"); d.sys.kexec[0] != want {
		t.Errorf("kexec kernel %s, want %s", d.sys.kexec[0], want)
	}
	if c := d.sys.kexec[2]; !strings.Contains(c, "lifeboat.slot=B") || !strings.Contains(c, "lifeboat.verity="+wantVerity) || !strings.Contains(c, "console=ttyS0,115200") {
		t.Errorf("kexec command line %q", c)
	}
	for _, ph := range []string{"modules", "mount", "source", "install", "switch", "kexec-load"} {
		if !strings.Contains(out, PhaseMarker+" name="+ph+" ") {
			t.Errorf("console lacks phase %s:\n%s", ph, out)
		}
	}

	data := d.sys.mounts[d.sys.parts["data"]]
	if _, err := os.Stat(filepath.Join(data, install.SlotIndexName("B", "rootfs"))); err != nil {
		t.Errorf("B's index was not kept for the next update: %v", err)
	}

	// B boots and marks itself good.
	vars, err := slot.NewVars(d.envFile(), slot.WithSlots("A", "B"), slot.WithCmdline(os.DevNull))
	if err != nil {
		t.Fatal(err)
	}
	if err := vars.MarkGood(context.Background(), "B"); err != nil {
		t.Fatal(err)
	}

	// v2 over the network, seeded by B: only the chunks v1 lacks cross.
	r.publish("2")
	srv := httptest.NewServer(http.FileServer(http.Dir(r.dir)))
	defer srv.Close()
	out, res = d.run(&fakeSources{offered: srv.URL + "/"}, "lifeboat.after=reboot")
	if !res.OK || res.Version != "2" || res.Slot != "A" || res.Seed != "B" || res.Source != srv.URL+"/" {
		t.Fatalf("result %+v\n%s", res, out)
	}
	im, want = r.slotContent("2")
	if !bytes.Equal(d.slotBytes("rootfs-a", im.Size), want) {
		t.Fatal("slot A does not hold v2")
	}
	if need := r.needBytes("2", "1"); res.FetchedBytes != need {
		t.Errorf("fetched %d bytes, want %d: the chunks v2 has beyond v1", res.FetchedBytes, need)
	}
	if res.FetchedBytes >= im.Size/4 {
		t.Errorf("fetched %d bytes of a %d-byte image: the seed was not used", res.FetchedBytes, im.Size)
	}
	if got := d.sys.calls[len(d.sys.calls)-1]; got != "reboot" {
		t.Errorf("last call %s, want reboot (lifeboat.after=reboot)", got)
	}
	for s, v := range map[string]string{"A": "2", "B": "1"} {
		idx, err := chunk.ReadIndexFile(filepath.Join(data, install.SlotIndexName(s, "rootfs")))
		if err != nil {
			t.Fatal(err)
		}
		if want := uint64(r.rels[v].Images[0].Size); idx.Size() != want {
			t.Errorf("slot %s: kept index covers %d bytes, want release %s's %d", s, idx.Size(), v, want)
		}
	}
	env = d.env()
	if env[slot.OrderVar] != "A B recovery" || env[slot.LeftVar("A")] != "3" || env["LIFEBOAT_A_VERITY"] != fmt.Sprintf("%d:%s", im.Verity.HashOffset, im.Verity.RootHash) {
		t.Errorf("grubenv after v2 = %v", env)
	}

	// The same release again: nothing written, nothing switched.
	before := d.env()
	_, res = d.run(&fakeSources{offered: srv.URL + "/"}, "lifeboat.after=poweroff")
	if !res.OK || !res.UpToDate || res.FetchedBytes != 0 {
		t.Errorf("up-to-date result %+v", res)
	}
	if got := d.env(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("grubenv changed on an up-to-date run: %v -> %v", before, got)
	}
}

// TestRefused: a tampered chunk, tampered metadata and an older release
// re-offered are each refused with the check named, nothing written into
// the target slot, and the bootloader environment left as it was.
func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, r *repo) string // returns the bundle dir
		check  string
		// untouched says the target slot is not written at all: the
		// metadata is checked before the first write. A bad chunk is
		// found while streaming, after the verified chunks before it
		// were written into the inactive slot.
		untouched bool
	}{
		{"chunk", func(t *testing.T, r *repo) string {
			r.publish("1")
			im := r.rels["1"].Images[0]
			idx, err := chunk.ReadIndexFile(filepath.Join(r.dir, filepath.FromSlash(im.Index.Path)))
			if err != nil {
				t.Fatal(err)
			}
			c := idx.Chunks[len(idx.Chunks)/2].ID.String()
			p := filepath.Join(r.dir, release.StoreDir, c[:4], c+".cacnk")
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return r.dir
		}, release.ErrArbitrarySoftware.Error(), false},
		{"metadata", func(t *testing.T, r *repo) string {
			r.publish("1")
			p := filepath.Join(r.dir, release.MetadataDir, "timestamp.json")
			b, _ := os.ReadFile(p)
			b = bytes.Replace(b, []byte(`"version":`), []byte(`"version": `), 1)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return r.dir
		}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRepo(t)
			dir := tc.tamper(t, r)
			d := newDevice(t, r.root(), bootenv.Vars{slot.OrderVar: "A B recovery", slot.LeftVar("A"): "3"})
			envBefore, _ := os.ReadFile(filepath.Join(d.esp, "EFI", "BOOT", "grubenv"))
			slotBefore := d.slotBytes("rootfs-b", slotSize)
			out, res := d.run(&fakeSources{bundle: dir}, "lifeboat.onfail=poweroff")
			if res.OK || res.Check == "" || (tc.check != "" && res.Check != tc.check) {
				t.Fatalf("result %+v, want a failure with check %q\n%s", res, tc.check, out)
			}
			if !strings.Contains(out, "FAILED ("+res.Check+")") {
				t.Errorf("console does not name the check:\n%s", out)
			}
			if envAfter, _ := os.ReadFile(filepath.Join(d.esp, "EFI", "BOOT", "grubenv")); !bytes.Equal(envBefore, envAfter) {
				t.Error("grubenv changed")
			}
			if tc.untouched && !bytes.Equal(slotBefore, d.slotBytes("rootfs-b", slotSize)) {
				t.Error("the target slot was written")
			}
			if got := d.sys.calls[len(d.sys.calls)-1]; got != "poweroff" {
				t.Errorf("last call %s, want poweroff (lifeboat.onfail=poweroff)", got)
			}
		})
	}

	// An older release re-offered: a mirror frozen at v1 after v2.
	r := newRepo(t)
	r.publish("1")
	old := t.TempDir()
	copyDir(t, r.dir, old)
	r.publish("2")
	d := newDevice(t, r.root(), bootenv.Vars{slot.OrderVar: "A B recovery", slot.LeftVar("A"): "3"})
	if _, res := d.run(&fakeSources{bundle: r.dir}, "lifeboat.after=poweroff"); !res.OK || res.Version != "2" {
		t.Fatalf("v2: %+v", res)
	}
	envBefore := d.env()
	slotBefore := d.slotBytes("rootfs-a", slotSize)
	out, res := d.run(&fakeSources{bundle: old}, "lifeboat.onfail=poweroff")
	if res.OK || res.Check != release.ErrRollback.Error() {
		t.Fatalf("old mirror: result %+v, want check %q\n%s", res, release.ErrRollback, out)
	}
	if got := d.env(); fmt.Sprint(got) != fmt.Sprint(envBefore) {
		t.Errorf("grubenv changed: %v -> %v", envBefore, got)
	}
	if !bytes.Equal(slotBefore, d.slotBytes("rootfs-a", slotSize)) {
		t.Error("the target slot was written")
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if e.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNoSource(t *testing.T) {
	r := newRepo(t)
	r.publish("1")
	d := newDevice(t, r.root(), bootenv.Vars{slot.OrderVar: "A B", slot.LeftVar("A"): "3"})
	out, res := d.run(&fakeSources{netErr: errors.New("no DHCP offer on eth0 within 10s")}, "")
	if res.OK || res.Check != "network" || !strings.Contains(res.Error, "no DHCP offer") {
		t.Errorf("result %+v\n%s", res, out)
	}
	if got := d.sys.calls[len(d.sys.calls)-1]; got != "shell" {
		t.Errorf("last call %s, want the rescue shell", got)
	}
	// The network is up but nobody named a repository.
	_, res = d.run(&fakeSources{}, "lifeboat.onfail=reboot")
	if res.OK || !strings.Contains(res.Error, "lifeboat.repo=") {
		t.Errorf("result %+v, want an error saying how to name a repository", res)
	}
}

// The LUKS2 volume the encrypted-data tests unlock: one of pkg/dmcrypt's
// golden images, made by cryptsetup, with its passphrase and volume key.
const (
	luksImage = "../pkg/dmcrypt/testdata/pbkdf2-xts256-512.img.gz"
	luksPass  = "key file contents\x00\xff"
	luksKey   = "94b1e358c28b7d64b35111da2779101b39394ac1765c3a4d58373126be4f0a52"
)

// newCryptDevice is newDevice with the ab-crypt layout: the data partition
// is a LUKS2 volume, whose passphrase seal seals (nil: no sealed key on
// the ESP), and sys is the machine's TPM (nil: none). The data
// partition's file system is mountable only through the mapping.
func newCryptDevice(t *testing.T, rootJSON []byte, env bootenv.Vars, sys tpm.Sealer, seal func(pass []byte) []byte) *device {
	t.Helper()
	d := newDevice(t, rootJSON, env)
	f, err := os.Open(luksImage)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	img, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	part := d.sys.parts["data"]
	if err := os.WriteFile(part, img, 0o600); err != nil {
		t.Fatal(err)
	}
	d.sys.mounts[filepath.Join(d.sys.dm.Dir, DataMapper)] = d.sys.mounts[part]
	delete(d.sys.mounts, part)
	d.sys.tpm = sys
	if seal != nil {
		key := filepath.Join(d.esp, filepath.FromSlash(board.SealedKeyPath("data")))
		if err := os.MkdirAll(filepath.Dir(key), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(key, seal([]byte(luksPass)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func sealWith(t *testing.T, s tpm.Sealer, secret []byte) []byte {
	t.Helper()
	blob, err := s.Seal(context.Background(), secret, tpm.Policy{NoPCRs: true})
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

// TestEncryptedData: the ramdisk unseals the data partition's passphrase
// with the TPM, opens the LUKS2 volume with dm-crypt and keeps the trusted
// state in it.
func TestEncryptedData(t *testing.T) {
	r := newRepo(t)
	r.publish("1")
	chip := tpm.NewFake()
	d := newCryptDevice(t, r.root(), bootenv.Vars{slot.OrderVar: "A B recovery", slot.LeftVar("A"): "3"}, chip,
		func(pass []byte) []byte { return sealWith(t, chip, pass) })
	out, res := d.run(&fakeSources{bundle: r.dir}, "lifeboat.layout=ab-crypt lifeboat.after=reboot")
	if !res.OK || res.Version != "1" || res.Slot != "B" {
		t.Fatalf("result %+v\n%s", res, out)
	}
	if !strings.Contains(out, "lifeboat: unlocked the encrypted data partition data with the key sealed to the TPM") {
		t.Errorf("the console does not show the unlock:\n%s", out)
	}
	table, err := d.sys.dm.Table(context.Background(), DataMapper)
	if err != nil {
		t.Fatal(err)
	}
	// The mapping covers the golden image's 64 KiB of data, after its
	// 32 KiB of headers and 256 KiB of keyslots, with cryptsetup's key.
	want := fmt.Sprintf("aes-xts-plain64 %s 0 %s 576", luksKey, d.sys.parts["data"])
	if len(table) != 1 || table[0].Type != "crypt" || table[0].Params != want || table[0].Length != 128 {
		t.Errorf("table of %s = %+v, want one crypt target of 128 sectors: %s", DataMapper, table, want)
	}
	data := d.sys.mounts[filepath.Join(d.sys.dm.Dir, DataMapper)]
	if _, err := os.Stat(filepath.Join(data, "lifeboat", "state", "root.json")); err != nil {
		t.Errorf("the trusted state is not on the unlocked partition: %v", err)
	}
}

// TestEncryptedDataRefused: without the sealed key, the TPM it was sealed
// to, or the right passphrase in it, the flow names what failed, switches
// nothing and starts the rescue shell.
func TestEncryptedDataRefused(t *testing.T) {
	r := newRepo(t)
	r.publish("1")
	chip, other := tpm.NewFake(), tpm.NewFake()
	for _, tc := range []struct {
		name string
		chip tpm.Sealer
		seal func(pass []byte) []byte
		want string
	}{
		{"missing blob", chip, nil, "sealed key not found at esp:lifeboat/data.key.tpm"},
		{"no TPM", nil, func(pass []byte) []byte { return sealWith(t, chip, pass) }, "no TPM to unseal the key of data: /dev/tpmrm0 did not appear"},
		{"other TPM", chip, func(pass []byte) []byte { return sealWith(t, other, pass) }, "unseal: "},
		{"wrong key", chip, func(pass []byte) []byte { return sealWith(t, chip, []byte("another passphrase")) }, "LUKS2: wrong key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newCryptDevice(t, r.root(), bootenv.Vars{slot.OrderVar: "A B recovery", slot.LeftVar("A"): "3"}, tc.chip, tc.seal)
			envBefore, _ := os.ReadFile(filepath.Join(d.esp, "EFI", "BOOT", "grubenv"))
			slotBefore := d.slotBytes("rootfs-b", slotSize)
			out, res := d.run(&fakeSources{bundle: r.dir}, "lifeboat.layout=ab-crypt")
			if res.OK || res.Check != "unlock" || !strings.Contains(res.Error, tc.want) {
				t.Fatalf("result %+v, want check unlock and an error containing %q\n%s", res, tc.want, out)
			}
			if !strings.Contains(out, "FAILED (unlock): "+res.Error) || !strings.Contains(out, "nothing was switched") {
				t.Errorf("the console does not name the check:\n%s", out)
			}
			if envAfter, _ := os.ReadFile(filepath.Join(d.esp, "EFI", "BOOT", "grubenv")); !bytes.Equal(envBefore, envAfter) {
				t.Error("grubenv changed")
			}
			if !bytes.Equal(slotBefore, d.slotBytes("rootfs-b", slotSize)) {
				t.Error("the target slot was written")
			}
			if l, err := d.sys.dm.List(context.Background()); err != nil || len(l) != 0 {
				t.Errorf("device-mapper devices after a refusal: %v, %v", l, err)
			}
			if got := d.sys.calls[len(d.sys.calls)-1]; got != "shell" {
				t.Errorf("last call %s, want the rescue shell", got)
			}
		})
	}
}
