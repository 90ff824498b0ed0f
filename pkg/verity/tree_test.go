package verity

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// memFile is a growing in-memory file for WriteAt and ReadAt.
type memFile struct {
	mu sync.Mutex
	b  []byte
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.NewReader(m.b).ReadAt(p, off)
}

func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		name       string
		p          Params
		size, off  int64
		opts       []Option
		wantStart  int64
		wantLevels []Level
		wantSize   int64
	}{
		// 256 blocks, 128 digests a block: 2 level-0 blocks under 1 top block.
		{"1m", DefaultParams(), 1 << 20, 0, nil, 4096, []Level{{8192, 2}, {4096, 1}}, 12288 + 4096},
		{"one block", DefaultParams(), 4096, 0, nil, 4096, []Level{}, 4096},
		{"no superblock", DefaultParams(), 1 << 20, 0, []Option{WithoutSuperblock()}, 0, []Level{{4096, 2}, {0, 1}}, 12288},
		{"offset 512", DefaultParams(), 1 << 20, 512, nil, 4096, []Level{{8192, 2}, {4096, 1}}, 16384 - 512},
		{"offset 3584", DefaultParams(), 1 << 20, 3584, nil, 4096, []Level{{8192, 2}, {4096, 1}}, 16384 - 3584},
		{"offset 4096", DefaultParams(), 1 << 20, 4096, nil, 8192, []Level{{12288, 2}, {8192, 1}}, 20480 - 4096},
		// 512-byte hash blocks: 16 digests each; 257 blocks need 17, 2, 1.
		{"h512", Params{HashBlockSize: 512, Version: 1}, 257 * 4096, 0, nil, 512, []Level{{2048, 17}, {1024, 2}, {512, 1}}, 2048 + 17*512},
		// sha1 in format 0: 204 digests fit, 128 are used.
		{"sha1 v0", Params{HashAlg: "sha1"}, 129 * 4096, 0, nil, 4096, []Level{{8192, 2}, {4096, 1}}, 16384},
	} {
		tree, err := Layout(tc.p, tc.size, tc.off, tc.opts...)
		if err != nil {
			t.Errorf("Layout(%s) = %v", tc.name, err)
			continue
		}
		if tree.HashStart != tc.wantStart || tree.HashSize != tc.wantSize {
			t.Errorf("Layout(%s) = start %d size %d, want %d %d", tc.name, tree.HashStart, tree.HashSize, tc.wantStart, tc.wantSize)
		}
		if diff := cmp.Diff(tc.wantLevels, tree.Levels); diff != "" {
			t.Errorf("Layout(%s) levels (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestBuildRejects(t *testing.T) {
	data := bytes.NewReader(make([]byte, 1<<20))
	for _, tc := range []struct {
		name      string
		p         Params
		size, off int64
		opts      []Option
	}{
		{"size not a multiple", DefaultParams(), 1<<20 - 1, 0, nil},
		{"size zero", DefaultParams(), 0, 0, nil},
		{"offset not 512-aligned", DefaultParams(), 1 << 20, 100, nil},
		{"offset without superblock not hash-block-aligned", DefaultParams(), 1 << 20, 512, []Option{WithoutSuperblock()}},
		{"negative offset", DefaultParams(), 1 << 20, -512, nil},
		{"algorithm", Params{HashAlg: "md5"}, 1 << 20, 0, nil},
		{"block size", Params{DataBlockSize: 1000}, 1 << 20, 0, nil},
		{"salt", Params{Salt: make([]byte, 257)}, 1 << 20, 0, nil},
		{"format", Params{Version: 2}, 1 << 20, 0, nil},
	} {
		_, err := Build(context.Background(), data, tc.size, &memFile{}, tc.off, tc.p, tc.opts...)
		if !errors.Is(err, ErrBadParams) {
			t.Errorf("Build(%s) = %v, want ErrBadParams", tc.name, err)
		}
	}
	// Data shorter than its size.
	if _, err := Build(context.Background(), bytes.NewReader(make([]byte, 8192)), 1<<20, &memFile{}, 0, DefaultParams()); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Build(short data) = %v, want io.ErrUnexpectedEOF", err)
	}
	// The tree inside the data.
	f, err := os.Create(filepath.Join(t.TempDir(), "img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(2 << 20)
	if _, err := Build(context.Background(), f, 1<<20, f, 1<<19, DefaultParams()); !errors.Is(err, ErrBadParams) {
		t.Errorf("Build(hash area inside the data) = %v, want ErrBadParams", err)
	}
	if _, err := Build(context.Background(), f, 1<<20, f, 1<<20, DefaultParams()); err != nil {
		t.Errorf("Build(hash area after the data) = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, data, 1<<20, &memFile{}, 0, DefaultParams()); !errors.Is(err, context.Canceled) {
		t.Errorf("Build(canceled) = %v, want context.Canceled", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		p  Params
		ok bool
	}{
		{DefaultParams(), true},
		{Params{}, true}, // format 0 with the default sizes
		{Params{HashAlg: "sha512", DataBlockSize: 512, HashBlockSize: 512 << 10, Salt: make([]byte, 256)}, true},
		{Params{HashAlg: "SHA256"}, false},
		{Params{DataBlockSize: 256}, false},
		{Params{HashBlockSize: 1 << 20}, false},
		{Params{HashBlockSize: 3 << 10}, false},
		{Params{Salt: make([]byte, 257)}, false},
		{Params{Version: 2}, false},
	} {
		if err := tc.p.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v.Validate() = %v, want ok %v", tc.p, err, tc.ok)
		}
	}
}

// TestBuildWorkers checks that the number of workers and the batch
// boundaries do not change the tree.
func TestBuildWorkers(t *testing.T) {
	data := testData(42, 9<<20+3*4096)
	var want []byte
	for _, workers := range []int{1, 2, 3, 8} {
		out := &memFile{}
		tree, err := Build(context.Background(), bytes.NewReader(data), int64(len(data)), out, 0, DefaultParams(),
			WithWorkers(workers), WithUUID(UUID{1}))
		if err != nil {
			t.Fatal(err)
		}
		if want == nil {
			want = out.b
			continue
		}
		if !bytes.Equal(out.b, want) {
			t.Errorf("Build with %d workers: %s", workers, firstDiff(out.b, want))
		}
		if tree.String() == "" {
			t.Errorf("Tree.String() is empty")
		}
	}
}

// sparse is an image of zeros that needs no memory.
type sparse struct{}

func (sparse) ReadAt(p []byte, off int64) (int, error) { clear(p); return len(p), nil }

type discard struct{}

func (discard) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }

// TestBuildMemory checks that Build's allocations do not grow with the
// image beyond the upper levels it keeps (32 bytes per 512 KiB of data).
func TestBuildMemory(t *testing.T) {
	size := int64(4 << 30)
	if testing.Short() || raceEnabled {
		size = 512 << 20
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := Build(context.Background(), sparse{}, size, discard{}, 0, DefaultParams(), WithWorkers(2)); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	// Two workers' 1 MiB read buffers and 32 KiB of level 0, plus level 1.
	limit := uint64(4<<20 + size/(512<<10)*32)
	if alloc > limit {
		t.Errorf("Build over %d MiB allocated %d bytes, want at most %d", size>>20, alloc, limit)
	}
	t.Logf("Build over %d MiB allocated %d KiB in all", size>>20, alloc>>10)
}

func BenchmarkBuild(b *testing.B) {
	data := testData(1, 256<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Build(context.Background(), bytes.NewReader(data), int64(len(data)), discard{}, 0, DefaultParams()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	data := testData(1, 256<<20)
	hash := &memFile{}
	tree, err := Build(context.Background(), bytes.NewReader(data), int64(len(data)), hash, 0, DefaultParams())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := Verify(context.Background(), bytes.NewReader(data), int64(len(data)), hash, 0, DefaultParams(), tree.RootHash); err != nil {
			b.Fatal(err)
		}
	}
}
