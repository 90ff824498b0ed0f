// Package verity builds and checks dm-verity hash trees, byte for byte as
// `veritysetup format` writes them: the hash levels, their layout on the
// hash device, and veritysetup's on-disk superblock.
//
// Build hashes an image and writes its tree; Verify recomputes a tree and
// checks it against a root hash, naming the first block that disagrees.
// Both stream the data through a few buffers per core, so memory does not
// grow with the image beyond the upper levels of the tree (0.006% of the
// data at the defaults). The kernel side, the dm-verity table that
// activates a tree, belongs in this package too.
package verity

import (
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"math/bits"
)

// Limits veritysetup places on the parameters.
const (
	MinBlockSize = 512
	MaxBlockSize = 512 << 10
	MaxSaltSize  = 256
	// DefaultSaltSize is the size of the random salt veritysetup makes
	// when none is given.
	DefaultSaltSize = 32
)

// ErrBadParams is wrapped by every error about parameters veritysetup
// would refuse.
var ErrBadParams = errors.New("bad verity parameters")

// Params are a tree's parameters, veritysetup format's flags.
//
// The zero value is not the default: its Version 0 is the Chrome OS format.
// Start from DefaultParams.
type Params struct {
	// HashAlg is the digest: "sha256" (the default when empty), "sha512",
	// "sha1", "sha224" or "sha384".
	HashAlg string
	// DataBlockSize and HashBlockSize are powers of two from 512 bytes to
	// 512 KiB; zero means 4096. The kernel cannot map data blocks larger
	// than the page size.
	DataBlockSize, HashBlockSize uint32
	// Salt is hashed with every block, at most 256 bytes. Nil is no salt
	// (veritysetup --salt=-); veritysetup's default is NewSalt's 32 random
	// bytes, which the caller chooses to use.
	Salt []byte
	// Version is the hash format, veritysetup's --format and the
	// superblock's hash_type: 1 (the default) hashes salt then block and
	// pads each digest to a power of two; 0 (Chrome OS) hashes block then
	// salt and packs digests without padding.
	Version uint32
}

// DefaultParams returns veritysetup format's defaults, without a salt.
func DefaultParams() Params {
	return Params{HashAlg: "sha256", DataBlockSize: 4096, HashBlockSize: 4096, Version: 1}
}

// NewSalt returns DefaultSaltSize random bytes, veritysetup's default salt.
func NewSalt() ([]byte, error) {
	b := make([]byte, DefaultSaltSize)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("random salt: %w", err)
	}
	return b, nil
}

// withDefaults fills in empty algorithm and block sizes. Version is taken as
// given: 0 is a valid format.
func (p Params) withDefaults() Params {
	if p.HashAlg == "" {
		p.HashAlg = "sha256"
	}
	if p.DataBlockSize == 0 {
		p.DataBlockSize = 4096
	}
	if p.HashBlockSize == 0 {
		p.HashBlockSize = 4096
	}
	return p
}

// Validate reports whether veritysetup would accept p, after filling in
// the defaults for empty fields.
func (p Params) Validate() error {
	p = p.withDefaults()
	if _, _, ok := algorithm(p.HashAlg); !ok {
		return fmt.Errorf("%w: hash algorithm %q not supported (want sha256, sha512, sha1, sha224 or sha384)", ErrBadParams, p.HashAlg)
	}
	if !blockSizeOK(p.DataBlockSize) {
		return fmt.Errorf("%w: data block size %d: want a power of two from %d to %d", ErrBadParams, p.DataBlockSize, MinBlockSize, MaxBlockSize)
	}
	if !blockSizeOK(p.HashBlockSize) {
		return fmt.Errorf("%w: hash block size %d: want a power of two from %d to %d", ErrBadParams, p.HashBlockSize, MinBlockSize, MaxBlockSize)
	}
	if len(p.Salt) > MaxSaltSize {
		return fmt.Errorf("%w: salt is %d bytes, at most %d allowed", ErrBadParams, len(p.Salt), MaxSaltSize)
	}
	if p.Version > 1 {
		return fmt.Errorf("%w: format %d: want 1, or 0 for Chrome OS", ErrBadParams, p.Version)
	}
	return nil
}

func blockSizeOK(n uint32) bool {
	return n >= MinBlockSize && n <= MaxBlockSize && n&(n-1) == 0
}

// algorithm returns the constructor and digest size of a hash veritysetup
// names name.
func algorithm(name string) (func() hash.Hash, int, bool) {
	switch name {
	case "sha1":
		return sha1.New, sha1.Size, true
	case "sha224":
		return sha256.New224, sha256.Size224, true
	case "sha256":
		return sha256.New, sha256.Size, true
	case "sha384":
		return sha512.New384, sha512.Size384, true
	case "sha512":
		return sha512.New, sha512.Size, true
	}
	return nil, 0, false
}

// geometry is how digests sit in hash blocks, derived from valid Params.
type geometry struct {
	digestSize int // bytes of a digest
	stride     int // bytes a digest takes in a hash block: padded to a power of two in format 1
	perBlock   int // digests per hash block: a power of two, as veritysetup and the kernel use
	perBits    uint
	newHash    func() hash.Hash
}

func (p Params) geometry() geometry {
	newHash, size, _ := algorithm(p.HashAlg)
	g := geometry{digestSize: size, stride: size, newHash: newHash}
	if p.Version == 1 {
		g.stride = 1 << bits.Len(uint(size-1))
	}
	// veritysetup: 1 << floor(log2(hash block / digest size)), whatever the
	// format; with format 0 and a digest that is not a power of two, the
	// tail of every hash block is left zero.
	g.perBits = uint(bits.Len(uint(int(p.HashBlockSize)/size)) - 1)
	g.perBlock = 1 << g.perBits
	return g
}

// hasher computes the salted digest of one block.
type hasher struct {
	h         hash.Hash
	salt      []byte
	saltFirst bool
}

func (p Params) hasher() *hasher {
	return &hasher{h: p.geometry().newHash(), salt: p.Salt, saltFirst: p.Version == 1}
}

// sum writes the digest of block into dst, which must have room for it.
func (x *hasher) sum(dst, block []byte) {
	x.h.Reset()
	if x.saltFirst {
		x.h.Write(x.salt)
	}
	x.h.Write(block)
	if !x.saltFirst {
		x.h.Write(x.salt)
	}
	x.h.Sum(dst[:0])
}
