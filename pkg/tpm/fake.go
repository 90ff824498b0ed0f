package tpm

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"sync"
)

// Fake is an in-memory TPM for other packages' tests: a SHA-256 PCR bank,
// sealing with the same policy semantics and errors as TPM (ErrPolicy after
// a sealed PCR changes, ErrAuth for a wrong PIN), one counter, and an
// identity key. Its blobs are bound to the Fake that sealed them, as real
// ones are to their TPM. Reboot simulates a restart.
type Fake struct {
	mu      sync.Mutex
	pcrs    [NumPCRs][sha256.Size]byte
	aead    cipher.AEAD
	counter uint64
	key     *ecdsa.PrivateKey
}

var (
	_ Sealer   = (*Fake)(nil)
	_ PCRBank  = (*Fake)(nil)
	_ Counter  = (*Fake)(nil)
	_ Identity = (*Fake)(nil)
)

// NewFake returns a Fake with all PCRs zero and the counter at 0.
func NewFake() *Fake {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		panic(err) // crypto/rand does not fail
	}
	block, err := aes.NewCipher(k[:])
	if err != nil {
		panic(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return &Fake{aead: aead, key: key}
}

// Reboot resets the PCRs to zero, as a TPM restart does; the counter, the
// identity key and sealed blobs survive.
func (f *Fake) Reboot() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pcrs = [NumPCRs][sha256.Size]byte{}
}

// ReadPCRs implements PCRBank.
func (f *Fake) ReadPCRs(ctx context.Context, pcrs []int) ([][]byte, error) {
	if err := checkPCRs(pcrs); err != nil {
		return nil, fmt.Errorf("read PCRs %v: %w", pcrs, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readPCRs(pcrs), nil
}

func (f *Fake) readPCRs(pcrs []int) [][]byte {
	out := make([][]byte, len(pcrs))
	for i, p := range pcrs {
		out[i] = append([]byte(nil), f.pcrs[p][:]...)
	}
	return out
}

// ExtendPCR implements PCRBank.
func (f *Fake) ExtendPCR(ctx context.Context, pcr int, digest []byte) error {
	if err := checkPCRs([]int{pcr}); err != nil {
		return fmt.Errorf("extend PCR: %w", err)
	}
	if len(digest) != sha256.Size {
		return fmt.Errorf("extend PCR %d: digest is %d bytes, want %d", pcr, len(digest), sha256.Size)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	h := sha256.New()
	h.Write(f.pcrs[pcr][:])
	h.Write(digest)
	h.Sum(f.pcrs[pcr][:0])
	return nil
}

// Seal implements Sealer. The blob's private part is the secret and a PIN
// hash, encrypted under a key only this Fake knows, with the header and
// policy digest as associated data.
func (f *Fake) Seal(ctx context.Context, secret []byte, p Policy) ([]byte, error) {
	if err := checkSecret(secret); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	pcrs, values := sortPCRs(p.PCRs, p.Values)
	pin := len(p.PIN) > 0
	f.mu.Lock()
	defer f.mu.Unlock()
	if values == nil && len(pcrs) > 0 {
		values = f.readPCRs(pcrs)
	}
	digest, err := policyDigest(pcrs, values, pin)
	if err != nil {
		return nil, fmt.Errorf("seal: policy digest: %w", err)
	}
	s := Sealed{PCRs: pcrs, PIN: pin, Public: digest, Private: []byte{0}, parent: parentFake}
	ad, err := s.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	ad = ad[:sealedHeader] // the header and the digest, not the placeholder
	ad = append(ad, digest...)
	pinHash := sha256.Sum256(p.PIN)
	nonce := make([]byte, f.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	s.Private = f.aead.Seal(nonce, nonce, append(pinHash[:], secret...), ad)
	return s.MarshalBinary()
}

// Unseal implements Sealer.
func (f *Fake) Unseal(ctx context.Context, blob, pin []byte) ([]byte, error) {
	s, err := openBlob(blob, pin, parentFake, "Fake")
	if err != nil {
		return nil, err
	}
	ns := f.aead.NonceSize()
	if len(s.Private) < ns {
		return nil, fmt.Errorf("unseal: %w: private part too short", ErrMalformed)
	}
	ad := append(blob[:sealedHeader:sealedHeader], s.Public...)
	f.mu.Lock()
	defer f.mu.Unlock()
	plain, err := f.aead.Open(nil, s.Private[:ns], s.Private[ns:], ad)
	if err != nil || len(plain) <= sha256.Size {
		return nil, fmt.Errorf("unseal: integrity check failed (sealed by another TPM?)")
	}
	digest, err := policyDigest(s.PCRs, f.readPCRs(s.PCRs), s.PIN)
	if err != nil {
		return nil, fmt.Errorf("unseal: policy digest: %w", err)
	}
	if subtle.ConstantTimeCompare(digest, s.Public) != 1 {
		return nil, fmt.Errorf("unseal (PCRs sha256 %v): %w", s.PCRs, ErrPolicy)
	}
	pinHash := sha256.Sum256(pin)
	if subtle.ConstantTimeCompare(pinHash[:], plain[:sha256.Size]) != 1 {
		return nil, fmt.Errorf("unseal: %w: wrong PIN", ErrAuth)
	}
	return plain[sha256.Size:], nil
}

// Value implements Counter.
func (f *Fake) Value(ctx context.Context) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counter, nil
}

// Increment implements Counter.
func (f *Fake) Increment(ctx context.Context) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counter++
	return f.counter, nil
}

// AdvanceTo implements Counter.
func (f *Fake) AdvanceTo(ctx context.Context, n uint64) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counter < n && n-f.counter > MaxAdvance {
		return f.counter, fmt.Errorf("advance counter to %d: %w: at %d, %d steps exceed %d",
			n, ErrAdvanceTooFar, f.counter, n-f.counter, MaxAdvance)
	}
	f.counter = max(f.counter, n)
	return f.counter, nil
}

// IdentityKey implements Identity; the key is a software ECDSA P-256 key.
func (f *Fake) IdentityKey(ctx context.Context) (Key, error) {
	return fakeKey{f.key}, nil
}

type fakeKey struct{ k *ecdsa.PrivateKey }

func (k fakeKey) Public() crypto.PublicKey { return &k.k.PublicKey }

func (k fakeKey) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	_, h, err := signHash(opts)
	if err != nil {
		return nil, fmt.Errorf("identity sign: %w", err)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("identity sign: digest is %d bytes, want %d for %v", len(digest), h.Size(), h)
	}
	return k.k.Sign(r, digest, opts)
}

func (k fakeKey) Close() error { return nil }
