package tests

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/install"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	lbrelease "github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/store"
	"github.com/lifeboat-update/lifeboat/pkg/verity"
)

// Disk a large case may allocate, all files together: the images are
// sparse, and so are the slots but for their verity trees (32 MiB for
// 4 GiB of data).
const largeDiskBudget = 256 << 20

// TestLargeSparseImages checks that signatures and hashes cover every byte
// at sizes past 2^31 and 2^32: for a sparse rootfs of each size it signs a
// release with a verity tree, installs it into a sparse slot, and then
// flips single bytes of the slot at the 32-bit boundaries and the ends:
// every flip must fail install.VerifySlot with ErrSlotMismatch and
// verity.Verify (naming the data block for a flip in the data area), and
// flipping the byte back must pass both again. It also checks that the
// index's entries past 2^32 point at the right bytes and that the index
// round-trips.
func TestLargeSparseImages(t *testing.T) {
	if testing.Short() {
		t.Skip("signs, installs and re-hashes sparse images of 2 and 4 GiB: takes minutes; make test runs it")
	}
	tests := []struct {
		name string
		size int64
	}{
		{"2GiB", 1 << 31},
		{"4GiB+1", 1<<32 + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			largeRoundTrip(t, tt.size)
			t.Logf("%d bytes: %v", tt.size, time.Since(start).Round(time.Millisecond))
		})
	}
}

