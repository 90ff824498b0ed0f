package demo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeboat-update/lifeboat/demo"
	"github.com/lifeboat-update/lifeboat/demo/demoinit"
	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/grub"
	"github.com/lifeboat-update/lifeboat/pkg/verity"
	"github.com/lifeboat-update/lifeboat/qemu"
)

// demoDisk is the board's ab layout on a disk image made without root:
// GPT by pkg/blockdev, the slot written at its offset, the ESP made with
// mkfs.fat on a partition-sized file, copied into place and filled with
// mtools at its offset.
type demoDisk struct {
	path   string
	espOff int64
}

// newDemoDisk writes a disk holding slot (an image with its verity tree)
// in rootfs-a and a grubenv with vars on the ESP; flip, if not negative,
// is the offset in the slot of a byte to flip.
func newDemoDisk(t *testing.T, b *board.Board, slot string, flip int64, vars bootenv.Vars) *demoDisk {
	t.Helper()
	dir := t.TempDir()
	l, err := b.Layout("ab")
	if err != nil {
		t.Fatal(err)
	}
	g, err := l.GPT()
	if err != nil {
		t.Fatal(err)
	}
	size, err := board.ParseSize(l.DiskSize)
	if err != nil {
		t.Fatal(err)
	}
	d := &demoDisk{path: filepath.Join(dir, "disk.img")}
	if err := os.WriteFile(d.path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(d.path, size); err != nil {
		t.Fatal(err)
	}
	dev, err := blockdev.Open(d.path, os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	table, err := g.Create(dev)
	if err != nil {
		t.Fatal(err)
	}
	extent := func(label string) (int64, int64) {
		p, err := table.Find(blockdev.Match{Label: label})
		if err != nil {
			t.Fatal(err)
		}
		return table.Extent(p)
	}

	content, err := os.ReadFile(slot)
	if err != nil {
		t.Fatal(err)
	}
	if flip >= 0 {
		content[flip] ^= 0x01
	}
	off, psize := extent("rootfs-a")
	if int64(len(content)) > psize {
		t.Fatalf("slot image of %d bytes, partition of %d", len(content), psize)
	}
	if _, err := dev.WriteAt(content, off); err != nil {
		t.Fatal(err)
	}

	var espSize int64
	d.espOff, espSize = extent(b.Bootloader.EnvPartition)
	fat := filepath.Join(dir, "esp.fat")
	tool(t, "mkfs.fat", "-F", "16", "-n", "ESP", "-C", fat, strconv.FormatInt(espSize/1024, 10))
	fb, err := os.ReadFile(fat)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.WriteAt(fb, d.espOff); err != nil {
		t.Fatal(err)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	tool(t, "mmd", "-i", d.image(), "::EFI", "::EFI/BOOT")
	env := filepath.Join(dir, "grubenv")
	tool(t, "grub-editenv", env, "create")
	args := []string{env, "set"}
	for k, v := range vars {
		args = append(args, k+"="+v)
	}
	tool(t, "grub-editenv", args...)
	tool(t, "mcopy", "-i", d.image(), env, "::"+b.Bootloader.EnvFile)
	return d
}

// image is mtools' name of the ESP.
func (d *demoDisk) image() string { return fmt.Sprintf("%s@@%d", d.path, d.espOff) }

// grubenv copies the grubenv out of the ESP and returns its path.
func (d *demoDisk) grubenv(t *testing.T, b *board.Board) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "grubenv")
	tool(t, "mcopy", "-i", d.image(), "::"+b.Bootloader.EnvFile, out)
	return out
}

// console keeps the serial console's lines and relays them to t.Log.
type console struct {
	qemu.Lines
	t     *testing.T
	start time.Time
	mu    sync.Mutex
	lines []string
}

func newConsole(t *testing.T) *console {
	c := &console{t: t, start: time.Now()}
	c.Line = func(l string) {
		l = strings.TrimRight(l, "\r")
		c.mu.Lock()
		c.lines = append(c.lines, l)
		c.mu.Unlock()
		t.Logf("serial %5.1fs: %s", time.Since(c.start).Seconds(), l)
	}
	return c
}

// marked returns the lines of the demo's protocol, from its marker on.
func (c *console) marked() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, l := range c.lines {
		if i := strings.Index(l, demoinit.Marker); i >= 0 {
			out = append(out, l[i:])
		}
	}
	return out
}

