package verity

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/lifeboat-update/lifeboat/pkg/progress"
)

// Tree is a built hash tree: where it lies on the hash device, and its root.
type Tree struct {
	// Params are those the tree was built with, defaults filled in and
	// the salt included.
	Params     Params
	RootHash   []byte
	DataBlocks int64
	// HashOffset is where the hash area begins on the hash device:
	// veritysetup's --hash-offset, the superblock's place when there is one.
	HashOffset int64
	// HashStart is the byte offset on the hash device of the first hash
	// block, the top level's; divided by the hash block size it is the
	// kernel table's hash_start_block. With a superblock it is the first
	// hash block boundary at least 512 bytes past HashOffset.
	HashStart int64
	// Levels are the levels on the hash device, from the hashes of the data
	// blocks (Levels[0], written last on the device) up to the single top
	// block. A tree over one data block has no levels: the root is that
	// block's digest.
	Levels []Level
	// HashSize is the size of the hash area Build wrote, from HashOffset to
	// the end of the last level, superblock and its padding included:
	// veritysetup's "Hash device size" less the offset.
	HashSize int64
	// Superblock is what Build wrote at HashOffset, or nil without one.
	Superblock *Superblock
}

// Level is one level of a hash tree.
type Level struct {
	Offset int64 `json:"offset"` // byte offset of the level's first block on the hash device
	Blocks int64 `json:"blocks"` // hash blocks in the level
}

// HashBlocks is the number of hash blocks in all levels, veritysetup's
// "Hash blocks".
func (t *Tree) HashBlocks() int64 {
	var n int64
	for _, l := range t.Levels {
		n += l.Blocks
	}
	return n
}

// String summarizes t on one line.
func (t *Tree) String() string {
	sb := "no superblock"
	if t.Superblock != nil {
		sb = "superblock " + t.Superblock.UUID.String()
	}
	salt := "-"
	if len(t.Params.Salt) > 0 {
		salt = hex.EncodeToString(t.Params.Salt)
	}
	return fmt.Sprintf("verity %s format %d: %d data blocks of %d bytes, %d levels of %d-byte hash blocks at %d (%d bytes, %s), salt %s, root %s",
		t.Params.HashAlg, t.Params.Version, t.DataBlocks, t.Params.DataBlockSize, len(t.Levels),
		t.Params.HashBlockSize, t.HashOffset, t.HashSize, sb, salt, hex.EncodeToString(t.RootHash))
}

// Option is an optional setting of Build and Verify.
type Option func(*options)

type options struct {
	superblock bool
	uuid       *UUID
	workers    int
	progress   progress.Reporter
}

// WithoutSuperblock leaves out the superblock (veritysetup --no-superblock):
// the tree starts at the hash offset, which must then be a multiple of the
// hash block size.
func WithoutSuperblock() Option { return func(o *options) { o.superblock = false } }

// WithUUID sets the superblock's UUID (veritysetup --uuid); without it
// Build makes a random one.
func WithUUID(u UUID) Option { return func(o *options) { o.uuid = &u } }

// WithWorkers sets how many goroutines hash the data; the default is
// GOMAXPROCS.
func WithWorkers(n int) Option { return func(o *options) { o.workers = n } }

// WithProgress reports the data bytes hashed to r.
func WithProgress(r progress.Reporter) Option { return func(o *options) { o.progress = r } }

func makeOptions(opts []Option) options {
	o := options{superblock: true, progress: progress.Discard}
	for _, f := range opts {
		f(&o)
	}
	if o.workers <= 0 {
		o.workers = runtime.GOMAXPROCS(0)
	}
	return o
}

// Layout returns the tree Build would write for dataSize bytes of data: its
// levels, offsets and size, without the root hash. It checks p, dataSize
// and hashOffset as Build does.
func Layout(p Params, dataSize, hashOffset int64, opts ...Option) (*Tree, error) {
	return layout(p.withDefaults(), dataSize, hashOffset, makeOptions(opts).superblock)
}

