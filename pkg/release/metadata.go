package release

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/strictjson"
)

// The four roles of TUF's model. Root names the keys of all four; targets
// lists the releases; snapshot pins the version of targets; timestamp pins
// the version of snapshot and is re-signed often, so a device that stops
// hearing fresh timestamps knows it is being frozen.
const (
	RoleRoot      = "root"
	RoleTargets   = "targets"
	RoleSnapshot  = "snapshot"
	RoleTimestamp = "timestamp"
)

// Repository layout, the same on a server, a CDN and a USB stick: signed
// metadata, chunk indexes named by their SHA-256, and the chunk store.
const (
	MetadataDir = "metadata"
	IndexDir    = "indexes"
	StoreDir    = "store"
)

// Roles lists the roles in the order root names them.
var Roles = []string{RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp}

// Size limits for metadata a device downloads before it knows a signed
// length: root and timestamp. Everything else is bounded by a signed length.
const (
	MaxRootSize      = 512 << 10
	MaxTimestampSize = 16 << 10
)

// Envelope is a metadata file: the signed bytes, exactly as signed, and the
// signatures over them.
type Envelope struct {
	Signed     json.RawMessage `json:"signed"`
	Signatures []Signature     `json:"signatures"`
}

// Signature is one key's signature over an envelope's signed bytes.
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"` // hex
}

// Header starts every role's signed part.
type Header struct {
	Type    string    `json:"_type"`
	Version int64     `json:"version"`
	Expires time.Time `json:"expires"`
}

func (h Header) header() Header { return h }

// Root is the root of trust: the keys and thresholds of every role.
type Root struct {
	Header
	Keys  map[string]Key      `json:"keys"`
	Roles map[string]RoleKeys `json:"roles"`
}

// RoleKeys are the keys that may sign a role and how many must.
type RoleKeys struct {
	KeyIDs    []string `json:"keyids"`
	Threshold int      `json:"threshold"`
}

// MetaFile pins another metadata file: its version, length and hash.
type MetaFile struct {
	Version int64  `json:"version"`
	Length  int64  `json:"length"`
	SHA256  string `json:"sha256"`
}

// Timestamp pins the current snapshot.
type Timestamp struct {
	Header
	// Issued is when the timestamp was signed: a device without a
	// trustworthy clock takes it as a floor for the time.
	Issued   time.Time `json:"issued"`
	Snapshot MetaFile  `json:"snapshot"`
}

// Snapshot pins the current targets.
type Snapshot struct {
	Header
	Targets MetaFile `json:"targets"`
}

// Targets lists every release of every board.
type Targets struct {
	Header
	Releases []Release `json:"releases"`
}

// Release is one version of the system for one board: the images to
// install, all of them, together.
type Release struct {
	Board   string    `json:"board"`
	Version string    `json:"version"`
	Created time.Time `json:"created"`
	Images  []Image   `json:"images"`
}

// Image is what one slot class receives.
type Image struct {
	// Class is the slot class: rootfs, kernel, bootloader, apps ...
	Class string `json:"class"`
	// Size and SHA256 cover every byte written to the slot, the verity tree
	// included when it follows the data.
	Size   int64    `json:"size"`
	SHA256 string   `json:"sha256"`
	Index  IndexRef `json:"index"`
	Verity *Verity  `json:"verity,omitempty"`
}

// IndexRef locates an image's chunk index in the repository.
type IndexRef struct {
	Path   string `json:"path"`
	Length int64  `json:"length"`
	SHA256 string `json:"sha256"`
}

// Verity describes an image's dm-verity hash tree.
type Verity struct {
	Algorithm     string `json:"algorithm"`
	DataBlockSize uint32 `json:"data_block_size"`
	HashBlockSize uint32 `json:"hash_block_size"`
	DataSize      int64  `json:"data_size"`
	// HashOffset is where the hash area starts in the slot, after the data.
	HashOffset int64  `json:"hash_offset"`
	Superblock bool   `json:"superblock"`
	Format     uint32 `json:"format"`
	Salt       string `json:"salt"`      // hex
	RootHash   string `json:"root_hash"` // hex
}

// Sign encodes a role's signed part and signs the exact bytes with every
// signer, returning the metadata file.
func Sign(signed any, signers []Signer) ([]byte, error) {
	body, err := json.Marshal(signed)
	if err != nil {
		return nil, err
	}
	env := Envelope{Signed: body, Signatures: []Signature{}}
	for _, s := range signers {
		sig, err := s.Sign(body)
		if err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
		env.Signatures = append(env.Signatures, Signature{KeyID: s.Public().ID(), Sig: hex.EncodeToString(sig)})
	}
	// Compact: an indenting encoder would reformat the signed bytes.
	return json.Marshal(env)
}

// decodeStrict decodes JSON that must have no unknown fields and nothing
// after it.
func decodeStrict(b []byte, v any) error { return strictjson.Unmarshal(b, v) }

