package verity

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
)

// SuperblockSize is the size of veritysetup's on-disk superblock.
const SuperblockSize = 512

// ErrBadSuperblock is wrapped by every error about a malformed superblock.
var ErrBadSuperblock = errors.New("bad verity superblock")

// The superblock's layout (cryptsetup's struct verity_sb), little-endian.
const (
	sbMagic        = "verity\x00\x00"
	sbVersion      = 1
	offVersion     = 8
	offHashType    = 12
	offUUID        = 16
	offAlgorithm   = 32
	algorithmSize  = 32
	offDataBlkSize = 64
	offHashBlkSize = 68
	offDataBlocks  = 72
	offSaltSize    = 80
	offSalt        = 88 // after 6 bytes of padding; 168 more follow the salt
)

// Superblock is veritysetup's header at the start of a hash area: the
// parameters needed to find and check the tree, but not the root hash.
// Its on-disk superblock version is always 1.
type Superblock struct {
	UUID UUID
	// Params are the tree's; Params.Version is the superblock's hash_type.
	Params     Params
	DataBlocks uint64
}

// MarshalBinary encodes sb as the 512 bytes veritysetup writes.
func (sb *Superblock) MarshalBinary() ([]byte, error) {
	p := sb.Params.withDefaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if sb.DataBlocks == 0 || sb.DataBlocks > math.MaxInt64/uint64(p.DataBlockSize) {
		return nil, fmt.Errorf("%w: %d data blocks", ErrBadParams, sb.DataBlocks)
	}
	b := make([]byte, SuperblockSize)
	le := binary.LittleEndian
	copy(b, sbMagic)
	le.PutUint32(b[offVersion:], sbVersion)
	le.PutUint32(b[offHashType:], p.Version)
	copy(b[offUUID:], sb.UUID[:])
	copy(b[offAlgorithm:offAlgorithm+algorithmSize], p.HashAlg)
	le.PutUint32(b[offDataBlkSize:], p.DataBlockSize)
	le.PutUint32(b[offHashBlkSize:], p.HashBlockSize)
	le.PutUint64(b[offDataBlocks:], sb.DataBlocks)
	le.PutUint16(b[offSaltSize:], uint16(len(p.Salt)))
	copy(b[offSalt:], p.Salt)
	return b, nil
}

// ReadSuperblock reads and checks the 512-byte superblock at the start of
// r. It accepts only what veritysetup writes: the magic, superblock version
// 1, format 0 or 1, a hash algorithm this package computes, valid block
// sizes, at least one data block, a salt of at most 256 bytes, and zeros in
// every unused byte. Any other input is an error wrapping ErrBadSuperblock.
func ReadSuperblock(r io.Reader) (*Superblock, error) {
	b := make([]byte, SuperblockSize)
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%w: %w", ErrBadSuperblock, err)
	}
	return parseSuperblock(b)
}

func parseSuperblock(b []byte) (*Superblock, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadSuperblock, fmt.Sprintf(format, args...))
	}
	le := binary.LittleEndian
	if string(b[:len(sbMagic)]) != sbMagic {
		return nil, bad("no verity magic")
	}
	if v := le.Uint32(b[offVersion:]); v != sbVersion {
		return nil, bad("superblock version %d, want %d", v, sbVersion)
	}
	sb := &Superblock{}
	copy(sb.UUID[:], b[offUUID:])
	p := &sb.Params
	p.Version = le.Uint32(b[offHashType:])
	if p.Version > 1 {
		return nil, bad("hash type %d, want 0 or 1", p.Version)
	}
	alg := b[offAlgorithm : offAlgorithm+algorithmSize]
	name, rest, _ := bytes.Cut(alg, []byte{0})
	if !allZero(rest) {
		return nil, bad("bytes after the hash algorithm's name are not zero")
	}
	p.HashAlg = string(name)
	if _, _, ok := algorithm(p.HashAlg); !ok {
		return nil, bad("hash algorithm %q not supported", p.HashAlg)
	}
	p.DataBlockSize = le.Uint32(b[offDataBlkSize:])
	p.HashBlockSize = le.Uint32(b[offHashBlkSize:])
	if !blockSizeOK(p.DataBlockSize) || !blockSizeOK(p.HashBlockSize) {
		return nil, bad("block sizes %d and %d: want powers of two from %d to %d", p.DataBlockSize, p.HashBlockSize, MinBlockSize, MaxBlockSize)
	}
	sb.DataBlocks = le.Uint64(b[offDataBlocks:])
	if sb.DataBlocks == 0 || sb.DataBlocks > math.MaxInt64/uint64(p.DataBlockSize) {
		return nil, bad("%d data blocks", sb.DataBlocks)
	}
	saltSize := int(le.Uint16(b[offSaltSize:]))
	if saltSize > MaxSaltSize {
		return nil, bad("salt size %d, at most %d allowed", saltSize, MaxSaltSize)
	}
	if saltSize > 0 {
		p.Salt = bytes.Clone(b[offSalt : offSalt+saltSize])
	}
	if !allZero(b[offSaltSize+2:offSalt]) || !allZero(b[offSalt+saltSize:]) {
		return nil, bad("padding is not zero")
	}
	return sb, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// UUID is a superblock's 16-byte UUID.
type UUID [16]byte

// NewUUID returns a random (version 4) UUID, as veritysetup makes one when
// it is given none.
func NewUUID() (UUID, error) {
	var u UUID
	if _, err := rand.Read(u[:]); err != nil {
		return u, fmt.Errorf("random UUID: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u, nil
}

// ParseUUID parses the 36-character form, xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx,
// as veritysetup --uuid takes it.
func ParseUUID(s string) (UUID, error) {
	var u UUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("UUID %q: want the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	h := s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, fmt.Errorf("UUID %q: %w", s, err)
	}
	return u, nil
}

// String formats u in lower case, as veritysetup prints it.
func (u UUID) String() string {
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
