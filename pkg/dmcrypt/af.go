package dmcrypt

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
)

// hashByName returns the hash LUKS names name, or an error wrapping
// ErrUnsupported.
func hashByName(name string) (func() hash.Hash, error) {
	switch name {
	case "sha1":
		return sha1.New, nil
	case "sha224":
		return sha256.New224, nil
	case "sha256":
		return sha256.New, nil
	case "sha384":
		return sha512.New384, nil
	case "sha512":
		return sha512.New, nil
	}
	return nil, fmt.Errorf("%w: hash %q (only sha1, sha224, sha256, sha384, sha512)", ErrUnsupported, name)
}

// afMerge recovers a key of len(dst) bytes from its anti-forensic split in
// src (stripes copies), as LUKS's AF_merge: XOR each stripe but the last
// into a buffer, diffusing it after each, then XOR in the last.
func afMerge(dst, src []byte, stripes int, h func() hash.Hash) {
	n := len(dst)
	buf := make([]byte, n)
	defer clear(buf)
	for i := 0; i < stripes-1; i++ {
		subtle.XORBytes(buf, buf, src[i*n:(i+1)*n])
		diffuse(buf, h)
	}
	subtle.XORBytes(dst, buf, src[(stripes-1)*n:stripes*n])
}

// diffuse replaces each digest-sized block i of b (the last may be short)
// with the hash of the big-endian 32-bit i followed by the block, cut to
// the block's length.
func diffuse(b []byte, h func() hash.Hash) {
	d := h()
	ds := d.Size()
	var iv [4]byte
	sum := make([]byte, 0, ds)
	for i := 0; i*ds < len(b); i++ {
		blk := b[i*ds : min((i+1)*ds, len(b))]
		d.Reset()
		binary.BigEndian.PutUint32(iv[:], uint32(i))
		d.Write(iv[:])
		d.Write(blk)
		sum = d.Sum(sum[:0])
		copy(blk, sum)
	}
	clear(sum[:ds])
}
