package verity

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"sync/atomic"
)

// ErrMismatch is wrapped by every error Verify returns because the data,
// the tree, the superblock or the root hash disagree.
var ErrMismatch = errors.New("verity hash mismatch")

// DataLevel is MismatchError.Level for a data block.
const DataLevel = -1

// MismatchError names the block Verify found wrong. It wraps ErrMismatch.
type MismatchError struct {
	// Level is DataLevel for a data block, else the tree level of a hash
	// block (0 holds the data blocks' hashes).
	Level int
	// Block is the data block's number, or the hash block's index in its
	// level.
	Block int64
	// Offset is the block's byte offset on the data or the hash device.
	Offset int64
	// Detail says what is wrong.
	Detail string
}

func (e *MismatchError) Error() string {
	what := fmt.Sprintf("data block %d (data offset %d)", e.Block, e.Offset)
	if e.Level != DataLevel {
		what = fmt.Sprintf("level %d hash block %d (hash offset %d)", e.Level, e.Block, e.Offset)
	}
	return fmt.Sprintf("%s: %s: %v", what, e.Detail, ErrMismatch)
}

func (e *MismatchError) Unwrap() error { return ErrMismatch }

// Verify recomputes the whole tree over dataSize bytes of data and checks
// it against the one on hash at hashOffset and against root, as
// `veritysetup verify` does: from the root down, each hash block's digest
// against its entry one level up and its unused bytes against zero, then
// every data block against level 0. With a superblock (the default) it also
// checks that the superblock matches p and the data size.
//
// A disagreement is a *MismatchError naming the first wrong block in that
// order (the lowest data block, among data blocks), or for the superblock
// an error wrapping ErrMismatch.
func Verify(ctx context.Context, data io.ReaderAt, dataSize int64, hash io.ReaderAt, hashOffset int64, p Params, root []byte, opts ...Option) error {
	o := makeOptions(opts)
	t, err := layout(p.withDefaults(), dataSize, hashOffset, o.superblock)
	if err != nil {
		return err
	}
	if err := checkOverlap(data, hash, t); err != nil {
		return err
	}
	g := t.Params.geometry()
	if len(root) != g.digestSize {
		return fmt.Errorf("%w: root hash is %d bytes, a %s digest %d", ErrBadParams, len(root), t.Params.HashAlg, g.digestSize)
	}
	if o.superblock {
		if err := t.checkSuperblock(hash); err != nil {
			return err
		}
	}
	o.progress.Start("verify", dataSize)
	defer o.progress.Done()
	if len(t.Levels) == 0 {
		block := make([]byte, t.Params.DataBlockSize)
		if _, err := data.ReadAt(block, 0); err != nil {
			return fmt.Errorf("read data block 0: %w", eofIsUnexpected(err))
		}
		sum := make([]byte, g.digestSize)
		t.Params.hasher().sum(sum, block)
		if !bytes.Equal(sum, root) {
			return &MismatchError{Level: DataLevel, Detail: "digest differs from the root hash"}
		}
		return nil
	}
	if err := t.verifyLevels(ctx, hash, root); err != nil {
		return err
	}
	return t.verifyData(ctx, data, hash, o)
}

func (t *Tree) checkSuperblock(hash io.ReaderAt) error {
	sb, err := ReadSuperblock(io.NewSectionReader(hash, t.HashOffset, SuperblockSize))
	if err != nil {
		return fmt.Errorf("superblock at %d: %w", t.HashOffset, err)
	}
	p, q := sb.Params, t.Params
	var diff string
	switch {
	case p.HashAlg != q.HashAlg:
		diff = fmt.Sprintf("hash algorithm %s, want %s", p.HashAlg, q.HashAlg)
	case p.Version != q.Version:
		diff = fmt.Sprintf("format %d, want %d", p.Version, q.Version)
	case p.DataBlockSize != q.DataBlockSize || p.HashBlockSize != q.HashBlockSize:
		diff = fmt.Sprintf("block sizes %d/%d, want %d/%d", p.DataBlockSize, p.HashBlockSize, q.DataBlockSize, q.HashBlockSize)
	case sb.DataBlocks != uint64(t.DataBlocks):
		diff = fmt.Sprintf("%d data blocks, want %d", sb.DataBlocks, t.DataBlocks)
	case !bytes.Equal(p.Salt, q.Salt):
		diff = fmt.Sprintf("salt %s, want %s", hex.EncodeToString(p.Salt), hex.EncodeToString(q.Salt))
	default:
		return nil
	}
	return fmt.Errorf("superblock at %d says %s: %w", t.HashOffset, diff, ErrMismatch)
}

