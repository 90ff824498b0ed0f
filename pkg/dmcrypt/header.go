// Package dmcrypt opens encrypted block devices with the kernel's dm-crypt
// target: LUKS2 volumes made by `cryptsetup luksFormat`, and raw dm-crypt
// mappings given a cipher and a key. It needs neither cryptsetup nor
// libdevmapper at run time.
//
// The LUKS2 side follows the LUKS2 On-Disk Format Specification: ReadHeader
// parses and checks the two binary headers and their JSON metadata (bytes
// from a device are untrusted: every offset and size is bounded by the
// device, and the key-derivation costs by Limits); Header.Unlock derives the
// volume key from a passphrase or key file (PBKDF2, Argon2i, Argon2id,
// anti-forensic merge, digest check); Table builds the dm-crypt table line;
// Open and OpenRaw create the mapping through a dm.Control, Close removes
// it. EraseKeyslots crypto-erases a volume by destroying its headers and key
// material.
package dmcrypt

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Errors callers branch on.
var (
	// ErrNotLUKS is returned when a device holds no LUKS2 header: neither
	// copy has the LUKS magic, as after EraseKeyslots.
	ErrNotLUKS = errors.New("not a LUKS2 device")
	// ErrBadHeader is wrapped by errors about headers that carry the magic
	// but are damaged or inconsistent: bad checksums, malformed JSON, areas
	// outside the device.
	ErrBadHeader = errors.New("bad LUKS2 header")
	// ErrUnsupported is wrapped by errors about valid volumes this package
	// cannot open: LUKS1, unknown ciphers, KDFs or hashes, authenticated
	// encryption, reencryption in progress.
	ErrUnsupported = errors.New("unsupported LUKS2 feature")
	// ErrWrongPassphrase is returned by Unlock and Open when no keyslot
	// opens with the passphrase.
	ErrWrongPassphrase = errors.New("no keyslot opens with this passphrase")
	// ErrLimit is wrapped by errors about key-derivation costs beyond
	// Limits, which a hostile header could use to exhaust memory or time.
	ErrLimit = errors.New("LUKS2 key derivation exceeds limit")
)

// Binary header layout, all integers big-endian.
const (
	binHeaderSize = 4096
	magicLen      = 6
	labelLen      = 48
	csumAlgLen    = 32
	saltLen       = 64
	uuidLen       = 40
	subsystemLen  = 48
	csumLen       = 64

	offMagic     = 0
	offVersion   = 6
	offHdrSize   = 8
	offSeqID     = 16
	offLabel     = 24
	offCsumAlg   = 72
	offSalt      = 104
	offUUID      = 168
	offSubsystem = 208
	offHdrOffset = 256
	offCsum      = 448
)

var (
	magicPrimary   = []byte("LUKS\xba\xbe")
	magicSecondary = []byte("SKUL\xba\xbe")
)

// secondaryOffsets are the places a secondary header may be: the allowed
// header sizes, 16 KiB to 4 MiB.
var secondaryOffsets = [...]int64{
	0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
}

// validHdrSize reports whether n is one of the header sizes the
// specification allows (binary header plus JSON area).
func validHdrSize(n uint64) bool {
	for _, o := range secondaryOffsets {
		if n == uint64(o) {
			return true
		}
	}
	return false
}

// Header is a LUKS2 header copy that passed every check: its binary
// fields and its JSON metadata.
type Header struct {
	Version uint16
	// Size is hdr_size: the binary header and the JSON area, in bytes.
	Size      uint64
	SeqID     uint64
	Label     string
	Checksum  string // csum_alg, e.g. "sha256"
	Salt      []byte // 64 bytes
	UUID      string
	Subsystem string
	// Offset is where this copy lies on the device: 0 for the primary,
	// Size for the secondary.
	Offset uint64
	// Metadata is the checked JSON metadata.
	Metadata Metadata
}

// ReadHeader reads the LUKS2 header of a device size bytes long: both
// copies, the valid one with the higher seqid (the primary on a tie). A
// device without the LUKS magic gives an error wrapping ErrNotLUKS; one
// whose copies are both damaged, an error wrapping ErrBadHeader.
func ReadHeader(dev io.ReaderAt, size int64) (*Header, error) {
	primary, perr := readCopy(dev, size, 0, magicPrimary)
	var secondary *Header
	var serr error
	if perr == nil {
		secondary, serr = readCopy(dev, size, int64(primary.Size), magicSecondary)
	} else {
		// The primary cannot tell us where the secondary is: look in
		// every place it may be.
		serr = fmt.Errorf("%w: no secondary header", ErrNotLUKS)
		for _, off := range secondaryOffsets {
			h, err := readCopy(dev, size, off, magicSecondary)
			if err == nil {
				secondary, serr = h, nil
				break
			}
			if !errors.Is(err, ErrNotLUKS) {
				serr = err
			}
		}
	}
	switch {
	case perr == nil && serr == nil:
		if secondary.SeqID > primary.SeqID {
			return secondary, nil
		}
		return primary, nil
	case perr == nil:
		return primary, nil
	case serr == nil:
		return secondary, nil
	}
	if errors.Is(perr, ErrNotLUKS) && errors.Is(serr, ErrNotLUKS) {
		return nil, perr
	}
	if !errors.Is(perr, ErrNotLUKS) {
		return nil, fmt.Errorf("primary header: %w", perr)
	}
	return nil, fmt.Errorf("secondary header: %w", serr)
}

