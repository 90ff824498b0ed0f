package dmcrypt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
)

// Bounds the format places on the metadata.
const (
	// MaxKeyslots is the number of keyslots LUKS2 allows (0-31).
	MaxKeyslots = 32
	// MaxKeySize is the largest key, in bytes, this package accepts.
	MaxKeySize = 512
	// MaxStripes is the anti-forensic stripe count LUKS uses; more is refused.
	MaxStripes = 4000
	// maxIDs bounds the segment and digest IDs.
	maxIDs = 32
)

// Metadata is the checked JSON metadata of a LUKS2 header. Tokens are not
// kept: this package does not use them.
type Metadata struct {
	Keyslots map[int]Keyslot
	Segments map[int]Segment
	Digests  map[int]Digest
	Config   Config
}

// Keyslot is one keyslot: where its encrypted, anti-forensically split copy
// of the volume key lies, and how its key is derived from a passphrase.
type Keyslot struct {
	Type    string // "luks2"; others (e.g. "reencrypt") are kept but never tried
	KeySize int    // bytes of the volume key it holds
	// Priority is 0 (ignore unless asked for), 1 (normal) or 2 (prefer).
	Priority int
	AF       AF
	Area     Area
	KDF      KDF
}

// AF is a keyslot's anti-forensic split.
type AF struct {
	Type    string // "luks1"
	Stripes int
	Hash    string
}

// Area is where a keyslot's material lies and how it is encrypted.
type Area struct {
	Type       string // "raw"
	Offset     uint64 // bytes from the start of the device
	Size       uint64 // bytes
	Encryption string // e.g. "aes-xts-plain64"
	KeySize    int    // bytes of the key the KDF derives
}

// KDF derives a keyslot's key from a passphrase.
type KDF struct {
	Type       string // "pbkdf2", "argon2i" or "argon2id"
	Hash       string // pbkdf2
	Iterations uint32 // pbkdf2
	Time       uint32 // argon2: passes
	Memory     uint32 // argon2: KiB
	CPUs       uint32 // argon2: lanes
	Salt       []byte
}

// Segment is a data segment: the encrypted area of the device and its
// cipher. OpenRaw takes one too, for dm-crypt without LUKS.
type Segment struct {
	Type string // "crypt"
	// Offset is where the data starts on the device, in bytes.
	Offset uint64
	// Size is the segment's size in bytes, unless Dynamic: then it runs to
	// the end of the device.
	Size    uint64
	Dynamic bool
	// IVTweak is added to the sector number (in 512-byte units) of the IV.
	IVTweak    uint64
	Encryption string // e.g. "aes-xts-plain64"
	// SectorSize is the encryption sector size: 512, 1024, 2048 or 4096.
	SectorSize int
	// Integrity is set when the segment uses authenticated encryption
	// (dm-integrity), which this package does not open.
	Integrity bool
	Flags     []string
}

// Digest checks candidate volume keys of the keyslots and segments it lists.
type Digest struct {
	Type       string // "pbkdf2"
	Keyslots   []int
	Segments   []int
	Hash       string
	Iterations uint32
	Salt       []byte
	Digest     []byte
}

// Config is the metadata's config section.
type Config struct {
	JSONSize     uint64
	KeyslotsSize uint64
	// Flags are persistent activation flags, e.g. "allow-discards".
	Flags []string
	// Requirements are mandatory requirements; a volume with any cannot be
	// opened by a tool that does not know them (e.g. "online-reencrypt").
	Requirements []string
}

// u64 is a 64-bit number, which LUKS2 writes as a JSON string of decimal
// digits.
type u64 uint64

func (n *u64) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("64-bit number %s is not a string", b)
	}
	if s == "" || s[0] < '0' || s[0] > '9' {
		return fmt.Errorf("bad number %q", s)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("bad number %q", s)
	}
	*n = u64(v)
	return nil
}

