//go:build linux

package dmcrypt

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/testtool"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-update/lifeboat/pkg/dm"
	"github.com/lifeboat-update/lifeboat/qemu/vmtest"
)

// vmFile is the file each VM test volume's ext4 holds.
const (
	vmFileName    = "hello.txt"
	vmFileContent = "Lifeboat dm-crypt: read back through the kernel.\n"
	vmFSSize      = 4 << 20
)

// vmVolume is a LUKS2 volume a VM test attaches.
type vmVolume struct {
	name   string
	format []string // luksFormat options
	pass   string
	table  string // in the loaded table's parameters
}

var vmVolumes = []vmVolume{
	{
		// cryptsetup's default cipher, 4 KiB sectors: the IV sector
		// counts 512-byte units, which only the kernel can confirm.
		name: "xts-4k",
		format: append([]string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
			"--cipher", "aes-xts-plain64", "--key-size", "512", "--sector-size", "4096"}, smallLayout(256)...),
		pass:  "xts volume passphrase",
		table: "aes-xts-plain64",
	},
	{
		name: "essiv-512-argon2id",
		format: append([]string{"--pbkdf", "argon2id", "--pbkdf-memory", "8192", "--pbkdf-parallel", "1",
			"--pbkdf-force-iterations", "4", "--cipher", "aes-cbc-essiv:sha256", "--key-size", "256",
			"--sector-size", "512"}, smallLayout(128)...),
		pass:  "essiv volume passphrase",
		table: "aes-cbc-essiv:sha256",
	},
}

// vmRaw is the raw dm-crypt disk: no LUKS, a known key, deterministic
// data encrypted on the host in user space.
var (
	vmRawKey = testBytes(42, 64)
	vmRawSeg = Segment{Encryption: CipherAESXTSPlain64, Offset: 64 << 10, Dynamic: true, IVTweak: 24, SectorSize: 4096}
)

const vmRawSize = 1 << 20

// makeVMVolume formats vol on the host with the real cryptsetup, builds an
// ext4 holding vmFile with mkfs.ext4 -d, and writes it into the volume's
// data segment, encrypted in user space with the unlocked volume key.
func makeVMVolume(t *testing.T, dir string, vol vmVolume) string {
	t.Helper()
	tree := filepath.Join(dir, vol.name+".tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, vmFileName), []byte(vmFileContent), 0o644); err != nil {
		t.Fatal(err)
	}
	fsImg := filepath.Join(dir, vol.name+".ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", "-d", tree, fsImg, "4M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	fs, err := os.ReadFile(fsImg)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != vmFSSize {
		t.Fatalf("mkfs.ext4 made %d bytes, want %d", len(fs), vmFSSize)
	}

	keyslotsKiB := 256
	if strings.Contains(strings.Join(vol.format, " "), "128k") {
		keyslotsKiB = 128
	}
	tc := goldenCase{name: vol.name, format: vol.format, pass: vol.pass, keyFile: true,
		size: int64(32+keyslotsKiB)<<10 + vmFSSize}
	img, _ := makeVolume(t, dir, tc)

	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := ReadHeader(f, tc.size)
	if err != nil {
		t.Fatal(err)
	}
	_, seg, err := h.CryptSegment()
	if err != nil {
		t.Fatal(err)
	}
	key, err := h.Unlock(context.Background(), f, []byte(vol.pass))
	if err != nil {
		t.Fatal(err)
	}
	defer key.Zero()
	c, err := NewCipher(seg.Encryption, key, seg.SectorSize)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(tc.size)-seg.Offset != vmFSSize {
		t.Fatalf("data segment of %d bytes, want %d", uint64(tc.size)-seg.Offset, vmFSSize)
	}
	if err := c.Encrypt(fs, fs, seg.IVTweak); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(fs, int64(seg.Offset)); err != nil {
		t.Fatal(err)
	}
	return img
}