func layout(p Params, dataSize, hashOffset int64, superblock bool) (*Tree, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	dbs, hbs := int64(p.DataBlockSize), int64(p.HashBlockSize)
	if dataSize <= 0 || dataSize%dbs != 0 {
		return nil, fmt.Errorf("%w: data size %d is not a positive multiple of the %d-byte data block size", ErrBadParams, dataSize, dbs)
	}
	if hashOffset < 0 || hashOffset%512 != 0 {
		return nil, fmt.Errorf("%w: hash offset %d is not a multiple of 512", ErrBadParams, hashOffset)
	}
	t := &Tree{Params: p, DataBlocks: dataSize / dbs, HashOffset: hashOffset}
	var start int64 // in hash blocks
	if superblock {
		if hashOffset > math.MaxInt64-SuperblockSize-hbs {
			return nil, fmt.Errorf("%w: hash offset %d too large", ErrBadParams, hashOffset)
		}
		start = (hashOffset + SuperblockSize + hbs - 1) / hbs
	} else {
		// veritysetup rounds an unaligned offset down and writes the tree
		// before it; refuse instead.
		if hashOffset%hbs != 0 {
			return nil, fmt.Errorf("%w: hash offset %d without a superblock is not a multiple of the %d-byte hash block size", ErrBadParams, hashOffset, hbs)
		}
		start = hashOffset / hbs
	}
	g := p.geometry()
	n := 0
	for g.perBits*uint(n) < 64 && uint64(t.DataBlocks-1)>>(g.perBits*uint(n)) != 0 {
		n++
	}
	t.Levels = make([]Level, n)
	pos := start
	for i := n - 1; i >= 0; i-- {
		shift := g.perBits * uint(i+1)
		var s int64 = 1
		if shift < 64 {
			s = int64(uint64(t.DataBlocks-1)>>shift) + 1
		}
		t.Levels[i] = Level{Offset: pos * hbs, Blocks: s}
		if pos > math.MaxInt64/hbs-s {
			return nil, fmt.Errorf("%w: hash area overflows past offset %d", ErrBadParams, hashOffset)
		}
		pos += s
	}
	t.HashStart = start * hbs
	t.HashSize = pos*hbs - hashOffset
	return t, nil
}

// children is the number of blocks level i hashes: data blocks for level 0,
// else the blocks of level i-1.
func (t *Tree) children(i int) int64 {
	if i == 0 {
		return t.DataBlocks
	}
	return t.Levels[i-1].Blocks
}

// Build computes the hash tree of dataSize bytes of data, a whole number of
// data blocks, and writes it to hash where and as `veritysetup format` does:
// the superblock at hashOffset, then from the next hash block boundary the
// levels, the top one first and level 0 last, every unused byte zero.
// Without a superblock the top level starts at hashOffset. The superblock is written last, so an interrupted Build leaves no
// valid superblock behind.
//
// The data blocks are hashed in parallel, each worker holding a 1 MiB read
// buffer and its share of level 0; the upper levels, 1/128 of level 0 or
// less, are kept in memory.
//
// When data and hash are the same *os.File, the data blocks and the hash
// area must not overlap.
func Build(ctx context.Context, data io.ReaderAt, dataSize int64, hash io.WriterAt, hashOffset int64, p Params, opts ...Option) (*Tree, error) {
	o := makeOptions(opts)
	t, err := layout(p.withDefaults(), dataSize, hashOffset, o.superblock)
	if err != nil {
		return nil, err
	}
	if err := checkOverlap(data, hash, t); err != nil {
		return nil, err
	}
	var sb []byte
	if o.superblock {
		t.Superblock = &Superblock{Params: t.Params, DataBlocks: uint64(t.DataBlocks)}
		if o.uuid != nil {
			t.Superblock.UUID = *o.uuid
		} else if t.Superblock.UUID, err = NewUUID(); err != nil {
			return nil, err
		}
		if sb, err = t.Superblock.MarshalBinary(); err != nil {
			return nil, err
		}
	}

	o.progress.Start("verity", dataSize)
	digests, err := t.buildBottom(ctx, data, hash, o)
	o.progress.Done()
	if err != nil {
		return nil, err
	}
	for i := 1; i < len(t.Levels); i++ {
		if digests, err = t.buildLevel(ctx, hash, i, digests); err != nil {
			return nil, err
		}
	}
	t.RootHash = digests

	if sb != nil {
		// The superblock and zeros up to the first hash block.
		head := make([]byte, t.HashStart-t.HashOffset)
		copy(head, sb)
		if _, err := hash.WriteAt(head, t.HashOffset); err != nil {
			return nil, fmt.Errorf("write superblock at %d: %w", t.HashOffset, err)
		}
	}
	return t, nil
}

