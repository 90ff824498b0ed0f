package tpm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// Key is a signing key: Sign returns an ASN.1 DER ECDSA signature of a
// digest, as crypto/ecdsa does. Close releases it.
type Key interface {
	crypto.Signer
	io.Closer
}

// Identity gives the device's identity key.
type Identity interface {
	// IdentityKey returns the device identity key: the same ECDSA P-256 key
	// every time, whose private part never leaves the device.
	IdentityKey(ctx context.Context) (Key, error)
}

// identityLabel makes the identity key's template unique to Lifeboat.
const identityLabel = "lifeboat device identity v1"

// identityTemplate is the identity key's public template.
func identityTemplate() tpm2.TPMTPublic {
	x := sha256.Sum256([]byte(identityLabel))
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			NoDA:                true,
			SignEncrypt:         true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull}, // chosen per signature
			CurveID:   tpm2.TPMECCNistP256,
			KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: x[:]},
			Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		}),
	}
}

// TPMKey is the identity key, loaded in the TPM. Close flushes it.
type TPMKey struct {
	t      *TPM
	key    primary
	pub    *ecdsa.PublicKey
	closed bool // guarded by t.mu
}

var _ Key = (*TPMKey)(nil)

// IdentityKey implements Identity: it re-creates the identity primary key
// in the owner hierarchy (see the package documentation) and keeps it
// loaded until Close.
func (t *TPM) IdentityKey(ctx context.Context) (Key, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k, err := t.createPrimary(ctx, identityTemplate())
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	pub, err := tpm2.Pub(k.public)
	if err == nil {
		if ep, ok := pub.(*ecdsa.PublicKey); ok {
			return &TPMKey{t: t, key: k, pub: ep}, nil
		}
		err = fmt.Errorf("public key is %T, want *ecdsa.PublicKey", pub)
	}
	flush(ctx, t, k.handle)
	return nil, fmt.Errorf("identity key: %w", err)
}

// Public implements crypto.Signer; it returns an *ecdsa.PublicKey.
func (k *TPMKey) Public() crypto.PublicKey { return k.pub }

// TPMPublic returns the key's public area as the TPM reports it now
// (TPM2_ReadPublic), attributes included.
func (k *TPMKey) TPMPublic(ctx context.Context) (tpm2.TPMTPublic, error) {
	k.t.mu.Lock()
	defer k.t.mu.Unlock()
	if k.closed {
		return tpm2.TPMTPublic{}, fmt.Errorf("read identity key: closed")
	}
	rsp, err := tpm2.ReadPublic{ObjectHandle: k.key.handle}.Execute(k.t.with(ctx))
	if err != nil {
		return tpm2.TPMTPublic{}, fmt.Errorf("TPM2_ReadPublic(%#x): %w", uint32(k.key.handle), err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return tpm2.TPMTPublic{}, fmt.Errorf("TPM2_ReadPublic(%#x): %w", uint32(k.key.handle), err)
	}
	return *pub, nil
}

// signHash maps the hashes a P-256 key may sign with.
func signHash(opts crypto.SignerOpts) (tpm2.TPMIAlgHash, crypto.Hash, error) {
	if opts == nil {
		return 0, 0, fmt.Errorf("no hash given")
	}
	switch h := opts.HashFunc(); h {
	case crypto.SHA256:
		return tpm2.TPMAlgSHA256, h, nil
	case crypto.SHA384:
		return tpm2.TPMAlgSHA384, h, nil
	case crypto.SHA512:
		return tpm2.TPMAlgSHA512, h, nil
	default:
		return 0, 0, fmt.Errorf("unsupported hash %v", h)
	}
}

// Sign implements crypto.Signer with TPM2_Sign; rand is not used (the TPM
// draws its own nonce).
func (k *TPMKey) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.SignContext(context.Background(), digest, opts)
}

// SignContext is Sign with a context.
func (k *TPMKey) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	alg, h, err := signHash(opts)
	if err != nil {
		return nil, fmt.Errorf("identity sign: %w", err)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("identity sign: digest is %d bytes, want %d for %v", len(digest), h.Size(), h)
	}
	k.t.mu.Lock()
	defer k.t.mu.Unlock()
	if k.closed {
		return nil, fmt.Errorf("identity sign: key closed")
	}
	rsp, err := tpm2.Sign{
		KeyHandle: tpm2.AuthHandle{Handle: k.key.handle, Name: k.key.name, Auth: tpm2.PasswordAuth(nil)},
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: alg}),
		},
		// An unrestricted key needs no proof that the TPM hashed the data.
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(k.t.with(ctx))
	if err != nil {
		return nil, fmt.Errorf("identity sign: TPM2_Sign: %w", classify(err))
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("identity sign: TPM2_Sign: %w", err)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(sig.SignatureR.Buffer),
		new(big.Int).SetBytes(sig.SignatureS.Buffer),
	})
}

// Close implements io.Closer: it flushes the key from the TPM.
func (k *TPMKey) Close() error {
	k.t.mu.Lock()
	defer k.t.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	_, err := tpm2.FlushContext{FlushHandle: k.key.handle}.Execute(k.t.with(context.Background()))
	if err != nil {
		return fmt.Errorf("TPM2_FlushContext(%#x): %w", uint32(k.key.handle), err)
	}
	return nil
}