// verifyLevels checks the hash blocks from the top one down. The upper
// levels are kept to check the one below; level 0 is streamed.
func (t *Tree) verifyLevels(ctx context.Context, hash io.ReaderAt, root []byte) error {
	g := t.Params.geometry()
	ds, stride, hbs, per := int64(g.digestSize), int64(g.stride), int64(t.Params.HashBlockSize), int64(g.perBlock)
	h := t.Params.hasher()
	sum := make([]byte, ds)
	var up []byte // the level above, as read
	chunk := max(1, levelChunk/hbs)
	for i := len(t.Levels) - 1; i >= 0; i-- {
		lv := t.Levels[i]
		var keep []byte
		if i > 0 {
			keep = make([]byte, lv.Blocks*hbs)
		}
		buf := make([]byte, min(chunk, lv.Blocks)*hbs)
		for first := int64(0); first < lv.Blocks; first += chunk {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(chunk, lv.Blocks-first)
			b := buf[:n*hbs]
			if keep != nil {
				b = keep[first*hbs : (first+n)*hbs]
			}
			off := lv.Offset + first*hbs
			if _, err := hash.ReadAt(b, off); err != nil {
				return fmt.Errorf("read level %d blocks %d-%d at %d: %w", i, first, first+n-1, off, eofIsUnexpected(err))
			}
			for j := first; j < first+n; j++ {
				block := b[(j-first)*hbs : (j-first+1)*hbs]
				bad := func(detail string) error {
					return &MismatchError{Level: i, Block: j, Offset: lv.Offset + j*hbs, Detail: detail}
				}
				entries := min(per, t.children(i)-j*per)
				for e := range entries {
					if !allZero(block[e*stride+ds : (e+1)*stride]) {
						return bad(fmt.Sprintf("padding after entry %d is not zero", e))
					}
				}
				if !allZero(block[entries*stride:]) {
					return bad("unused space is not zero")
				}
				h.sum(sum, block)
				if i == len(t.Levels)-1 {
					if !bytes.Equal(sum, root) {
						return bad("digest differs from the root hash")
					}
					continue
				}
				pos := j/per*hbs + j%per*stride
				if !bytes.Equal(sum, up[pos:pos+ds]) {
					return bad(fmt.Sprintf("digest differs from its entry in level %d", i+1))
				}
			}
		}
		up = keep
	}
	return nil
}

// verifyData checks every data block against level 0, in parallel, and
// reports the lowest one that is wrong.
func (t *Tree) verifyData(ctx context.Context, data, hash io.ReaderAt, o options) error {
	g := t.Params.geometry()
	hbs, per := int64(t.Params.HashBlockSize), int64(g.perBlock)
	bt := t.bottom()
	var bad atomic.Int64
	bad.Store(math.MaxInt64)
	err := forEachBatch(ctx, o.workers, bt.batches(), t.newWorker(bt.batch), func(ctx context.Context, w *worker, b int64) error {
		first := b * bt.batch
		if first*per >= bad.Load() {
			return nil
		}
		n := min(bt.batch, bt.blocks-first)
		want := w.out[:n*hbs]
		off := t.Levels[0].Offset + first*hbs
		if _, err := hash.ReadAt(want, off); err != nil {
			return fmt.Errorf("read level 0 blocks %d-%d at %d: %w", first, first+n-1, off, eofIsUnexpected(err))
		}
		blk, err := t.hashData(ctx, w, data, first*per, min((first+n)*per, t.DataBlocks), o, want)
		if err != nil {
			return err
		}
		for cur := bad.Load(); blk >= 0 && blk < cur; cur = bad.Load() {
			if bad.CompareAndSwap(cur, blk) {
				break
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if blk := bad.Load(); blk != math.MaxInt64 {
		return &MismatchError{Level: DataLevel, Block: blk, Offset: blk * int64(t.Params.DataBlockSize),
			Detail: "digest differs from its entry in level 0"}
	}
	return nil
}
