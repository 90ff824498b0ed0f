package media

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/qemu/vmtest"
)

// vmModules are what a FAT stick needs beyond vmtest's USB drivers: vfat
// and the code page and I/O charset Debian's kernel mounts FAT with by
// default (cp437, ascii). There is no modprobe in the guest to load them.
var vmModules = []string{"vfat", "nls_cp437", "nls_ascii"}

// TestFindVM attaches USB sticks to a guest on Debian's generic kernel:
// media finds the one with a bundle and mounts it read-only, and a stick
// without one gives the clear error.
func TestFindVM(t *testing.T) {
	t.Run("bundle", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		plain, bundled := filepath.Join(dir, "plain.img"), filepath.Join(dir, "bundle.img")
		var sums [][sha256.Size]byte
		if !vmtest.InGuest() {
			testtool.Require(t, "mkfs.fat", "mcopy", "sfdisk")
			plainStick(t, plain)
			bundleStick(t, bundled, makeBundle(t))
			sums = [][sha256.Size]byte{fileSum(t, plain), fileSum(t, bundled)}
		}
		// The stick without a bundle first: it is usually sda and tried
		// first, though USB does not promise the order.
		opt := vmtest.Options{USB: []string{plain, bundled}, Kernel: vmtest.GenericKernel(), Modules: vmModules}
		if !vmtest.Run(t, opt) {
			// Read-only: the guest changed neither stick.
			for i, p := range []string{plain, bundled} {
				if !t.Failed() && fileSum(t, p) != sums[i] {
					t.Errorf("%s changed in the guest", p)
				}
			}
			return
		}
		start := time.Now()
		med, err := Find(t.Context(), Config{Dir: t.TempDir(), Timeout: 30 * time.Second, Log: testLogger(t)})
		if err != nil {
			t.Fatalf("Find = %v", err)
		}
		t.Logf("Find = %+v after %v", med, time.Since(start).Round(time.Millisecond))
		if med.Bus != "usb" || med.FSType != "vfat" || !strings.HasSuffix(med.Name, "1") || med.Name != med.Disk+"1" {
			t.Errorf("Find = %s (%s) on %s, want the first partition of a USB stick, vfat", med.Name, med.FSType, med.Disk)
		}
		if med.Bundle != filepath.Join(med.MountPoint, "lifeboat") {
			t.Errorf("Find.Bundle = %s, want %s/lifeboat", med.Bundle, med.MountPoint)
		}
		b, err := med.Fetcher().Fetch(t.Context(), BundleMarker, 1<<20)
		if err != nil || !json.Valid(b) {
			t.Errorf("Fetch(%s) = %.40q, %v; want the bundle's JSON", BundleMarker, b, err)
		}
		err = os.WriteFile(filepath.Join(med.Bundle, "x"), []byte("x"), 0o644)
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("writing to the medium: %v, want EROFS", err)
		}
		if got := fatMounts(t); len(got) != 1 || !strings.Contains(got[0], " "+med.MountPoint+" vfat ro,") {
			t.Errorf("/proc/mounts has FAT mounts %q, want only %s, read-only", got, med.MountPoint)
		}
		if err := med.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
		if got := fatMounts(t); len(got) != 0 {
			t.Errorf("after Close, /proc/mounts has %q", got)
		}
	})

	t.Run("no bundle", func(t *testing.T) {
		t.Parallel()
		plain := filepath.Join(t.TempDir(), "plain.img")
		if !vmtest.InGuest() {
			testtool.Require(t, "mkfs.fat", "mcopy")
			plainStick(t, plain)
		}
		if !vmtest.Run(t, vmtest.Options{USB: []string{plain}, Kernel: vmtest.GenericKernel(), Modules: vmModules}) {
			return
		}
		med, err := Find(t.Context(), Config{Dir: t.TempDir(), Timeout: 30 * time.Second, Log: testLogger(t)})
		if err == nil {
			med.Close()
			t.Fatalf("Find = %+v, want ErrNoBundle", med)
		}
		want := "no bundle on the removable media: found sda (vfat) but no bundle in it: looked for metadata/timestamp.json and lifeboat/metadata/timestamp.json"
		if !errors.Is(err, ErrNoBundle) || err.Error() != want {
			t.Errorf("Find = %q, want %q", err, want)
		}
		if got := fatMounts(t); len(got) != 0 {
			t.Errorf("after Find, /proc/mounts has %q", got)
		}
	})
}

// fatMounts returns the vfat lines of /proc/mounts.
func fatMounts(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "vfat" {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// makeBundle publishes a small release into a new repository with
// pkg/publish and returns its USB bundle's directory.
func makeBundle(t *testing.T) string {
	t.Helper()
	ctx := t.Context()
	keyDir, repoDir := t.TempDir(), t.TempDir()
	ks := publish.KeySet{}
	for _, role := range release.Roles {
		s, err := release.GenerateKey(filepath.Join(keyDir, role+".key"))
		if err != nil {
			t.Fatal(err)
		}
		ks[role] = []release.Signer{s}
	}
	repo, err := publish.Init(repoDir, ks, nil)
	if err != nil {
		t.Fatalf("publish.Init = %v", err)
	}
	img := filepath.Join(t.TempDir(), "rootfs.img")
	data := make([]byte, 256<<10)
	rand.Read(data)
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	im, err := repo.AddImage(ctx, "rootfs", img, publish.ImageOptions{Params: chunk.DefaultParams, Digest: chunk.SHA512256})
	if err != nil {
		t.Fatalf("AddImage = %v", err)
	}
	rel := release.Release{Board: "qemu-x86_64", Version: "1", Created: time.Now().UTC().Truncate(time.Second), Images: []release.Image{im}}
	if err := repo.AddRelease(rel, ks); err != nil {
		t.Fatalf("AddRelease = %v", err)
	}
	out := filepath.Join(t.TempDir(), "bundle")
	if _, err := publish.Bundle(ctx, repoDir, rel.Board, rel.Version, "", out); err != nil {
		t.Fatalf("publish.Bundle = %v", err)
	}
	return out
}

const mib = 1 << 20

// plainStick writes a stick as they come from the shop, but without a
// partition table: one FAT file system over the whole disk, with a file
// that is no bundle.
func plainStick(t *testing.T, path string) {
	t.Helper()
	run(t, nil, "mkfs.fat", "-n", "PHOTOS", "-C", path, fmt.Sprint(8*mib/1024))
	readme := filepath.Join(t.TempDir(), "README.TXT")
	if err := os.WriteFile(readme, []byte("holiday photos\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, nil, "mcopy", "-i", path, readme, "::README.TXT")
}

// bundleStick writes a stick with an MBR and one FAT partition at 1 MiB
// holding the bundle in lifeboat/.
func bundleStick(t *testing.T, path, bundle string) {
	t.Helper()
	const size = 16 * mib
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	run(t, strings.NewReader("label: dos\nstart=2048, type=c\n"), "sfdisk", "--quiet", path)
	fat := filepath.Join(t.TempDir(), "part.fat")
	run(t, nil, "mkfs.fat", "-n", "LIFEBOAT", "-C", fat, fmt.Sprint((size-mib)/1024))
	run(t, nil, "mcopy", "-s", "-i", fat, bundle, "::lifeboat")
	b, err := os.ReadFile(fat)
	if err != nil {
		t.Fatal(err)
	}
	f, err = os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, mib); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// run runs a command that must succeed.
func run(t *testing.T, stdin *strings.Reader, name string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	// mtools refuses some images mkfs.fat makes without this.
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.Bytes())
	}
}

func fileSum(t *testing.T, path string) [sha256.Size]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
