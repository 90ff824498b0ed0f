package tpm

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sort"

	"github.com/google/go-tpm/tpm2"
)

// MaxSecret is the largest secret Seal accepts (the TPM's MAX_SYM_DATA).
const MaxSecret = 128

// MaxPIN is the longest PIN: an authValue is at most one SHA-256 digest long.
const MaxPIN = sha256.Size

// Sealer seals a secret, such as a volume key, so that only this TPM can
// unseal it and only while the PCRs hold the values it was sealed to.
type Sealer interface {
	// Seal seals secret (1 to MaxSecret bytes) under p and returns the
	// sealed blob, which is not secret (see Sealed).
	Seal(ctx context.Context, secret []byte, p Policy) ([]byte, error)
	// Unseal returns the secret in blob. It fails with ErrPolicy when the
	// PCRs differ from the sealed values, and ErrAuth when the PIN is wrong,
	// or missing for a blob sealed with one, or given for a blob sealed
	// without one.
	Unseal(ctx context.Context, blob, pin []byte) ([]byte, error)
}

// Policy says what unsealing requires.
type Policy struct {
	// PCRs are the SHA-256 PCRs the secret is bound to, e.g. {7, 11}.
	PCRs []int
	// Values are the PCRs' values to seal to, in the order of PCRs, each 32
	// bytes: the values expected at the next boot after an update. Nil seals
	// to the PCRs' current values.
	Values [][]byte
	// NoPCRs seals without binding to any PCR: whatever boots on this TPM
	// can unseal. It must be asked for, with PCRs and Values empty, so that
	// an empty selection is never taken for one by mistake.
	NoPCRs bool
	// PIN, if not empty, is also needed to unseal (at most MaxPIN bytes).
	// Unlike a PIN-less object, a PIN-protected one is subject to the TPM's
	// dictionary-attack lockout.
	PIN []byte
}

// Validate reports whether p can be sealed to.
func (p Policy) Validate() error {
	if p.NoPCRs {
		if len(p.PCRs) > 0 || p.Values != nil {
			return fmt.Errorf("NoPCRs with PCRs %v selected", p.PCRs)
		}
	} else if err := checkPCRs(p.PCRs); err != nil {
		return err
	}
	if p.Values != nil {
		if len(p.Values) != len(p.PCRs) {
			return fmt.Errorf("%d PCR values for %d PCRs", len(p.Values), len(p.PCRs))
		}
		for i, v := range p.Values {
			if len(v) != sha256.Size {
				return fmt.Errorf("value for PCR %d is %d bytes, want %d", p.PCRs[i], len(v), sha256.Size)
			}
		}
	}
	if len(p.PIN) > MaxPIN {
		return fmt.Errorf("PIN is %d bytes, want at most %d", len(p.PIN), MaxPIN)
	}
	return nil
}

func checkSecret(secret []byte) error {
	if len(secret) == 0 || len(secret) > MaxSecret {
		return fmt.Errorf("secret is %d bytes, want 1 to %d", len(secret), MaxSecret)
	}
	return nil
}

// sortPCRs returns pcrs in ascending order with their values (if any) in the
// same order, the order in which TPM2_PolicyPCR digests them.
func sortPCRs(pcrs []int, values [][]byte) ([]int, [][]byte) {
	idx := make([]int, len(pcrs))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return pcrs[idx[a]] < pcrs[idx[b]] })
	sp := make([]int, len(pcrs))
	var sv [][]byte
	if values != nil {
		sv = make([][]byte, len(values))
	}
	for i, j := range idx {
		sp[i] = pcrs[j]
		if values != nil {
			sv[i] = values[j]
		}
	}
	return sp, sv
}

// policyDigest is the authPolicy of an object sealed to the ascending pcrs
// holding values: PolicyPCR (unless pcrs is empty), then PolicyAuthValue
// if pin. With neither it is the empty policy, all zeros, which a policy
// session without assertions satisfies.
func policyDigest(pcrs []int, values [][]byte, pin bool) ([]byte, error) {
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if len(pcrs) > 0 {
		h := sha256.New()
		for _, v := range values {
			h.Write(v)
		}
		if err := (tpm2.PolicyPCR{
			PcrDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)},
			Pcrs:      pcrSelection(pcrs),
		}).Update(calc); err != nil {
			return nil, err
		}
	}
	if pin {
		if err := (tpm2.PolicyAuthValue{}).Update(calc); err != nil {
			return nil, err
		}
	}
	return calc.Hash().Digest, nil
}

// sealedTemplate is the public area of a sealed data object.
func sealedTemplate(authPolicy []byte, pin bool) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:        true,
			FixedParent:     true,
			UserWithAuth:    false, // the policy is the only way in
			AdminWithPolicy: true,
			NoDA:            !pin,
		},
		AuthPolicy: tpm2.TPM2BDigest{Buffer: authPolicy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
	}
}