// bootDemo boots the board's machine on the kernel and initramfs straight
// into the demo system, and waits until it powers itself off.
func bootDemo(t *testing.T, b *board.Board, vmlinuz, initrd, disk, cmdline string) *console {
	t.Helper()
	timeout := 4 * time.Minute
	if dl, ok := t.Deadline(); ok {
		timeout = min(timeout, time.Until(dl)-10*time.Second)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	con := newConsole(t)
	vm, err := qemu.Start(ctx, qemu.Config{
		QEMU: b.QEMU.Binary, Machine: b.QEMU.Machine, CPU: b.QEMU.CPU, Memory: b.QEMU.Memory,
		Kernel: vmlinuz, Initrd: initrd, Append: cmdline,
		Disks:   []qemu.Disk{{Path: disk}},
		Console: con,
	})
	if errors.Is(err, qemu.ErrNoQEMU) {
		unavailable(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill() // after Wait, a no-op
	err = vm.Wait()
	con.Flush()
	t.Logf("machine off after %v", time.Since(con.start).Round(100*time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("the machine did not power off within %v", timeout)
	}
	if err != nil {
		t.Fatal(err)
	}
	return con
}

// TestDemoVM boots a demo image's kernel and initramfs on the board's
// machine with its ab disk, slot A holding the image and its verity tree,
// as GRUB would boot it: the system reads itself through dm-verity and
// marks slot A good in the grubenv on the ESP. With one byte of a payload
// file flipped on the disk, it says verity failed and leaves the grubenv
// alone, so that GRUB falls back.
func TestDemoVM(t *testing.T) {
	testtool.Require(t, "qemu-system-x86_64", "mkfs.ext4", "debugfs", "mkfs.fat", "mmd", "mcopy", "grub-editenv")
	k := boardKernel(t)
	b := loadBoard(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "v1.img")
	st := buildImage(t, k, "1", img)

	// The machine boots what the slot holds.
	vmlinuz, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
	tool(t, "debugfs", "-R", "dump /boot/vmlinuz "+vmlinuz, img)
	tool(t, "debugfs", "-R", "dump /boot/initrd.img "+initrd, img)
	// A data block of a payload file, to corrupt.
	bmap := strings.TrimSpace(tool(t, "debugfs", "-R", "bmap /"+demo.PayloadDir+"/base-03.bin 100", img))
	block, err := strconv.ParseInt(bmap, 10, 64)
	if err != nil || block <= 0 {
		t.Fatalf("debugfs bmap = %q: %v", bmap, err)
	}

	p := verity.DefaultParams()
	p.Salt = bytes.Repeat([]byte{0x5a}, 32)
	uuid, err := verity.ParseUUID("6c696665-626f-4174-8000-64656d6f0001")
	if err != nil {
		t.Fatal(err)
	}
	tree, err := demo.AppendVerity(t.Context(), img, p, verity.WithUUID(uuid))
	if err != nil {
		t.Fatal(err)
	}
	param := demoinit.VerityParam(tree.HashOffset, tree.RootHash)
	cmdline := strings.Join([]string{b.BaseCmdline(), "quiet",
		"lifeboat.slot=A", "lifeboat.verity=" + param}, " ")
	vars := bootenv.Vars{
		"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "0",
		"LIFEBOAT_A_VERITY": param,
	}

	t.Run("good", func(t *testing.T) {
		t.Parallel()
		d := newDemoDisk(t, b, img, -1, vars)
		con := bootDemo(t, b, vmlinuz, initrd, d.path, cmdline)
		lines := con.marked()
		ok := regexp.MustCompile(`^LIFEBOAT-DEMO version=1 slot=A verity=ok files=(\d+) bytes=(\d+)$`)
		if len(lines) != 2 || !ok.MatchString(lines[0]) || lines[1] != "LIFEBOAT-DEMO marked-good slot=A" {
			t.Fatalf("console lines %q, want the version line and marked-good", lines)
		}
		m := ok.FindStringSubmatch(lines[0])
		if m[1] != "11" || m[2] != strconv.FormatInt(st.Content, 10) {
			t.Errorf("health check read %s files, %s bytes; the image holds 11, %d", m[1], m[2], st.Content)
		}

		env := d.grubenv(t, b)
		got, err := grub.Open(env).Load(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want := bootenv.Vars{
			"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0",
			"LIFEBOAT_A_VERITY": param,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("grubenv after the boot (-want +got):\n%s", diff)
		}
		list := tool(t, "grub-editenv", env, "list")
		if !strings.Contains(list, "BOOT_A_LEFT=3\n") || !strings.Contains(list, "BOOT_ORDER=A B recovery\n") {
			t.Errorf("grub-editenv list:\n%s\nwant BOOT_A_LEFT=3, BOOT_ORDER=A B recovery", list)
		}
	})

	t.Run("corrupt", func(t *testing.T) {
		t.Parallel()
		d := newDemoDisk(t, b, img, block*demo.BlockSize+123, vars)
		before := readFile(t, d.grubenv(t, b))
		con := bootDemo(t, b, vmlinuz, initrd, d.path, cmdline)
		lines := con.marked()
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "LIFEBOAT-DEMO FAILED: verity") {
			t.Fatalf("console lines %q, want one LIFEBOAT-DEMO FAILED: verity...", lines)
		}
		if !strings.Contains(lines[0], "base-03.bin") {
			t.Errorf("failure %q does not name the corrupted file", lines[0])
		}
		if after := readFile(t, d.grubenv(t, b)); !bytes.Equal(before, after) {
			t.Errorf("grubenv changed after a failed boot:\n%q\n%q", before, after)
		}
	})
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