// The JSON as written; pointers tell missing fields from zero.
type (
	jsonMetadata struct {
		Keyslots map[string]jsonKeyslot `json:"keyslots"`
		Segments map[string]jsonSegment `json:"segments"`
		Digests  map[string]jsonDigest  `json:"digests"`
		Config   *jsonConfig            `json:"config"`
	}
	jsonKeyslot struct {
		Type     string    `json:"type"`
		KeySize  *int      `json:"key_size"`
		Priority *int      `json:"priority"`
		AF       *jsonAF   `json:"af"`
		Area     *jsonArea `json:"area"`
		KDF      *jsonKDF  `json:"kdf"`
	}
	jsonAF struct {
		Type    string `json:"type"`
		Stripes int    `json:"stripes"`
		Hash    string `json:"hash"`
	}
	jsonArea struct {
		Type       string `json:"type"`
		Offset     *u64   `json:"offset"`
		Size       *u64   `json:"size"`
		Encryption string `json:"encryption"`
		KeySize    int    `json:"key_size"`
	}
	jsonKDF struct {
		Type       string `json:"type"`
		Hash       string `json:"hash"`
		Iterations uint32 `json:"iterations"`
		Time       uint32 `json:"time"`
		Memory     uint32 `json:"memory"`
		CPUs       uint32 `json:"cpus"`
		Salt       []byte `json:"salt"`
	}
	jsonSegment struct {
		Type       string          `json:"type"`
		Offset     *u64            `json:"offset"`
		Size       *string         `json:"size"`
		IVTweak    *u64            `json:"iv_tweak"`
		Encryption string          `json:"encryption"`
		SectorSize int             `json:"sector_size"`
		Integrity  json.RawMessage `json:"integrity"`
		Flags      []string        `json:"flags"`
	}
	jsonDigest struct {
		Type       string   `json:"type"`
		Keyslots   []string `json:"keyslots"`
		Segments   []string `json:"segments"`
		Hash       string   `json:"hash"`
		Iterations uint32   `json:"iterations"`
		Salt       []byte   `json:"salt"`
		Digest     []byte   `json:"digest"`
	}
	jsonConfig struct {
		JSONSize     *u64     `json:"json_size"`
		KeyslotsSize *u64     `json:"keyslots_size"`
		Flags        []string `json:"flags"`
		Requirements *struct {
			Mandatory []string `json:"mandatory"`
		} `json:"requirements"`
	}
)

// parseMetadata parses and checks the JSON metadata of a header of hdrSize
// bytes on a device of devSize bytes.
func parseMetadata(js []byte, hdrSize uint64, devSize int64) (*Metadata, error) {
	if devSize < 0 {
		return nil, fmt.Errorf("%w: device size %d", ErrBadHeader, devSize)
	}
	var j jsonMetadata
	d := json.NewDecoder(bytes.NewReader(js))
	if err := d.Decode(&j); err != nil {
		return nil, fmt.Errorf("%w: JSON metadata: %w", ErrBadHeader, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%w: JSON metadata: data after the object", ErrBadHeader)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadHeader, fmt.Sprintf(format, a...))
	}
	if j.Config == nil || j.Config.JSONSize == nil || j.Config.KeyslotsSize == nil {
		return nil, bad("config: json_size and keyslots_size are required")
	}
	if j.Keyslots == nil || j.Segments == nil || j.Digests == nil {
		return nil, bad("keyslots, segments and digests are required")
	}
	md := &Metadata{
		Keyslots: map[int]Keyslot{},
		Segments: map[int]Segment{},
		Digests:  map[int]Digest{},
		Config: Config{
			JSONSize:     uint64(*j.Config.JSONSize),
			KeyslotsSize: uint64(*j.Config.KeyslotsSize),
			Flags:        j.Config.Flags,
		},
	}
	if r := j.Config.Requirements; r != nil {
		md.Config.Requirements = r.Mandatory
	}
	c := md.Config
	if c.JSONSize != hdrSize-binHeaderSize {
		return nil, bad("config: json_size %d, want %d for hdr_size %d", c.JSONSize, hdrSize-binHeaderSize, hdrSize)
	}
	if c.KeyslotsSize%4096 != 0 {
		return nil, bad("config: keyslots_size %d is not a multiple of 4096", c.KeyslotsSize)
	}
	// The metadata (two headers) and the keyslots area, from the start of
	// the device.
	metaEnd := 2 * hdrSize
	if c.KeyslotsSize > uint64(devSize) || metaEnd+c.KeyslotsSize > uint64(devSize) {
		return nil, bad("config: keyslots area of %d bytes from %d runs past the device's %d bytes", c.KeyslotsSize, metaEnd, devSize)
	}
	areaEnd := metaEnd + c.KeyslotsSize

	for id, s := range j.Keyslots {
		n, err := parseID(id, MaxKeyslots)
		if err != nil {
			return nil, bad("keyslot %q: %v", id, err)
		}
		k, err := s.check(metaEnd, areaEnd)
		if err != nil {
			return nil, bad("keyslot %d: %v", n, err)
		}
		md.Keyslots[n] = k
	}
	for id, s := range j.Segments {
		n, err := parseID(id, maxIDs)
		if err != nil {
			return nil, bad("segment %q: %v", id, err)
		}
		seg, err := s.check()
		if err != nil {
			return nil, bad("segment %d: %v", n, err)
		}
		if err := seg.checkBounds(areaEnd, devSize); err != nil {
			return nil, bad("segment %d: %v", n, err)
		}
		md.Segments[n] = seg
	}
	for id, s := range j.Digests {
		n, err := parseID(id, maxIDs)
		if err != nil {
			return nil, bad("digest %q: %v", id, err)
		}
		dg, err := s.check(md)
		if err != nil {
			return nil, bad("digest %d: %v", n, err)
		}
		md.Digests[n] = dg
	}
	return md, nil
}

// parseID parses an object key: a decimal number below max.
func parseID(s string, max int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n >= max || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("ID is not a number from 0 to %d", max-1)
	}
	return n, nil
}

