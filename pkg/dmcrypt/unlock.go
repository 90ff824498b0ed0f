package dmcrypt

import (
	"cmp"
	"context"
	"crypto/pbkdf2"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"

	"golang.org/x/crypto/argon2"
)

// Limits bound the work a header may ask of Unlock, so that a hostile
// header cannot make it allocate gigabytes or spin for hours. A keyslot or
// digest beyond them is refused with an error wrapping ErrLimit that names
// the limit.
type Limits struct {
	// MaxPBKDF2Iterations bounds the iterations of PBKDF2 keyslots and
	// digests.
	MaxPBKDF2Iterations uint32
	// MaxArgon2Memory bounds Argon2's memory, in KiB.
	MaxArgon2Memory uint32
	// MaxArgon2Time bounds Argon2's passes.
	MaxArgon2Time uint32
	// MaxArgon2Work bounds Argon2's memory times passes, in KiB.
	MaxArgon2Work uint64
	// MaxArgon2CPUs bounds Argon2's lanes.
	MaxArgon2CPUs uint32
}

// DefaultLimits returns the limits Unlock applies unless given others:
// enough for volumes cryptsetup makes with its defaults (Argon2id with up
// to 1 GiB, PBKDF2 for two seconds on a fast machine), at most a few tens
// of seconds of work per keyslot.
func DefaultLimits() Limits {
	return Limits{
		MaxPBKDF2Iterations: 10_000_000,
		MaxArgon2Memory:     1 << 20, // 1 GiB, cryptsetup's own maximum default
		MaxArgon2Time:       1000,
		MaxArgon2Work:       16 << 20, // e.g. 1 GiB × 16 passes, 64 MiB × 256
		MaxArgon2CPUs:       16,
	}
}

// Option configures Unlock, Table, Open and OpenRaw.
type Option func(*options)

type options struct {
	limits   Limits
	keyslot  int // -1: every keyslot with a priority above 0
	readOnly bool
	dmFlags  []string // optional dm-crypt parameters
}

