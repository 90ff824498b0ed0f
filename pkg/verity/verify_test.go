package verity

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// TestVerifyFindsCorruption corrupts one place of a built tree or its data
// at a time and checks that Verify names it.
func TestVerifyFindsCorruption(t *testing.T) {
	p := Params{HashAlg: "sha1", HashBlockSize: 512, Salt: []byte("salt"), Version: 1}
	// 2000 blocks, 16 digests a block: levels of 125, 8 and 1 blocks.
	data := testData(7, 2000*4096)
	hash := &memFile{}
	tree, err := Build(context.Background(), bytes.NewReader(data), int64(len(data)), hash, 0, p, WithUUID(UUID{9}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tree.Levels); n != 3 {
		t.Fatalf("tree has %d levels, want 3", n)
	}
	l0, l1, top := tree.Levels[0].Offset, tree.Levels[1].Offset, tree.Levels[2].Offset
	flip := func(b []byte, off int64) []byte { b = bytes.Clone(b); b[off] ^= 0x80; return b }
	for _, tc := range []struct {
		name       string
		data, hash []byte
		root       []byte
		level      int // -2: an error that is not a *MismatchError
		block, off int64
	}{
		{name: "data block 1500", data: flip(data, 1500*4096+7), level: DataLevel, block: 1500, off: 1500 * 4096},
		{name: "data block 3", data: flip(flip(data, 1999*4096), 3*4096+4095), level: DataLevel, block: 3, off: 3 * 4096},
		// Entry 33 of level 0 sits in its third block.
		{name: "level 0 entry", hash: flip(hash.b, l0+2*512+1*32+3), level: 0, block: 2, off: l0 + 2*512},
		{name: "level 0 digest padding", hash: flip(hash.b, l0+5*32-1), level: 0, block: 0, off: l0},
		{name: "level 0 unused tail", hash: flip(hash.b, l0+124*512+511), level: 0, block: 124, off: l0 + 124*512},
		{name: "level 1", hash: flip(hash.b, l1+7*512), level: 1, block: 7, off: l1 + 7*512},
		{name: "top block", hash: flip(hash.b, top+2), level: 2, block: 0, off: top},
		{name: "root", root: flip(tree.RootHash, 0), level: 2, block: 0, off: top},
		{name: "superblock salt", hash: flip(hash.b, 88), level: -2},
		{name: "superblock magic", hash: flip(hash.b, 0), level: -2},
	} {
		d, h, r := data, hash.b, tree.RootHash
		if tc.data != nil {
			d = tc.data
		}
		if tc.hash != nil {
			h = tc.hash
		}
		if tc.root != nil {
			r = tc.root
		}
		err := Verify(context.Background(), bytes.NewReader(d), int64(len(d)), bytes.NewReader(h), 0, p, r, WithWorkers(3))
		if tc.level == -2 {
			if err == nil || errors.As(err, new(*MismatchError)) {
				t.Errorf("Verify(%s) = %v, want a superblock error", tc.name, err)
			}
			continue
		}
		var me *MismatchError
		if !errors.As(err, &me) || !errors.Is(err, ErrMismatch) {
			t.Errorf("Verify(%s) = %v, want a *MismatchError", tc.name, err)
			continue
		}
		if me.Level != tc.level || me.Block != tc.block || me.Offset != tc.off {
			t.Errorf("Verify(%s) = level %d block %d offset %d (%v), want %d %d %d", tc.name, me.Level, me.Block, me.Offset, err, tc.level, tc.block, tc.off)
		}
	}
	if err := Verify(context.Background(), bytes.NewReader(data), int64(len(data)), hash, 0, p, tree.RootHash); err != nil {
		t.Errorf("Verify(intact) = %v", err)
	}
	// A superblock for other parameters.
	q := p
	q.Salt = []byte("pepper")
	if err := Verify(context.Background(), bytes.NewReader(data), int64(len(data)), hash, 0, q, tree.RootHash); !errors.Is(err, ErrMismatch) {
		t.Errorf("Verify(other salt) = %v, want ErrMismatch", err)
	}
	if err := Verify(context.Background(), bytes.NewReader(data), int64(len(data))-4096, hash, 0, p, tree.RootHash); !errors.Is(err, ErrMismatch) {
		t.Errorf("Verify(fewer blocks) = %v, want ErrMismatch", err)
	}
	if err := Verify(context.Background(), bytes.NewReader(data), int64(len(data)), hash, 0, p, tree.RootHash[:4]); !errors.Is(err, ErrBadParams) {
		t.Errorf("Verify(short root) = %v, want ErrBadParams", err)
	}
}

func TestVerifyOneBlock(t *testing.T) {
	data := testData(3, 4096)
	hash := &memFile{}
	tree, err := Build(context.Background(), bytes.NewReader(data), 4096, hash, 0, DefaultParams(), WithoutSuperblock())
	if err != nil {
		t.Fatal(err)
	}
	if len(hash.b) != 0 || tree.HashSize != 0 {
		t.Errorf("Build(one block, no superblock) wrote %d bytes, HashSize %d, want 0", len(hash.b), tree.HashSize)
	}
	if err := Verify(context.Background(), bytes.NewReader(data), 4096, hash, 0, DefaultParams(), tree.RootHash, WithoutSuperblock()); err != nil {
		t.Errorf("Verify(one block) = %v", err)
	}
	data[0] ^= 1
	var me *MismatchError
	if err := Verify(context.Background(), bytes.NewReader(data), 4096, hash, 0, DefaultParams(), tree.RootHash, WithoutSuperblock()); !errors.As(err, &me) || me.Level != DataLevel {
		t.Errorf("Verify(one bad block) = %v, want a data block mismatch", err)
	}
}
