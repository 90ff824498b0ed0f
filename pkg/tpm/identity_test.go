package tpm_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/tpm"
	"github.com/lifeboat-update/lifeboat/pkg/tpm/tpmtest"
)

// signSteps checks that k signs digests that crypto/ecdsa verifies.
func signSteps(t *testing.T, k tpm.Key) *ecdsa.PublicKey {
	t.Helper()
	pub, ok := k.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("Public() = %T %v, want a P-256 *ecdsa.PublicKey", k.Public(), k.Public())
	}
	msg := []byte("lifeboat device says hello")
	d256 := sha256.Sum256(msg)
	d384 := sha512.Sum384(msg)
	d512 := sha512.Sum512(msg)
	for _, tc := range []struct {
		digest []byte
		opts   crypto.SignerOpts
	}{
		{d256[:], crypto.SHA256},
		{d384[:], crypto.SHA384},
		{d512[:], crypto.SHA512},
	} {
		sig, err := k.Sign(rand.Reader, tc.digest, tc.opts)
		if err != nil {
			t.Fatalf("Sign(%v digest) = %v", tc.opts, err)
		}
		if !ecdsa.VerifyASN1(pub, tc.digest, sig) {
			t.Errorf("Sign(%v digest) = %x, which does not verify", tc.opts, sig)
		}
		other := append([]byte(nil), tc.digest...)
		other[0] ^= 1
		if ecdsa.VerifyASN1(pub, other, sig) {
			t.Errorf("Sign(%v digest) = %x verifies for another digest", tc.opts, sig)
		}
	}
	for _, tc := range []struct {
		name   string
		digest []byte
		opts   crypto.SignerOpts
	}{
		{"short digest", d256[:20], crypto.SHA256},
		{"digest of the wrong hash", d384[:], crypto.SHA256},
		{"SHA-1", d256[:20], crypto.SHA1},
		{"no hash", d256[:], nil},
	} {
		if sig, err := k.Sign(rand.Reader, tc.digest, tc.opts); err == nil {
			t.Errorf("%s: Sign() = %x, nil, want an error", tc.name, sig)
		}
	}
	return pub
}

func TestFakeIdentityKey(t *testing.T) {
	ctx := testCtx(t)
	f := tpm.NewFake()
	k, err := f.IdentityKey(ctx)
	if err != nil {
		t.Fatalf("IdentityKey() = %v", err)
	}
	pub := signSteps(t, k)
	k2, err := f.IdentityKey(ctx)
	if err != nil || !pub.Equal(k2.Public()) {
		t.Fatalf("IdentityKey() again = %v, %v, want the same key %v", k2.Public(), err, pub)
	}
}

func TestIdentityKey(t *testing.T) {
	ctx := testCtx(t)
	sim := tpmtest.Start(t)
	tp := sim.Open(t)
	k, err := tp.IdentityKey(ctx)
	if err != nil {
		t.Fatalf("IdentityKey() = %v", err)
	}
	pub := signSteps(t, k)

	// The private key was made in the TPM and can never leave it.
	area, err := k.(*tpm.TPMKey).TPMPublic(ctx)
	if err != nil {
		t.Fatalf("TPMPublic() = %v", err)
	}
	a := area.ObjectAttributes
	for _, c := range []struct {
		attr      string
		got, want bool
	}{
		{"fixedTPM", a.FixedTPM, true},
		{"fixedParent", a.FixedParent, true},
		{"sensitiveDataOrigin", a.SensitiveDataOrigin, true},
		{"userWithAuth", a.UserWithAuth, true},
		{"sign", a.SignEncrypt, true},
		{"restricted", a.Restricted, false},
		{"decrypt", a.Decrypt, false},
		{"encryptedDuplication", a.EncryptedDuplication, false},
	} {
		if c.got != c.want {
			t.Errorf("identity key attribute %s = %v, want %v", c.attr, c.got, c.want)
		}
	}

	// A second handle on the same key signs for the same public key.
	k2, err := tp.IdentityKey(ctx)
	if err != nil || !pub.Equal(k2.Public()) {
		t.Fatalf("IdentityKey() again = %v, %v, want %v", k2.Public(), err, pub)
	}
	if err := k2.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if sig, err := k2.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); err == nil {
		t.Fatalf("Sign() after Close() = %x, nil, want an error", sig)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	// The same key comes back after a restart.
	sim.Restart(t)
	k3, err := sim.Open(t).IdentityKey(ctx)
	if err != nil {
		t.Fatalf("IdentityKey() after restart = %v", err)
	}
	defer k3.Close()
	if !pub.Equal(k3.Public()) {
		t.Fatalf("IdentityKey() after restart = %v, want %v", k3.Public(), pub)
	}
	signSteps(t, k3)

	// Another TPM has another identity.
	k4, err := tpmtest.Start(t).Open(t).IdentityKey(ctx)
	if err != nil {
		t.Fatalf("IdentityKey() on another TPM = %v", err)
	}
	defer k4.Close()
	if pub.Equal(k4.Public()) {
		t.Fatalf("IdentityKey() on another TPM = %v, the same key", k4.Public())
	}
}