func newOptions(opts []Option) options {
	o := options{limits: DefaultLimits(), keyslot: -1}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// WithLimits replaces DefaultLimits.
func WithLimits(l Limits) Option { return func(o *options) { o.limits = l } }

// WithKeyslot makes Unlock try only keyslot n, even one of priority 0.
func WithKeyslot(n int) Option { return func(o *options) { o.keyslot = n } }

// WithReadOnly makes Open and OpenRaw create a read-only mapping.
func WithReadOnly() Option { return func(o *options) { o.readOnly = true } }

// WithAllowDiscards lets discards (TRIM) through to the device, which
// reveals which blocks are unused.
func WithAllowDiscards() Option { return withDMFlag("allow_discards") }

func withDMFlag(f string) Option {
	return func(o *options) {
		if !slices.Contains(o.dmFlags, f) {
			o.dmFlags = append(o.dmFlags, f)
		}
	}
}

// VolumeKey is a volume's master key. It prints as a redaction, never as
// its bytes; Zero clears it.
type VolumeKey []byte

// String hides the key from logs.
func (k VolumeKey) String() string { return fmt.Sprintf("VolumeKey(%d bytes, redacted)", len(k)) }

// GoString hides the key from %#v.
func (k VolumeKey) GoString() string { return k.String() }

// Zero overwrites the key with zeros.
func (k VolumeKey) Zero() { clear(k) }

// Unlock derives the volume key of h's crypt segment (CryptSegment) from a
// passphrase or the contents of a key file, trying every keyslot that
// applies to the segment, those of priority 2 first. dev is the device h
// was read from. It returns an error wrapping ErrWrongPassphrase when no
// keyslot opens; keyslots skipped (beyond Limits, unsupported ciphers) are
// named in the error and wrapped too. Options: WithLimits, WithKeyslot.
func (h *Header) Unlock(ctx context.Context, dev io.ReaderAt, passphrase []byte, opts ...Option) (VolumeKey, error) {
	o := newOptions(opts)
	segID, _, err := h.CryptSegment()
	if err != nil {
		return nil, err
	}
	md := &h.Metadata
	type candidate struct {
		id     int
		digest Digest
	}
	var cands []candidate
	for _, did := range sortedKeys(md.Digests) {
		dg := md.Digests[did]
		if dg.Type != "pbkdf2" || !slices.Contains(dg.Segments, segID) {
			continue
		}
		for _, kid := range dg.Keyslots {
			ks := md.Keyslots[kid]
			if ks.Type != "luks2" {
				continue
			}
			if o.keyslot >= 0 && kid != o.keyslot || o.keyslot < 0 && ks.Priority == 0 {
				continue
			}
			cands = append(cands, candidate{kid, dg})
		}
	}
	if len(cands) == 0 {
		if o.keyslot >= 0 {
			return nil, fmt.Errorf("%w: keyslot %d does not open segment %d", ErrWrongPassphrase, o.keyslot, segID)
		}
		return nil, fmt.Errorf("%w: no keyslot opens segment %d", ErrWrongPassphrase, segID)
	}
	slices.SortStableFunc(cands, func(a, b candidate) int {
		return cmp.Compare(md.Keyslots[b.id].Priority, md.Keyslots[a.id].Priority)
	})
	var skipped []error
	tried := 0
	for _, c := range cands {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		key, err := openKeyslot(dev, md.Keyslots[c.id], c.digest, passphrase, o.limits)
		switch {
		case err == nil:
			return key, nil
		case errors.Is(err, ErrWrongPassphrase):
			tried++
		default:
			skipped = append(skipped, fmt.Errorf("keyslot %d: %w", c.id, err))
		}
	}
	if tried == 0 {
		return nil, fmt.Errorf("no keyslot could be tried: %w", errors.Join(skipped...))
	}
	wrong := fmt.Errorf("%w (tried %d keyslots)", ErrWrongPassphrase, tried)
	if len(skipped) > 0 {
		return nil, errors.Join(append([]error{wrong}, skipped...)...)
	}
	return nil, wrong
}

// openKeyslot derives ks's key from the passphrase, decrypts and merges
// its area and checks the result against the digest.
func openKeyslot(dev io.ReaderAt, ks Keyslot, dg Digest, passphrase []byte, l Limits) (VolumeKey, error) {
	if err := checkKDF(ks.KDF, l); err != nil {
		return nil, err
	}
	if dg.Iterations > l.MaxPBKDF2Iterations {
		return nil, fmt.Errorf("%w: digest pbkdf2 iterations %d, MaxPBKDF2Iterations %d", ErrLimit, dg.Iterations, l.MaxPBKDF2Iterations)
	}
	afHash, err := hashByName(ks.AF.Hash)
	if err != nil {
		return nil, fmt.Errorf("af: %w", err)
	}
	dgHash, err := hashByName(dg.Hash)
	if err != nil {
		return nil, fmt.Errorf("digest: %w", err)
	}
	// Check the cipher before spending time on the KDF.
	if _, err := NewCipher(ks.Area.Encryption, make([]byte, ks.Area.KeySize), 512); err != nil {
		return nil, fmt.Errorf("area: %w", err)
	}
	area := make([]byte, afSize(ks.KeySize, ks.AF.Stripes))
	defer clear(area)
	if _, err := dev.ReadAt(area, int64(ks.Area.Offset)); err != nil {
		return nil, fmt.Errorf("read keyslot area at %d: %w", ks.Area.Offset, err)
	}
	kek, err := deriveKey(ks.KDF, passphrase, ks.Area.KeySize)
	if err != nil {
		return nil, err
	}
	defer clear(kek)
	c, err := NewCipher(ks.Area.Encryption, kek, 512)
	if err != nil {
		return nil, fmt.Errorf("area: %w", err)
	}
	if err := c.Decrypt(area, area, 0); err != nil {
		return nil, err
	}
	key := make(VolumeKey, ks.KeySize)
	afMerge(key, area, ks.AF.Stripes, afHash)
	sum, err := pbkdf2.Key(dgHash, string(key), dg.Salt, int(dg.Iterations), len(dg.Digest))
	if err != nil {
		key.Zero()
		return nil, fmt.Errorf("digest: %w", err)
	}
	if subtle.ConstantTimeCompare(sum, dg.Digest) != 1 {
		key.Zero()
		return nil, ErrWrongPassphrase
	}
	return key, nil
}

// checkKDF refuses KDF parameters beyond l.
func checkKDF(k KDF, l Limits) error {
	switch k.Type {
	case "pbkdf2":
		if k.Iterations > l.MaxPBKDF2Iterations {
			return fmt.Errorf("%w: pbkdf2 iterations %d, MaxPBKDF2Iterations %d", ErrLimit, k.Iterations, l.MaxPBKDF2Iterations)
		}
	case "argon2i", "argon2id":
		switch {
		case k.Memory > l.MaxArgon2Memory:
			return fmt.Errorf("%w: %s memory %d KiB, MaxArgon2Memory %d KiB", ErrLimit, k.Type, k.Memory, l.MaxArgon2Memory)
		case k.Time > l.MaxArgon2Time:
			return fmt.Errorf("%w: %s time %d, MaxArgon2Time %d", ErrLimit, k.Type, k.Time, l.MaxArgon2Time)
		case uint64(k.Memory)*uint64(k.Time) > l.MaxArgon2Work:
			return fmt.Errorf("%w: %s memory %d KiB × time %d, MaxArgon2Work %d KiB", ErrLimit, k.Type, k.Memory, k.Time, l.MaxArgon2Work)
		case k.CPUs > l.MaxArgon2CPUs:
			return fmt.Errorf("%w: %s cpus %d, MaxArgon2CPUs %d", ErrLimit, k.Type, k.CPUs, l.MaxArgon2CPUs)
		}
	default:
		return fmt.Errorf("%w: kdf %q", ErrUnsupported, k.Type)
	}
	return nil
}

// deriveKey runs the KDF, whose parameters checkKDF accepted.
func deriveKey(k KDF, passphrase []byte, n int) ([]byte, error) {
	switch k.Type {
	case "pbkdf2":
		h, err := hashByName(k.Hash)
		if err != nil {
			return nil, fmt.Errorf("kdf: %w", err)
		}
		key, err := pbkdf2.Key(h, string(passphrase), k.Salt, int(k.Iterations), n)
		if err != nil {
			return nil, fmt.Errorf("kdf pbkdf2: %w", err)
		}
		return key, nil
	case "argon2i":
		return argon2.Key(passphrase, k.Salt, k.Time, k.Memory, uint8(k.CPUs), uint32(n)), nil
	case "argon2id":
		return argon2.IDKey(passphrase, k.Salt, k.Time, k.Memory, uint8(k.CPUs), uint32(n)), nil
	}
	return nil, fmt.Errorf("%w: kdf %q", ErrUnsupported, k.Type)
}