// parseEnvelope decodes a metadata file.
func parseEnvelope(b []byte) (*Envelope, error) {
	var env Envelope
	if err := decodeStrict(b, &env); err != nil {
		return nil, err
	}
	if len(env.Signed) == 0 {
		return nil, fmt.Errorf("no signed part")
	}
	return &env, nil
}

// checkSignatures counts the distinct keys of role that signed env and
// fails below the threshold.
func checkSignatures(env *Envelope, roleName string, role RoleKeys, keys map[string]Key) error {
	if role.Threshold < 1 {
		return refuse(ErrThreshold, "%s role has threshold %d", roleName, role.Threshold)
	}
	allowed := make(map[string]bool, len(role.KeyIDs))
	for _, id := range role.KeyIDs {
		allowed[id] = true
	}
	// Count keys, not key IDs: one key listed under two IDs counts once.
	valid := make(map[string]bool) // by public key bytes
	for _, s := range env.Signatures {
		if !allowed[s.KeyID] {
			continue
		}
		k, ok := keys[s.KeyID]
		pub, canonical := k.public()
		sig, err := hex.DecodeString(s.Sig)
		if ok && canonical && err == nil && k.ID() == s.KeyID && !valid[string(pub)] && k.verify(env.Signed, sig) {
			valid[string(pub)] = true
		}
	}
	switch {
	case len(valid) >= role.Threshold:
		return nil
	case len(valid) == 0:
		return refuse(ErrArbitrarySoftware, "%s has no valid signature by its keys", roleName)
	default:
		return refuse(ErrThreshold, "%s has %d valid signatures, its threshold is %d", roleName, len(valid), role.Threshold)
	}
}

// Decode parses a metadata file of role typ into v without checking its
// signatures: for the release side reading its own repository. Devices
// verify through Client.
func Decode(b []byte, typ string, v any) error {
	r, ok := v.(interface{ header() Header })
	if !ok {
		return fmt.Errorf("decode %s into %T: not a role", typ, v)
	}
	env, err := parseEnvelope(b)
	if err != nil {
		return fmt.Errorf("%s: %w", typ, err)
	}
	return decodeRole(env, typ, r)
}

// HashOf is the hex SHA-256 of b, as metadata pins files.
func HashOf(b []byte) string { return hashOf(b) }

// decodeRole decodes env's signed part as role type typ into v.
func decodeRole(env *Envelope, typ string, v interface{ header() Header }) error {
	if err := decodeStrict(env.Signed, v); err != nil {
		return fmt.Errorf("%s: %w", typ, err)
	}
	if h := v.header(); h.Type != typ {
		return refuse(ErrMixAndMatch, "%s metadata has type %q", typ, h.Type)
	}
	if v.header().Version < 1 {
		return fmt.Errorf("%s: version %d", typ, v.header().Version)
	}
	return nil
}

// hashOf is the hex SHA-256 of b.
func hashOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// CompareVersions orders release versions: dotted non-negative integers
// ("2026.11.3", "1.4"), compared field by field, a missing field counting as
// zero. It returns -1, 0 or 1.
func CompareVersions(a, b string) (int, error) {
	pa, err := parseVersion(a)
	if err != nil {
		return 0, err
	}
	pb, err := parseVersion(b)
	if err != nil {
		return 0, err
	}
	for i := range max(len(pa), len(pb)) {
		var x, y uint64
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		if x != y {
			if x < y {
				return -1, nil
			}
			return 1, nil
		}
	}
	return 0, nil
}

func parseVersion(v string) ([]uint64, error) {
	if v == "" {
		return nil, fmt.Errorf("empty version")
	}
	var out []uint64
	for _, f := range strings.Split(v, ".") {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("version %q: want dotted numbers such as 2026.11.1", v)
		}
		out = append(out, n)
	}
	return out, nil
}

// ValidateRelease checks a release's own consistency.
func ValidateRelease(r *Release) error {
	if r.Board == "" || strings.ContainsAny(r.Board, "/\\ \t\n") {
		return fmt.Errorf("release board %q: want a plain name", r.Board)
	}
	if _, err := parseVersion(r.Version); err != nil {
		return err
	}
	if len(r.Images) == 0 {
		return fmt.Errorf("release %s/%s has no images", r.Board, r.Version)
	}
	seen := map[string]bool{}
	for _, im := range r.Images {
		if im.Class == "" || seen[im.Class] {
			return refuse(ErrExtraneous, "release %s/%s names slot class %q twice or empty", r.Board, r.Version, im.Class)
		}
		seen[im.Class] = true
		if im.Size < 0 || im.Index.Length <= 0 || len(im.SHA256) != 64 || len(im.Index.SHA256) != 64 {
			return fmt.Errorf("release %s/%s image %s: malformed size or hashes", r.Board, r.Version, im.Class)
		}
	}
	return nil
}
