package tpm

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Sealed is a parsed sealed blob. Its encoding, all integers big-endian:
//
//	magic    4 bytes  "LBTS"
//	version  uint8    1
//	parent   uint8    1: owner-hierarchy ECC P-256 SRK; 2: Fake
//	flags    uint8    bit 0: sealed with a PIN; other bits zero
//	pcrs     uint32   bit i: PCR i of the SHA-256 bank; bits 24-31 zero; none: Policy.NoPCRs
//	public   uint16 size, then the object's TPMT_PUBLIC
//	private  uint16 size, then the object's TPM2B_PRIVATE buffer
//
// Nothing in it is secret: the private area is encrypted under the TPM's
// storage root key, and only the TPM that sealed it can load it.
type Sealed struct {
	PCRs    []int  // ascending
	PIN     bool   // a PIN is needed to unseal
	Public  []byte // marshalled TPMT_PUBLIC (Fake: the policy digest)
	Private []byte // TPM2B_PRIVATE contents (Fake: nonce and ciphertext)
	parent  uint8
}

const (
	sealedMagic   = "LBTS"
	sealedVersion = 1
	parentECCSRK  = 1
	parentFake    = 2
	flagPIN       = 1
	maxPublic     = 1024
	maxPrivate    = 1024
	sealedHeader  = 4 + 1 + 1 + 1 + 4
)

// ParseSealed parses a sealed blob; errors match ErrMalformed.
func ParseSealed(b []byte) (*Sealed, error) {
	if len(b) < sealedHeader {
		return nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrMalformed, len(b), sealedHeader)
	}
	if string(b[:4]) != sealedMagic {
		return nil, fmt.Errorf("%w: bad magic %q", ErrMalformed, b[:4])
	}
	if b[4] != sealedVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrMalformed, b[4], sealedVersion)
	}
	s := &Sealed{parent: b[5]}
	if b[6]&^flagPIN != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrMalformed, b[6])
	}
	s.PIN = b[6]&flagPIN != 0
	mask := binary.BigEndian.Uint32(b[7:11])
	if mask>>NumPCRs != 0 {
		return nil, fmt.Errorf("%w: PCR mask %#x selects PCRs beyond %d", ErrMalformed, mask, NumPCRs-1)
	}
	for i := range NumPCRs {
		if mask&(1<<i) != 0 {
			s.PCRs = append(s.PCRs, i)
		}
	}
	rest := b[sealedHeader:]
	var err error
	if s.Public, rest, err = sized(rest, "public", maxPublic); err != nil {
		return nil, err
	}
	if s.Private, rest, err = sized(rest, "private", maxPrivate); err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(rest))
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return s, nil
}

func sized(b []byte, what string, limit int) (field, rest []byte, err error) {
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("%w: truncated before %s size", ErrMalformed, what)
	}
	n := int(binary.BigEndian.Uint16(b))
	if n == 0 || n > limit {
		return nil, nil, fmt.Errorf("%w: %s is %d bytes, want 1 to %d", ErrMalformed, what, n, limit)
	}
	if len(b) < 2+n {
		return nil, nil, fmt.Errorf("%w: %s truncated: %d of %d bytes", ErrMalformed, what, len(b)-2, n)
	}
	return b[2 : 2+n], b[2+n:], nil
}

// validate checks what both ParseSealed and MarshalBinary rely on.
func (s *Sealed) validate() error {
	if len(s.PCRs) > 0 { // none: sealed with Policy.NoPCRs
		if err := checkPCRs(s.PCRs); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	for i := 1; i < len(s.PCRs); i++ {
		if s.PCRs[i] <= s.PCRs[i-1] {
			return fmt.Errorf("%w: PCRs %v not ascending", ErrMalformed, s.PCRs)
		}
	}
	if len(s.Public) == 0 || len(s.Public) > maxPublic || len(s.Private) == 0 || len(s.Private) > maxPrivate {
		return fmt.Errorf("%w: public %d and private %d bytes, want 1 to %d each",
			ErrMalformed, len(s.Public), len(s.Private), maxPublic)
	}
	var policy []byte
	switch s.parent {
	case parentECCSRK:
		p, err := checkSealedPublic(s.Public, s.PIN)
		if err != nil {
			return err
		}
		policy = p
	case parentFake:
		if len(s.Public) != 32 {
			return fmt.Errorf("%w: fake policy digest is %d bytes, want 32", ErrMalformed, len(s.Public))
		}
		policy = s.Public
	default:
		return fmt.Errorf("%w: unknown parent %d", ErrMalformed, s.parent)
	}
	if len(s.PCRs) == 0 {
		// Without PCRs the policy is fixed: a blob whose PCR selection was
		// cleared is not one sealed with NoPCRs.
		want, err := policyDigest(nil, nil, s.PIN)
		if err != nil {
			return err
		}
		if !bytes.Equal(policy, want) {
			return fmt.Errorf("%w: no PCRs selected, but the policy is not NoPCRs'", ErrMalformed)
		}
	}
	return nil
}

// checkSealedPublic checks that pub is the canonical encoding of a sealed
// data object that can only be unsealed through its policy, and returns
// the policy.
func checkSealedPublic(pub []byte, pin bool) ([]byte, error) {
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](pub)
	if err != nil {
		return nil, fmt.Errorf("%w: public area: %w", ErrMalformed, err)
	}
	a := p.ObjectAttributes
	switch {
	case p.Type != tpm2.TPMAlgKeyedHash:
		return nil, fmt.Errorf("%w: object type %v, want keyedhash", ErrMalformed, p.Type)
	case p.NameAlg != tpm2.TPMAlgSHA256:
		return nil, fmt.Errorf("%w: name algorithm %v, want sha256", ErrMalformed, p.NameAlg)
	case a.UserWithAuth || !a.FixedTPM || !a.FixedParent || a.NoDA == pin:
		return nil, fmt.Errorf("%w: object attributes %+v", ErrMalformed, a)
	case len(p.AuthPolicy.Buffer) != 32:
		return nil, fmt.Errorf("%w: authPolicy is %d bytes, want 32", ErrMalformed, len(p.AuthPolicy.Buffer))
	}
	if !bytes.Equal(tpm2.Marshal(*p), pub) {
		return nil, fmt.Errorf("%w: public area is not canonical", ErrMalformed)
	}
	return p.AuthPolicy.Buffer, nil
}

// MarshalBinary encodes s.
func (s *Sealed) MarshalBinary() ([]byte, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	var mask uint32
	for _, p := range s.PCRs {
		mask |= 1 << p
	}
	var flags uint8
	if s.PIN {
		flags |= flagPIN
	}
	b := make([]byte, 0, sealedHeader+4+len(s.Public)+len(s.Private))
	b = append(b, sealedMagic...)
	b = append(b, sealedVersion, s.parent, flags)
	b = binary.BigEndian.AppendUint32(b, mask)
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.Public)))
	b = append(b, s.Public...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.Private)))
	b = append(b, s.Private...)
	return b, nil
}