// checkOverlap refuses a hash area that overlaps the data when both are
// the same file.
func checkOverlap(data, hash any, t *Tree) error {
	df, ok1 := data.(*os.File)
	hf, ok2 := hash.(*os.File)
	if !ok1 || !ok2 {
		return nil
	}
	if df != hf {
		ds, err1 := df.Stat()
		hs, err2 := hf.Stat()
		if err1 != nil || err2 != nil || !os.SameFile(ds, hs) {
			return nil
		}
	}
	dataEnd := t.DataBlocks * int64(t.Params.DataBlockSize)
	if t.HashOffset < dataEnd {
		return fmt.Errorf("%w: hash area at %d overlaps the %d bytes of data in the same file", ErrBadParams, t.HashOffset, dataEnd)
	}
	return nil
}

// readChunk is the most data a worker reads at once.
const readChunk = 1 << 20

// batchData is about how much data one unit of work covers.
const batchData = 4 << 20

// bottom describes how level 0 is cut into batches of whole hash blocks.
type bottom struct {
	blocks int64 // hash blocks in level 0
	batch  int64 // hash blocks per batch
}

func (t *Tree) bottom() bottom {
	g := t.Params.geometry()
	per := int64(g.perBlock) * int64(t.Params.DataBlockSize)
	b := bottom{blocks: 1, batch: 1}
	if len(t.Levels) > 0 {
		b.blocks = t.Levels[0].Blocks
	}
	if per < batchData {
		b.batch = batchData / per
	}
	return b
}

func (b bottom) batches() int64 { return (b.blocks + b.batch - 1) / b.batch }