// readCopy reads and checks the header copy at off.
func readCopy(dev io.ReaderAt, size, off int64, magic []byte) (*Header, error) {
	if off < 0 || size < off+binHeaderSize {
		return nil, fmt.Errorf("%w: device of %d bytes has no room for a header at %d", ErrNotLUKS, size, off)
	}
	bin := make([]byte, binHeaderSize)
	if _, err := dev.ReadAt(bin, off); err != nil {
		return nil, fmt.Errorf("read header at %d: %w", off, err)
	}
	if !bytes.Equal(bin[offMagic:offMagic+magicLen], magic) {
		return nil, fmt.Errorf("%w: no LUKS magic at %d", ErrNotLUKS, off)
	}
	h := &Header{
		Version:   binary.BigEndian.Uint16(bin[offVersion:]),
		Size:      binary.BigEndian.Uint64(bin[offHdrSize:]),
		SeqID:     binary.BigEndian.Uint64(bin[offSeqID:]),
		Label:     cstring(bin[offLabel : offLabel+labelLen]),
		Checksum:  cstring(bin[offCsumAlg : offCsumAlg+csumAlgLen]),
		Salt:      bytes.Clone(bin[offSalt : offSalt+saltLen]),
		UUID:      cstring(bin[offUUID : offUUID+uuidLen]),
		Subsystem: cstring(bin[offSubsystem : offSubsystem+subsystemLen]),
		Offset:    binary.BigEndian.Uint64(bin[offHdrOffset:]),
	}
	if h.Version == 1 {
		return nil, fmt.Errorf("%w: LUKS1 header at %d", ErrUnsupported, off)
	}
	if h.Version != 2 {
		return nil, fmt.Errorf("%w: version %d at %d", ErrBadHeader, h.Version, off)
	}
	if !validHdrSize(h.Size) {
		return nil, fmt.Errorf("%w: hdr_size %d at %d is not a power of two from 16 KiB to 4 MiB", ErrBadHeader, h.Size, off)
	}
	if h.Offset != uint64(off) {
		return nil, fmt.Errorf("%w: header at %d says it is at %d", ErrBadHeader, off, h.Offset)
	}
	if uint64(size-off) < h.Size {
		return nil, fmt.Errorf("%w: header at %d of %d bytes runs past the device's %d bytes", ErrBadHeader, off, h.Size, size)
	}
	newHash := checksumHash(h.Checksum)
	if newHash == nil {
		return nil, fmt.Errorf("%w: header checksum %q", ErrUnsupported, h.Checksum)
	}
	area := make([]byte, h.Size)
	copy(area, bin)
	if _, err := dev.ReadAt(area[binHeaderSize:], off+binHeaderSize); err != nil {
		return nil, fmt.Errorf("read JSON area at %d: %w", off+binHeaderSize, err)
	}
	d := newHash()
	want := bytes.Clone(area[offCsum : offCsum+d.Size()])
	clear(area[offCsum : offCsum+csumLen])
	d.Write(area)
	if subtle.ConstantTimeCompare(d.Sum(nil), want) != 1 {
		return nil, fmt.Errorf("%w: %s checksum mismatch in header at %d", ErrBadHeader, h.Checksum, off)
	}
	js := area[binHeaderSize:]
	if i := bytes.IndexByte(js, 0); i >= 0 {
		js = js[:i]
	}
	md, err := parseMetadata(js, h.Size, size)
	if err != nil {
		return nil, fmt.Errorf("header at %d: %w", off, err)
	}
	h.Metadata = *md
	return h, nil
}

// checksumHash returns the hash a header checksum names, nil if unknown.
func checksumHash(name string) func() hash.Hash {
	switch name {
	case "sha1":
		return sha1.New
	case "sha256":
		return sha256.New
	case "sha512":
		return sha512.New
	}
	return nil
}

// cstring returns b up to its first NUL.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