// makeVMRaw writes the raw dm-crypt disk: testBytes(7) from vmRawSeg's
// offset, encrypted with vmRawKey.
func makeVMRaw(t *testing.T, dir string) string {
	t.Helper()
	b := make([]byte, vmRawSize)
	data := b[vmRawSeg.Offset:]
	copy(data, testBytes(7, len(data)))
	c, err := NewCipher(vmRawSeg.Encryption, vmRawKey, vmRawSeg.SectorSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Encrypt(data, data, vmRawSeg.IVTweak); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "raw.img")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func requireMkfsExt4(t *testing.T) { testtool.Require(t, "mkfs.ext4") }

// TestOpenLUKS2VM opens LUKS2 volumes made by cryptsetup with the kernel's
// dm-crypt, mounts the ext4 in each and reads its file back; checks that a
// wrong passphrase leaves no mapping; and maps a raw dm-crypt disk.
func TestOpenLUKS2VM(t *testing.T) {
	var disks []string
	if !vmtest.InGuest() {
		requireCryptsetup(t)
		requireMkfsExt4(t)
		dir := t.TempDir()
		for _, vol := range vmVolumes {
			disks = append(disks, makeVMVolume(t, dir, vol))
		}
		disks = append(disks, makeVMRaw(t, dir))
	}
	if !vmtest.Run(t, vmtest.Options{
		Disks:   disks,
		Modules: []string{"dm-crypt", "xts", "ecb", "essiv", "cbc", "ext4"},
		Timeout: 5 * time.Minute,
	}) {
		return
	}

	ctx := context.Background()
	ctl, err := dm.Open(dm.DefaultControl, dm.WithRemoveRetries(5, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()

	for i, vol := range vmVolumes {
		t.Run(vol.name, func(t *testing.T) {
			dev := vmtest.Disk(i)
			start := time.Now()
			path, err := Open(ctx, ctl, vol.name, dev, []byte(vol.pass), WithReadOnly())
			if err != nil {
				t.Fatalf("Open(%s) = %v", dev, err)
			}
			t.Logf("Open(%s) = %s in %v", dev, path, time.Since(start).Round(time.Millisecond))
			defer func() {
				if err := Close(ctx, ctl, vol.name); err != nil {
					t.Errorf("Close(%s) = %v", vol.name, err)
				}
			}()
			table, err := ctl.Table(ctx, vol.name)
			if err != nil {
				t.Fatal(err)
			}
			if len(table) != 1 || table[0].Type != "crypt" || !strings.HasPrefix(table[0].Params, vol.table+" ") ||
				table[0].Length != vmFSSize/512 {
				t.Errorf("live table = %v, want one crypt target of %d sectors with %s", redact(table), vmFSSize/512, vol.table)
			}
			mnt := t.TempDir()
			if err := unix.Mount(path, mnt, "ext4", unix.MS_RDONLY, ""); err != nil {
				t.Fatalf("mount -t ext4 -o ro %s %s: %v", path, mnt, err)
			}
			defer func() {
				if err := unix.Unmount(mnt, 0); err != nil {
					t.Errorf("umount %s: %v", mnt, err)
				}
			}()
			got, err := os.ReadFile(filepath.Join(mnt, vmFileName))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != vmFileContent {
				t.Errorf("%s on the opened volume = %q, want %q", vmFileName, got, vmFileContent)
			}
		})
	}

	t.Run("wrong passphrase", func(t *testing.T) {
		_, err := Open(ctx, ctl, "wrong", vmtest.Disk(0), []byte("not the passphrase"))
		if !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("Open(wrong passphrase) = %v, want ErrWrongPassphrase", err)
		}
		if _, err := ctl.Info(ctx, "wrong"); !errors.Is(err, dm.ErrNoDevice) {
			t.Errorf("Info(wrong) after a refused Open = %v, want dm.ErrNoDevice", err)
		}
		if _, err := os.Stat("/dev/mapper/wrong"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat /dev/mapper/wrong after a refused Open = %v, want it missing", err)
		}
	})

	t.Run("raw", func(t *testing.T) {
		dev := vmtest.Disk(len(vmVolumes))
		path, err := OpenRaw(ctx, ctl, "raw", dev, vmRawSeg, vmRawKey)
		if err != nil {
			t.Fatalf("OpenRaw(%s) = %v", dev, err)
		}
		defer func() {
			if err := Close(ctx, ctl, "raw"); err != nil {
				t.Errorf("Close(raw) = %v", err)
			}
		}()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want := testBytes(7, vmRawSize-int(vmRawSeg.Offset))
		if !bytes.Equal(got, want) {
			t.Errorf("%s reads %d bytes unlike the data the host encrypted (%d bytes)", path, len(got), len(want))
		}
	})

	if l, err := ctl.List(ctx); err != nil || len(l) != 0 {
		t.Errorf("List() after closing everything = %v, %v, want no devices", l, err)
	}
}

// redact hides the keys in crypt tables.
func redact(ts []dm.Target) []dm.Target {
	out := make([]dm.Target, len(ts))
	for i, tg := range ts {
		f := strings.Fields(tg.Params)
		if len(f) > 1 {
			f[1] = "<key>"
		}
		tg.Params = strings.Join(f, " ")
		out[i] = tg
	}
	return out
}