// sparseImage makes a sparse file of size bytes with a few patches of
// noise: at the start, at the end, across 2^31 and 2^32 when the file
// reaches past them, and at two places between.
func sparseImage(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	const n = 4096
	for i, off := range []int64{0, size / 3, 1<<31 - n/2, 2 * size / 3, 1<<32 - n/2, size - n + 1000} {
		end := min(off+n, size)
		if off < 0 || off >= end {
			continue
		}
		if _, err := f.WriteAt(randomBytes(uint64(1000+i), int(end-off)), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// allocated returns the bytes of disk the files under path take, as du
// counts them.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		n += st.Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func largeRoundTrip(t *testing.T, size int64) {
	ctx := t.Context()
	dir := t.TempDir()
	img := filepath.Join(dir, "rootfs.img")
	sparseImage(t, img, size)

	// Release side, in-process: a repository made by keys init, and one
	// release of the image with a verity tree.
	repoDir, keysDir := filepath.Join(dir, "repo"), filepath.Join(dir, "keys")
	release(t, "keys", "init", "--keys="+keysDir, "--repo="+repoDir)
	ks, err := publish.LoadKeySet(keysDir)
	if err != nil {
		t.Fatal(err)
	}
	repo := &publish.Repo{Dir: repoDir}
	p := verity.DefaultParams()
	added, err := repo.AddImage(ctx, "rootfs", img, publish.ImageOptions{Params: chunk.DefaultParams, Digest: chunk.SHA512256, Verity: &p})
	if err != nil {
		t.Fatalf("AddImage(%d-byte image) = %v", size, err)
	}
	rel := lbrelease.Release{Board: testBoard, Version: "1", Created: time.Now().UTC().Truncate(time.Second), Images: []lbrelease.Image{added}}
	if err := repo.AddRelease(rel, ks); err != nil {
		t.Fatalf("AddRelease = %v", err)
	}
	targets, _, _, err := repo.Targets()
	if err != nil || len(targets.Releases) != 1 || len(targets.Releases[0].Images) != 1 {
		t.Fatalf("repo.Targets() = %+v, %v; want one release of one image", targets, err)
	}
	im := targets.Releases[0].Images[0] // as signed
	v := im.Verity
	if v == nil || v.DataSize < size || v.DataSize-size >= int64(v.DataBlockSize) || v.HashOffset != v.DataSize || im.Size <= v.HashOffset {
		t.Fatalf("signed image: %d bytes, verity %+v; want data padded to a block, then the tree", im.Size, v)
	}

	// Device side, in-process: provision, then install into a new slot.
	stateDir, slot := filepath.Join(dir, "state"), filepath.Join(dir, "slot")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	state := durable.OS(stateDir)
	if err := lbrelease.Provision(state, readFile(t, filepath.Join(repoDir, lbrelease.MetadataDir, "1.root.json"))); err != nil {
		t.Fatalf("Provision = %v", err)
	}
	st, err := store.NewLocal(filepath.Join(repoDir, lbrelease.StoreDir))
	if err != nil {
		t.Fatal(err)
	}
	client := &lbrelease.Client{State: state, Fetch: lbrelease.DirFetcher{Dir: repoDir}, Board: testBoard}
	res, err := install.Install(ctx, client, map[string]string{"rootfs": slot}, install.Options{Stores: []store.Store{st}})
	if err != nil {
		t.Fatalf("Install(%d-byte image) = %v", size, err)
	}
	if stats := res.Images[0].Stats; stats.Zero.Chunks == 0 {
		t.Errorf("Install wrote a sparse image with no zero chunks: %+v", stats)
	}
	if fi, err := os.Stat(slot); err != nil || fi.Size() != im.Size {
		t.Fatalf("slot: %v, %v; want %d bytes", fi, err, im.Size)
	}
	used := allocated(t, dir)
	t.Logf("%d-byte image: %d-byte slot, %d bytes on disk in all (slot %d, repository %d)",
		size, im.Size, used, allocated(t, slot), allocated(t, repoDir))
	if used > largeDiskBudget {
		t.Errorf("the files of a %d-byte release take %d bytes on disk, more than the %d allowed: something is not sparse", size, used, largeDiskBudget)
	}

	f, err := os.OpenFile(slot, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checkLargeIndex(t, readIndex(t, filepath.Join(repoDir, filepath.FromSlash(im.Index.Path))), f, im)

	vp, root, err := publish.VerityParams(v)
	if err != nil {
		t.Fatal(err)
	}
	// Both read the whole slot: one core each.
	verify := func() (slotErr, verityErr error) {
		var wg sync.WaitGroup
		wg.Go(func() { slotErr = install.VerifySlot(ctx, f, im) })
		verityErr = verity.Verify(ctx, f, v.DataSize, f, v.HashOffset, vp, root)
		wg.Wait()
		return slotErr, verityErr
	}
	if err1, err2 := verify(); err1 != nil || err2 != nil {
		t.Fatalf("installed slot: VerifySlot = %v, verity.Verify = %v; want nil, nil", err1, err2)
	}

	// The 32-bit boundaries and the ends: of the image, of the data area
	// (the padding, when there is one), and of the slot (the tree's last
	// block). For the 2 GiB image, 2^31 is the superblock's first byte.
	offsets := []int64{0, 1<<31 - 1, 1 << 31, 1 << 32, size - 1, v.DataSize - 1, im.Size - 1}
	offsets = slices.DeleteFunc(offsets, func(off int64) bool { return off >= im.Size })
	slices.Sort(offsets)
	offsets = slices.Compact(offsets)
	for _, off := range offsets {
		flipAt(t, f, off)
		slotErr, verityErr := verify()
		if !errors.Is(slotErr, install.ErrSlotMismatch) {
			t.Errorf("byte %d flipped: VerifySlot = %v, want %v", off, slotErr, install.ErrSlotMismatch)
		}
		var mm *verity.MismatchError
		switch {
		case off < v.DataSize:
			block := off / int64(v.DataBlockSize)
			if !errors.As(verityErr, &mm) || mm.Level != verity.DataLevel || mm.Block != block {
				t.Errorf("byte %d flipped: verity.Verify = %v, want a mismatch of data block %d", off, verityErr, block)
			}
		case verityErr == nil:
			// The tree: the superblock is checked against the signed
			// parameters, every hash block against the level above.
			t.Errorf("byte %d (in the hash area at %d) flipped: verity.Verify = nil, want an error", off, v.HashOffset)
		}
		flipAt(t, f, off)
		if err1, err2 := verify(); err1 != nil || err2 != nil {
			t.Fatalf("byte %d flipped back: VerifySlot = %v, verity.Verify = %v; want nil, nil", off, err1, err2)
		}
	}
}

// flipAt inverts the byte at off of f.
func flipAt(t *testing.T, f *os.File, off int64) {
	t.Helper()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// checkLargeIndex checks the entries of x around 2^31 and 2^32: that they
// lie where the offsets say (the slot's bytes there hash to their IDs),
// beyond the boundary in 64 bits, and that the index writes back to the
// same bytes and reads back to the same entries.
func checkLargeIndex(t *testing.T, x *chunk.Index, slot *os.File, im lbrelease.Image) {
	t.Helper()
	if got := int64(x.Size()); got != im.Size {
		t.Fatalf("index describes %d bytes, release signed %d", got, im.Size)
	}
	for _, b := range []uint64{1 << 31, 1 << 32} {
		if b >= x.Size() {
			continue
		}
		i, _ := slices.BinarySearchFunc(x.Chunks, b, func(e chunk.Entry, off uint64) int {
			switch {
			case e.End() <= off:
				return -1
			case e.Start > off:
				return 1
			}
			return 0
		})
		for _, e := range x.Chunks[i:min(i+3, len(x.Chunks))] {
			if e.End() <= b || (e != x.Chunks[i] && e.Start < b) {
				t.Errorf("index entry at %d-%d, holding byte %d or after it, does not lie past it", e.Start, e.End(), b)
			}
			data := make([]byte, e.Size)
			if _, err := slot.ReadAt(data, int64(e.Start)); err != nil {
				t.Fatal(err)
			}
			if got := x.Digest.Sum(data); got != e.ID {
				t.Errorf("slot bytes %d-%d hash to %s, index entry says %s", e.Start, e.End(), got, e.ID)
			}
		}
	}
	var buf bytes.Buffer
	if _, err := x.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	// Compare with what the release signed, byte for byte.
	if got := lbrelease.HashOf(buf.Bytes()); got != im.Index.SHA256 {
		t.Errorf("index written back hashes to %s, the release signed %s", got, im.Index.SHA256)
	}
	y, err := chunk.ReadIndex(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("chunk.ReadIndex(index written back) = %v", err)
	}
	if diff := cmp.Diff(x, y); diff != "" {
		t.Errorf("index read back differs (-written +read):\n%s", diff)
	}
}
