//go:build linux

package verity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-update/lifeboat/pkg/dm"
	"github.com/lifeboat-update/lifeboat/qemu/vmtest"
)

// The VM test's images, made the same way on the host (to write the
// disks) and in the guest (to know what the disks hold).
const (
	vmSeed     = 7
	vmDataSize = 4 << 20 // 1024 data blocks, 8 level-0 hash blocks
	vmBadBlock = 100     // the data block corrupted on disk 3
	vmBadHash  = 2       // the level-0 hash block corrupted on disk 4
)

type vmImages struct {
	p       Params
	data    []byte
	hash    []byte // the tree with its superblock, at offset 0
	tree    *Tree
	disks   [][]byte
	badHash int64 // offset on disk 4 of the flipped byte
}

// The disks: 0 data, 1 its tree, 2 data and tree after it, 3 data with
// a flipped byte, 4 the tree with a flipped byte in level 0.
const (
	diskData = iota
	diskHash
	diskSame
	diskBadData
	diskBadHash
)

func makeVMImages(t *testing.T) *vmImages {
	t.Helper()
	ctx := context.Background()
	v := &vmImages{p: DefaultParams(), data: testData(vmSeed, vmDataSize)}
	v.p.Salt = goldenSalt
	u, err := ParseUUID(goldenUUID)
	if err != nil {
		t.Fatal(err)
	}
	var hash memFile
	if v.tree, err = Build(ctx, bytes.NewReader(v.data), vmDataSize, &hash, 0, v.p, WithUUID(u)); err != nil {
		t.Fatal(err)
	}
	v.hash = hash.b
	same := &memFile{b: bytes.Clone(v.data)}
	if _, err := Build(ctx, bytes.NewReader(v.data), vmDataSize, same, vmDataSize, v.p, WithUUID(u)); err != nil {
		t.Fatal(err)
	}
	badData := bytes.Clone(v.data)
	badData[vmBadBlock*4096+123] ^= 0x40
	badHash := bytes.Clone(v.hash)
	v.badHash = v.tree.Levels[0].Offset + vmBadHash*4096 + 77
	badHash[v.badHash] ^= 0x01
	v.disks = [][]byte{v.data, v.hash, same.b, badData, badHash}
	return v
}

