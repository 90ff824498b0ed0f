// Package chunk is Lifeboat's content-defined chunking engine and its casync
// formats: the buzhash chunker with casync's exact cut rule, chunk IDs
// (SHA-512/256 by default, SHA-256 as an option), the .caibx blob index, and
// the zstd-compressed .cacnk chunk encoding.
//
// For the same input and parameters, Chunk and the index writer produce
// output byte-identical to `casync make`.
package chunk

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
)

// ID identifies a chunk by the digest of its uncompressed content.
type ID [32]byte

// String returns the ID as lower-case hex, as casync names chunk files.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID parses the 64-digit hex form of an ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("chunk id %q: want %d hex digits, got %d", s, 2*len(id), len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("chunk id %q: %w", s, err)
	}
	return id, nil
}

// Digest is the hash function that makes chunk IDs.
type Digest uint8

const (
	// SHA512256 is SHA-512/256, casync's default.
	SHA512256 Digest = iota
	// SHA256 is SHA-256 (casync --digest=sha256).
	SHA256
)

// ParseDigest accepts casync's digest names, "sha512-256" and "sha256".
func ParseDigest(s string) (Digest, error) {
	switch s {
	case "sha512-256", "sha512/256":
		return SHA512256, nil
	case "sha256":
		return SHA256, nil
	}
	return 0, fmt.Errorf("unknown digest %q (want sha512-256 or sha256)", s)
}

func (d Digest) String() string {
	if d == SHA256 {
		return "sha256"
	}
	return "sha512-256"
}

// New returns a hash.Hash computing d.
func (d Digest) New() hash.Hash {
	if d == SHA256 {
		return sha256.New()
	}
	return sha512.New512_256()
}

// Sum returns the ID of data.
func (d Digest) Sum(data []byte) ID {
	if d == SHA256 {
		return sha256.Sum256(data)
	}
	return sha512.Sum512_256(data)
}