func (s jsonKeyslot) check(areaStart, areaEnd uint64) (Keyslot, error) {
	if s.Type == "" || s.KeySize == nil || s.Area == nil {
		return Keyslot{}, fmt.Errorf("type, key_size and area are required")
	}
	k := Keyslot{Type: s.Type, KeySize: *s.KeySize, Priority: 1}
	if s.Priority != nil {
		k.Priority = *s.Priority
		if k.Priority < 0 || k.Priority > 2 {
			return k, fmt.Errorf("priority %d, want 0, 1 or 2", k.Priority)
		}
	}
	a := s.Area
	if a.Offset == nil || a.Size == nil {
		return k, fmt.Errorf("area: offset and size are required")
	}
	k.Area = Area{Type: a.Type, Offset: uint64(*a.Offset), Size: uint64(*a.Size), Encryption: a.Encryption, KeySize: a.KeySize}
	if k.Area.Offset < areaStart || k.Area.Size > areaEnd || k.Area.Offset > areaEnd-k.Area.Size {
		return k, fmt.Errorf("area of %d bytes at %d lies outside the keyslots area [%d, %d)", k.Area.Size, k.Area.Offset, areaStart, areaEnd)
	}
	if k.Area.Offset%512 != 0 || k.Area.Size%512 != 0 {
		return k, fmt.Errorf("area of %d bytes at %d is not in 512-byte sectors", k.Area.Size, k.Area.Offset)
	}
	if k.Type != "luks2" {
		return k, nil // kept, checked no further, never tried
	}
	if k.KeySize <= 0 || k.KeySize > MaxKeySize {
		return k, fmt.Errorf("key_size %d, want 1 to %d", k.KeySize, MaxKeySize)
	}
	if a.Type != "raw" {
		return k, fmt.Errorf("area type %q, want raw", a.Type)
	}
	if a.KeySize <= 0 || a.KeySize > MaxKeySize {
		return k, fmt.Errorf("area key_size %d, want 1 to %d", a.KeySize, MaxKeySize)
	}
	if a.Encryption == "" {
		return k, fmt.Errorf("area: encryption is required")
	}
	if s.AF == nil || s.KDF == nil {
		return k, fmt.Errorf("af and kdf are required")
	}
	k.AF = AF(*s.AF)
	if k.AF.Type != "luks1" {
		return k, fmt.Errorf("af type %q, want luks1", k.AF.Type)
	}
	if k.AF.Stripes < 1 || k.AF.Stripes > MaxStripes {
		return k, fmt.Errorf("af stripes %d, want 1 to %d", k.AF.Stripes, MaxStripes)
	}
	if need := afSize(k.KeySize, k.AF.Stripes); need > k.Area.Size {
		return k, fmt.Errorf("area of %d bytes cannot hold %d stripes of a %d-byte key", k.Area.Size, k.AF.Stripes, k.KeySize)
	}
	f := s.KDF
	k.KDF = KDF{Type: f.Type, Hash: f.Hash, Iterations: f.Iterations, Time: f.Time, Memory: f.Memory, CPUs: f.CPUs, Salt: f.Salt}
	if len(f.Salt) == 0 {
		return k, fmt.Errorf("kdf: salt is required")
	}
	switch f.Type {
	case "pbkdf2":
		if f.Iterations == 0 || f.Hash == "" {
			return k, fmt.Errorf("kdf pbkdf2: hash and iterations are required")
		}
	case "argon2i", "argon2id":
		if f.Time == 0 || f.Memory == 0 || f.CPUs == 0 {
			return k, fmt.Errorf("kdf %s: time, memory and cpus are required", f.Type)
		}
		if f.CPUs > math.MaxUint8 {
			return k, fmt.Errorf("kdf %s: cpus %d, at most %d allowed", f.Type, f.CPUs, math.MaxUint8)
		}
	}
	return k, nil
}

// afSize is the size of a key split into stripes, in whole 512-byte sectors.
func afSize(keySize, stripes int) uint64 {
	n := uint64(keySize) * uint64(stripes)
	return (n + 511) / 512 * 512
}