// Seal implements Sealer.
func (t *TPM) Seal(ctx context.Context, secret []byte, p Policy) ([]byte, error) {
	if err := checkSecret(secret); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	pcrs, values := sortPCRs(p.PCRs, p.Values)
	pin := len(p.PIN) > 0

	t.mu.Lock()
	defer t.mu.Unlock()
	if values == nil && len(pcrs) > 0 {
		var err error
		if values, err = t.readPCRs(ctx, pcrs); err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
	}
	digest, err := policyDigest(pcrs, values, pin)
	if err != nil {
		return nil, fmt.Errorf("seal: policy digest: %w", err)
	}
	srk, err := t.createSRK(ctx)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	defer flush(ctx, t, srk.handle)

	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{
			Handle: srk.handle,
			Name:   srk.name,
			// Salted with the SRK, encrypting the sensitive area (secret
			// and PIN) on its way to the TPM.
			Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16,
				tpm2.Salted(srk.handle, srk.public),
				tpm2.AESEncryption(128, tpm2.EncryptIn)),
		},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			UserAuth: tpm2.TPM2BAuth{Buffer: p.PIN},
			Data:     tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
		}},
		InPublic: tpm2.New2B(sealedTemplate(digest, pin)),
	}.Execute(t.with(ctx))
	if err != nil {
		return nil, fmt.Errorf("seal: TPM2_Create: %w", classify(err))
	}
	s := Sealed{
		PCRs:    pcrs,
		PIN:     pin,
		Public:  rsp.OutPublic.Bytes(),
		Private: rsp.OutPrivate.Buffer,
		parent:  parentECCSRK,
	}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("seal: TPM returned %w", err)
	}
	return s.MarshalBinary()
}

// Unseal implements Sealer.
func (t *TPM) Unseal(ctx context.Context, blob, pin []byte) ([]byte, error) {
	s, err := openBlob(blob, pin, parentECCSRK, "TPM")
	if err != nil {
		return nil, err
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	srk, err := t.createSRK(ctx)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	defer flush(ctx, t, srk.handle)

	tr := t.with(ctx)
	loaded, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: srk.handle, Name: srk.name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    tpm2.TPM2BPrivate{Buffer: s.Private},
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](s.Public),
	}.Execute(tr)
	if err != nil {
		// A blob sealed by another TPM, or under another owner seed, fails
		// the integrity check here.
		return nil, fmt.Errorf("unseal: TPM2_Load: %w", classify(err))
	}
	defer flush(ctx, t, loaded.ObjectHandle)

	// Salted with the SRK, encrypting the unsealed secret on its way back.
	opts := []tpm2.AuthOption{
		tpm2.Salted(srk.handle, srk.public),
		tpm2.AESEncryption(128, tpm2.EncryptOut),
	}
	if s.PIN {
		opts = append(opts, tpm2.Auth(pin))
	}
	sess, _, err := tpm2.PolicySession(tr, tpm2.TPMAlgSHA256, 16, opts...)
	if err != nil {
		return nil, fmt.Errorf("unseal: start policy session: %w", err)
	}
	defer func() {
		if h := sess.Handle(); h != tpm2.TPMRHNull {
			flush(ctx, t, h)
		}
	}()
	if len(s.PCRs) > 0 {
		if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: pcrSelection(s.PCRs)}).Execute(tr); err != nil {
			return nil, fmt.Errorf("unseal: TPM2_PolicyPCR(sha256 %v): %w", s.PCRs, classify(err))
		}
	}
	if s.PIN {
		if _, err := (tpm2.PolicyAuthValue{PolicySession: sess.Handle()}).Execute(tr); err != nil {
			return nil, fmt.Errorf("unseal: TPM2_PolicyAuthValue: %w", classify(err))
		}
	}
	rsp, err := tpm2.Unseal{
		ItemHandle: tpm2.AuthHandle{Handle: loaded.ObjectHandle, Name: loaded.Name, Auth: sess},
	}.Execute(tr)
	if err != nil {
		return nil, fmt.Errorf("unseal: TPM2_Unseal (PCRs sha256 %v): %w", s.PCRs, classify(err))
	}
	return rsp.OutData.Buffer, nil
}

// checkPIN refuses a missing PIN, or one given for a PIN-less blob.
// openBlob parses a sealed blob for unsealing: it must come from the parent
// the unsealer can load (what names it in errors), and the PIN given must
// fit how it was sealed.
func openBlob(blob, pin []byte, parent uint8, what string) (*Sealed, error) {
	s, err := ParseSealed(blob)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	if s.parent != parent {
		return nil, fmt.Errorf("unseal: %w: blob is not from a %s (parent %d)", ErrMalformed, what, s.parent)
	}
	if err := checkPIN(s, pin); err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	return s, nil
}

func checkPIN(s *Sealed, pin []byte) error {
	switch {
	case s.PIN && len(pin) == 0:
		return fmt.Errorf("%w: blob needs a PIN", ErrAuth)
	case !s.PIN && len(pin) > 0:
		return fmt.Errorf("%w: blob was sealed without a PIN", ErrAuth)
	case len(pin) > MaxPIN:
		return fmt.Errorf("%w: PIN is %d bytes, want at most %d", ErrAuth, len(pin), MaxPIN)
	}
	return nil
}
