package demo_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeboat-update/lifeboat/demo"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

const boardDir = "../boards/qemu-x86_64"

func loadBoard(t *testing.T) *board.Board {
	t.Helper()
	b, err := board.Load(boardDir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWritePayload(t *testing.T) {
	hashes := func(version string, seed uint64) map[string]string {
		dir := t.TempDir()
		n, err := demo.WritePayload(dir, seed, version, 2<<20+100, 5000)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		var total int64
		ents, err := os.ReadDir(filepath.Join(dir, demo.PayloadDir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, demo.PayloadDir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			total += int64(len(b))
			out[e.Name()] = fmt.Sprintf("%d %x", len(b), sha256.Sum256(b))
		}
		if n != total {
			t.Errorf("WritePayload = %d bytes, the files hold %d", n, total)
		}
		return out
	}
	v1, v1again, v2, seed2 := hashes("1", 1), hashes("1", 1), hashes("2", 1), hashes("1", 2)
	if diff := cmp.Diff(v1, v1again); diff != "" {
		t.Errorf("WritePayload is not deterministic (-first +second):\n%s", diff)
	}
	names := []string{"README.txt", "base-00.bin", "base-01.bin", "base-02.bin", "release.bin"}
	for _, n := range names {
		if _, ok := v1[n]; !ok {
			t.Errorf("payload has no %s: %v", n, v1)
		}
		changes := n == "release.bin"
		if (v1[n] != v2[n]) != changes {
			t.Errorf("%s: version 1 %s, version 2 %s; want them to differ: %v", n, v1[n], v2[n], changes)
		}
		if n != "README.txt" && v1[n] == seed2[n] {
			t.Errorf("%s is the same with seed 2", n)
		}
	}
	if !strings.HasPrefix(v1["base-02.bin"], "100 ") || !strings.HasPrefix(v1["release.bin"], "5000 ") {
		t.Errorf("payload sizes: %v", v1)
	}
}

// fakeKernel is an unpacked kernel package with a modules.dep and a few
// module files, some of the demo's modules built in.
func fakeKernel(t *testing.T) *kernel.Kernel {
	t.Helper()
	k := &kernel.Kernel{Package: "linux-image-test", Version: "1", Release: "6.1.0-test", Dir: t.TempDir()}
	dep := `kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/crypto/crc32c_generic.ko:
kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko
kernel/fs/fat/fat.ko:
kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko
kernel/drivers/md/dm-bufio.ko:
kernel/drivers/md/dm-mod.ko:
kernel/net/unused.ko:
`
	files := map[string]string{
		"modules.dep":     dep,
		"modules.builtin": "kernel/fs/nls/nls_cp437.ko\nkernel/fs/nls/nls_ascii.ko\n",
	}
	for _, line := range strings.Split(strings.TrimSpace(dep), "\n") {
		m, _, _ := strings.Cut(line, ":")
		files[m] = "module " + m
	}
	for name, content := range files {
		p := filepath.Join(k.ModulesDir(), name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// cpioEntry is one entry of a newc archive.
type cpioEntry struct {
	mode uint32
	data string
}

// readCPIO reads a newc archive, as the kernel unpacks an initramfs.
func readCPIO(t *testing.T, b []byte) (map[string]cpioEntry, []string) {
	t.Helper()
	out := map[string]cpioEntry{}
	var order []string
	pad := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("cpio: no header at %d", off)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("cpio header at %d: %v", off, err)
			}
			return int(v)
		}
		mode, size, namesize := field(1), field(6), field(11)
		name := string(b[off+110 : off+110+namesize-1])
		data := pad(off + 110 + namesize)
		if name == "TRAILER!!!" {
			return out, order
		}
		out[name] = cpioEntry{mode: uint32(mode), data: string(b[data : data+size])}
		order = append(order, name)
		off = pad(data + size)
	}
}

func TestWriteInitramfs(t *testing.T) {
	b := loadBoard(t)
	k := fakeKernel(t)
	init := []byte("\x7fELF demoinit")
	var buf bytes.Buffer
	st, err := demo.WriteInitramfs(&buf, b, k, bytes.NewReader(init), int64(len(init)))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(raw)) != st.Size {
		t.Errorf("WriteInitramfs size %d, the archive is %d bytes", st.Size, len(raw))
	}
	ents, order := readCPIO(t, raw)

	m := "/lib/modules/6.1.0-test/kernel/"
	wantMods := []string{
		m + "drivers/virtio/virtio_ring.ko", m + "drivers/virtio/virtio.ko", m + "drivers/virtio/virtio_pci.ko",
		m + "drivers/block/virtio_blk.ko",
		m + "net/core/failover.ko", m + "drivers/net/net_failover.ko", m + "drivers/net/virtio_net.ko",
		m + "crypto/crc32c_generic.ko",
		m + "fs/jbd2/jbd2.ko", m + "fs/ext4/ext4.ko",
		m + "fs/fat/fat.ko", m + "fs/fat/vfat.ko",
		m + "drivers/md/dm-mod.ko", m + "drivers/md/dm-bufio.ko", m + "drivers/md/dm-verity.ko",
	}
	if diff := cmp.Diff(wantMods, st.Modules); diff != "" {
		t.Errorf("modules (-want +got):\n%s", diff)
	}
	if got := ents["etc/lifeboat/modules.order"].data; got != strings.Join(wantMods, "\n")+"\n" {
		t.Errorf("modules.order = %q", got)
	}
	for _, mod := range wantMods {
		e, ok := ents[strings.TrimPrefix(mod, "/")]
		if !ok || e.data != "module "+strings.TrimPrefix(mod, "/lib/modules/6.1.0-test/") || e.mode != 0o100644 {
			t.Errorf("%s in the archive: %+v, %v", mod, e, ok)
		}
	}
	if _, ok := ents["lib/modules/6.1.0-test/kernel/net/unused.ko"]; ok {
		t.Error("the archive holds a module the demo does not load")
	}
	if e := ents["init"]; e.data != string(init) || e.mode != 0o100755 {
		t.Errorf("init = %+v", e)
	}
	if e := ents["dev/console"]; e.mode != 0o020600 {
		t.Errorf("dev/console mode %o, want a character device", e.mode)
	}
	boardJSON, err := os.ReadFile(filepath.Join(boardDir, board.File))
	if err != nil {
		t.Fatal(err)
	}
	if ents["etc/lifeboat/board.json"].data != string(boardJSON) {
		t.Error("etc/lifeboat/board.json is not the board's board.json")
	}
	for _, d := range []string{"proc", "sys", "mnt/root", "mnt/env", "lib/modules/6.1.0-test/kernel/fs/fat"} {
		if e, ok := ents[d]; !ok || e.mode != 0o040755 {
			t.Errorf("directory %s: %+v, %v", d, e, ok)
		}
	}
	// Every entry's directory comes before it: the kernel does not make
	// parents.
	seen := map[string]bool{".": true}
	for _, name := range order {
		if !seen[filepath.Dir(name)] {
			t.Errorf("%s comes before its directory", name)
		}
		seen[name] = true
	}

	var again bytes.Buffer
	if _, err := demo.WriteInitramfs(&again, b, k, bytes.NewReader(init), int64(len(init))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("WriteInitramfs is not deterministic")
	}
}

func TestOptionsValidate(t *testing.T) {
	b := loadBoard(t)
	k := &kernel.Kernel{Package: b.Kernel.Package, Version: b.Kernel.Version}
	ok := demo.Options{Board: b, Version: "1.0", Kernel: k, Out: "x.img"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v", ok, err)
	}
	for _, tc := range []struct {
		name string
		edit func(o *demo.Options)
	}{
		{"no board", func(o *demo.Options) { o.Board = nil }},
		{"no kernel", func(o *demo.Options) { o.Kernel = nil }},
		{"no output", func(o *demo.Options) { o.Out = "" }},
		{"bad version", func(o *demo.Options) { o.Version = "v1" }},
		{"no version", func(o *demo.Options) { o.Version = "" }},
		{"size not whole blocks", func(o *demo.Options) { o.Size = 1<<20 + 1 }},
		{"negative payload", func(o *demo.Options) { o.PayloadSize = -1 }},
		{"another kernel", func(o *demo.Options) {
			o.Kernel = &kernel.Kernel{Package: "linux-image-6.1.0-56-cloud-amd64", Version: k.Version}
		}},
	} {
		o := ok
		tc.edit(&o)
		if err := o.Validate(); !errors.Is(err, demo.ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", tc.name, err)
		}
	}
}

func TestSlotSize(t *testing.T) {
	b := loadBoard(t)
	n, err := demo.SlotSize(b)
	if err != nil || n != 96<<20 {
		t.Errorf("SlotSize(%s) = %d, %v; want 96 MiB", b.Name, n, err)
	}
	v, err := demo.VeritySize(32 << 20)
	// 8192 blocks: 64 level-0 hash blocks, a top block, the superblock's.
	if err != nil || v != 66*4096 {
		t.Errorf("VeritySize(32 MiB) = %d, %v; want %d", v, err, 66*4096)
	}
}