func (s jsonSegment) check() (Segment, error) {
	if s.Type == "" || s.Offset == nil || s.Size == nil {
		return Segment{}, fmt.Errorf("type, offset and size are required")
	}
	seg := Segment{Type: s.Type, Offset: uint64(*s.Offset), Encryption: s.Encryption,
		SectorSize: s.SectorSize, Integrity: len(s.Integrity) > 0 && string(s.Integrity) != "null", Flags: s.Flags}
	if *s.Size == "dynamic" {
		seg.Dynamic = true
	} else {
		var n u64
		q, _ := json.Marshal(*s.Size)
		if err := n.UnmarshalJSON(q); err != nil {
			return seg, fmt.Errorf("size: %v", err)
		}
		seg.Size = uint64(n)
	}
	if s.IVTweak != nil {
		seg.IVTweak = uint64(*s.IVTweak)
	}
	if seg.Offset%512 != 0 || seg.Size%512 != 0 {
		return seg, fmt.Errorf("offset %d and size %d must be multiples of 512", seg.Offset, seg.Size)
	}
	if seg.Type != "crypt" {
		return seg, nil
	}
	if seg.Encryption == "" {
		return seg, fmt.Errorf("encryption is required")
	}
	switch seg.SectorSize {
	case 512, 1024, 2048, 4096:
	default:
		return seg, fmt.Errorf("sector_size %d, want 512, 1024, 2048 or 4096", seg.SectorSize)
	}
	if seg.Size%uint64(seg.SectorSize) != 0 {
		return seg, fmt.Errorf("size %d is not a multiple of sector_size %d", seg.Size, seg.SectorSize)
	}
	return seg, nil
}

// checkBounds checks that seg lies on a device of devSize bytes, after
// metaEnd bytes of LUKS metadata (0 for raw dm-crypt).
func (seg Segment) checkBounds(metaEnd uint64, devSize int64) error {
	if seg.Offset < metaEnd {
		return fmt.Errorf("data at %d overlaps the LUKS2 metadata and keyslots ending at %d", seg.Offset, metaEnd)
	}
	if devSize < 0 || seg.Offset > uint64(devSize) {
		return fmt.Errorf("data at %d starts past the device's %d bytes", seg.Offset, devSize)
	}
	if !seg.Dynamic && seg.Size > uint64(devSize)-seg.Offset {
		return fmt.Errorf("data of %d bytes at %d runs past the device's %d bytes", seg.Size, seg.Offset, devSize)
	}
	return nil
}

func (s jsonDigest) check(md *Metadata) (Digest, error) {
	dg := Digest{Type: s.Type, Hash: s.Hash, Iterations: s.Iterations, Salt: s.Salt, Digest: s.Digest}
	for _, id := range s.Keyslots {
		n, err := parseID(id, MaxKeyslots)
		if err != nil {
			return dg, fmt.Errorf("keyslot %q: %v", id, err)
		}
		if _, ok := md.Keyslots[n]; !ok {
			return dg, fmt.Errorf("names keyslot %d, which does not exist", n)
		}
		dg.Keyslots = append(dg.Keyslots, n)
	}
	for _, id := range s.Segments {
		n, err := parseID(id, maxIDs)
		if err != nil {
			return dg, fmt.Errorf("segment %q: %v", id, err)
		}
		if _, ok := md.Segments[n]; !ok {
			return dg, fmt.Errorf("names segment %d, which does not exist", n)
		}
		dg.Segments = append(dg.Segments, n)
	}
	if dg.Type != "pbkdf2" {
		return dg, nil // kept, never used
	}
	if dg.Hash == "" || dg.Iterations == 0 || len(dg.Salt) == 0 {
		return dg, fmt.Errorf("hash, iterations and salt are required")
	}
	if len(dg.Digest) == 0 || len(dg.Digest) > 64 {
		return dg, fmt.Errorf("digest of %d bytes, want 1 to 64", len(dg.Digest))
	}
	return dg, nil
}

// CryptSegment returns the segment to open: the lowest-numbered segment of
// type crypt. It refuses volumes with mandatory requirements (such as a
// reencryption in progress) and segments with authenticated encryption.
func (h *Header) CryptSegment() (int, Segment, error) {
	if r := h.Metadata.Config.Requirements; len(r) > 0 {
		return 0, Segment{}, fmt.Errorf("%w: mandatory requirements %q", ErrUnsupported, r)
	}
	ids := sortedKeys(h.Metadata.Segments)
	for _, id := range ids {
		seg := h.Metadata.Segments[id]
		if seg.Type != "crypt" {
			continue
		}
		if seg.Integrity {
			return 0, Segment{}, fmt.Errorf("%w: segment %d uses authenticated encryption (dm-integrity)", ErrUnsupported, id)
		}
		return id, seg, nil
	}
	return 0, Segment{}, fmt.Errorf("%w: no crypt segment", ErrUnsupported)
}

func sortedKeys[V any](m map[int]V) []int {
	ids := make([]int, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}