// writeDisks writes the images to files, padded to whole sectors.
func writeDisks(t *testing.T, images [][]byte) []string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for i, b := range images {
		p := filepath.Join(dir, fmt.Sprintf("disk%d.img", i))
		if pad := len(b) % 512; pad != 0 {
			b = append(bytes.Clone(b), make([]byte, 512-pad)...)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

func TestActivateVM(t *testing.T) {
	v := makeVMImages(t)
	var disks []string
	if !vmtest.InGuest() {
		disks = writeDisks(t, v.disks)
	}
	if !vmtest.Run(t, vmtest.Options{Disks: disks, Modules: []string{"dm-verity"}}) {
		return
	}
	ctx := context.Background()
	ctl, err := dm.Open(dm.DefaultControl)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	root := v.tree.RootHash
	blocks := int64(vmDataSize / 4096)

	activate := func(t *testing.T, data, hash int, off int64, opts ...ActivateOption) string {
		t.Helper()
		path, err := Activate(ctx, ctl, "vt", vmtest.Disk(data), vmtest.Disk(hash), off, v.p, root, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := Deactivate(ctx, ctl, "vt"); err != nil {
				t.Error(err)
			}
		})
		return path
	}

	for _, tt := range []struct {
		name       string
		data, hash int
		off        int64
	}{
		{"hash on its own disk", diskData, diskHash, 0},
		{"hash after the data", diskSame, diskSame, vmDataSize},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := activate(t, tt.data, tt.hash, tt.off)
			got := readDirect(t, path, 0, vmDataSize)
			if !bytes.Equal(got, v.data) {
				t.Errorf("reading %s differs from the data", path)
			}
			// The kernel prints the table back as we would with major:minor.
			want := NewTable(v.tree, devNum(t, vmtest.Disk(tt.data)), devNum(t, vmtest.Disk(tt.hash)), root)
			want.HashStartBlock = uint64((tt.off + 4096) / 4096)
			checkTable(t, ctl, "vt", want)
			if c, err := Corrupted(ctx, ctl, "vt"); c || err != nil {
				t.Errorf("Corrupted(vt) = %v, %v, want false", c, err)
			}
		})
	}

	t.Run("corrupted data block", func(t *testing.T) {
		path := activate(t, diskBadData, diskHash, 0)
		checkBlocks(t, path, blocks, v.data, func(b int64) bool { return b == vmBadBlock })
		if c, err := Corrupted(ctx, ctl, "vt"); !c || err != nil {
			t.Errorf("Corrupted(vt) = %v, %v, want true", c, err)
		}
	})

	t.Run("corrupted hash block", func(t *testing.T) {
		path := activate(t, diskData, diskBadHash, 0)
		per := int64(4096 / 32)
		checkBlocks(t, path, blocks, v.data, func(b int64) bool { return b/per == vmBadHash })
	})

	t.Run("restart_on_corruption", func(t *testing.T) {
		// Loading only: a bad block would reboot the guest.
		activate(t, diskData, diskHash, 0, WithErrorMode(RestartOnCorruption), WithCheckAtMostOnce())
		want := NewTable(v.tree, devNum(t, vmtest.Disk(diskData)), devNum(t, vmtest.Disk(diskHash)), root)
		want.ErrorMode, want.CheckAtMostOnce = RestartOnCorruption, true
		checkTable(t, ctl, "vt", want)
		st, err := ctl.Status(ctx, "vt")
		if err != nil || len(st) != 1 || st[0].Params != "V" {
			t.Errorf("Status(vt) = %v, %v, want one verity target, V", st, err)
		}
	})

	t.Run("wrong root", func(t *testing.T) {
		bad := bytes.Clone(root)
		bad[0] ^= 1
		path, err := Activate(ctx, ctl, "vt", vmtest.Disk(diskData), vmtest.Disk(diskHash), 0, v.p, bad)
		if err != nil {
			t.Fatal(err)
		}
		defer Deactivate(ctx, ctl, "vt")
		if _, err := readDirectErr(path, 0, 4096); !errors.Is(err, syscall.EIO) {
			t.Errorf("read block 0 under a wrong root = %v, want EIO", err)
		}
	})
}

// checkTable checks the kernel's table of name against want.
func checkTable(t *testing.T, ctl dm.Control, name string, want Table) {
	t.Helper()
	got, err := ctl.Table(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != want.Target() {
		t.Errorf("Table(%s) = %v, want %v", name, got, want.Target())
		return
	}
	parsed, err := ParseTable(got[0].Params)
	if err != nil || parsed.String() != want.String() {
		t.Errorf("ParseTable(kernel's table) = %v, %v, want %v", parsed, err, want)
	}
}

// checkBlocks reads every block of path alone and checks that the bad
// ones fail with EIO and the others read the data.
func checkBlocks(t *testing.T, path string, blocks int64, data []byte, bad func(int64) bool) {
	t.Helper()
	var nbad int
	for b := int64(0); b < blocks; b++ {
		got, err := readDirectErr(path, b*4096, 4096)
		switch {
		case bad(b):
			nbad++
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("read block %d = %v, want EIO", b, err)
			}
		case err != nil:
			t.Errorf("read block %d: %v", b, err)
		case !bytes.Equal(got, data[b*4096:(b+1)*4096]):
			t.Errorf("read block %d: wrong data", b)
		}
	}
	if nbad == 0 {
		t.Error("no bad blocks checked")
	}
}

func readDirect(t *testing.T, path string, off, n int64) []byte {
	t.Helper()
	b, err := readDirectErr(path, off, n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readDirectErr reads n bytes at off with O_DIRECT, past the page cache
// and its readahead, so that a failed block fails this read alone.
func readDirectErr(path string, off, n int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	defer unix.Munmap(buf)
	for done := int64(0); done < n; {
		k, err := f.ReadAt(buf[done:], off+done)
		done += int64(k)
		if err != nil {
			return nil, err
		}
	}
	return bytes.Clone(buf), nil
}

// devNum returns the major:minor of the block device at path.
func devNum(t *testing.T, path string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
}