// forEachBatch runs fn on every batch of level 0 from workers goroutines,
// stopping at the first error or when ctx is done. fn is given the batch
// number and the worker's state.
func forEachBatch[S any](ctx context.Context, workers int, n int64, newState func() S, fn func(ctx context.Context, s S, batch int64) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(int64(workers), n) {
		wg.Go(func() {
			s := newState()
			for {
				b := next.Add(1) - 1
				if b >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, s, b); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// worker is one hashing goroutine's buffers.
type worker struct {
	h   *hasher
	buf []byte // data read
	out []byte // the batch's hash blocks
}

func (t *Tree) newWorker(batch int64) func() *worker {
	return func() *worker {
		dbs := int(t.Params.DataBlockSize)
		return &worker{
			h:   t.Params.hasher(),
			buf: make([]byte, max(dbs, readChunk/dbs*dbs)),
			out: make([]byte, batch*int64(t.Params.HashBlockSize)),
		}
	}
}

// hashData hashes data blocks [first, end) into the level-0 entries in out,
// whose first hash block holds entry first. When want is set it compares
// instead of writing, and returns the first data block whose digest differs.
func (t *Tree) hashData(ctx context.Context, w *worker, data io.ReaderAt, first, end int64, o options, want []byte) (bad int64, err error) {
	g := t.Params.geometry()
	dbs, hbs := int64(t.Params.DataBlockSize), int64(t.Params.HashBlockSize)
	per := int64(g.perBlock)
	var sum []byte
	if want != nil {
		sum = make([]byte, g.digestSize)
	}
	for blk := first; blk < end; {
		if err := ctx.Err(); err != nil {
			return -1, err
		}
		n := min(int64(len(w.buf))/dbs, end-blk)
		buf := w.buf[:n*dbs]
		if _, err := data.ReadAt(buf, blk*dbs); err != nil {
			return -1, fmt.Errorf("read data blocks %d-%d at %d: %w", blk, blk+n-1, blk*dbs, eofIsUnexpected(err))
		}
		for i := range n {
			e := blk + i - first
			pos := e/per*hbs + e%per*int64(g.stride)
			block := buf[i*dbs : (i+1)*dbs]
			if want == nil {
				w.h.sum(w.out[pos:pos+int64(g.digestSize)], block)
				continue
			}
			w.h.sum(sum, block)
			if string(sum) != string(want[pos:pos+int64(g.digestSize)]) {
				return blk + i, nil
			}
		}
		o.progress.Add(n * dbs)
		blk += n
	}
	return -1, nil
}

func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// buildBottom hashes the data blocks, writes level 0 and returns the
// digests of its blocks: level 1's entries, or the root hash.
func (t *Tree) buildBottom(ctx context.Context, data io.ReaderAt, hash io.WriterAt, o options) ([]byte, error) {
	g := t.Params.geometry()
	ds := int64(g.digestSize)
	if len(t.Levels) == 0 {
		// One data block: its digest is the root.
		w := t.newWorker(1)()
		block := w.buf[:t.Params.DataBlockSize]
		if _, err := data.ReadAt(block, 0); err != nil {
			return nil, fmt.Errorf("read data block 0: %w", eofIsUnexpected(err))
		}
		root := make([]byte, ds)
		w.h.sum(root, block)
		o.progress.Add(int64(len(block)))
		return root, nil
	}
	bt := t.bottom()
	hbs := int64(t.Params.HashBlockSize)
	per := int64(g.perBlock)
	digests := make([]byte, bt.blocks*ds)
	err := forEachBatch(ctx, o.workers, bt.batches(), t.newWorker(bt.batch), func(ctx context.Context, w *worker, b int64) error {
		first := b * bt.batch
		n := min(bt.batch, bt.blocks-first)
		out := w.out[:n*hbs]
		clear(out)
		if _, err := t.hashData(ctx, w, data, first*per, min((first+n)*per, t.DataBlocks), o, nil); err != nil {
			return err
		}
		for i := range n {
			w.h.sum(digests[(first+i)*ds:], out[i*hbs:(i+1)*hbs])
		}
		off := t.Levels[0].Offset + first*hbs
		if _, err := hash.WriteAt(out, off); err != nil {
			return fmt.Errorf("write level 0 blocks %d-%d at %d: %w", first, first+n-1, off, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return digests, nil
}

// levelChunk is how many bytes of an upper level are built or read at once.
const levelChunk = 1 << 20

// buildLevel writes level i, whose entries are the digests of level i-1's
// blocks, and returns the digests of its own blocks.
func (t *Tree) buildLevel(ctx context.Context, hash io.WriterAt, i int, entries []byte) ([]byte, error) {
	g := t.Params.geometry()
	ds, hbs, per := int64(g.digestSize), int64(t.Params.HashBlockSize), int64(g.perBlock)
	h := t.Params.hasher()
	lv := t.Levels[i]
	digests := make([]byte, lv.Blocks*ds)
	chunk := max(1, levelChunk/hbs)
	buf := make([]byte, min(chunk, lv.Blocks)*hbs)
	for first := int64(0); first < lv.Blocks; first += chunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(chunk, lv.Blocks-first)
		out := buf[:n*hbs]
		clear(out)
		for e := first * per; e < min((first+n)*per, t.children(i)); e++ {
			pos := (e/per-first)*hbs + e%per*int64(g.stride)
			copy(out[pos:pos+ds], entries[e*ds:])
		}
		for j := range n {
			h.sum(digests[(first+j)*ds:], out[j*hbs:(j+1)*hbs])
		}
		off := lv.Offset + first*hbs
		if _, err := hash.WriteAt(out, off); err != nil {
			return nil, fmt.Errorf("write level %d blocks %d-%d at %d: %w", i, first, first+n-1, off, err)
		}
	}
	return digests, nil
}
