package tpm

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// NumPCRs is the number of PCRs in a PC Client TPM's SHA-256 bank.
const NumPCRs = 24

// PCRBank reads and extends the SHA-256 PCR bank.
type PCRBank interface {
	// ReadPCRs returns the values of the given PCRs, in the order given.
	ReadPCRs(ctx context.Context, pcrs []int) ([][]byte, error)
	// ExtendPCR extends a PCR with a SHA-256 digest:
	// PCR = SHA-256(PCR || digest).
	ExtendPCR(ctx context.Context, pcr int, digest []byte) error
}

// pcrSelection is the SHA-256 selection of pcrs, which must be valid.
func pcrSelection(pcrs []int) tpm2.TPMLPCRSelection {
	u := make([]uint, len(pcrs))
	for i, p := range pcrs {
		u[i] = uint(p)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      tpm2.TPMAlgSHA256,
		PCRSelect: tpm2.PCClientCompatible.PCRs(u...),
	}}}
}

func checkPCRs(pcrs []int) error {
	if len(pcrs) == 0 {
		return fmt.Errorf("no PCRs selected")
	}
	for i, p := range pcrs {
		if p < 0 || p >= NumPCRs {
			return fmt.Errorf("PCR %d out of range [0, %d)", p, NumPCRs)
		}
		if slices.Contains(pcrs[:i], p) {
			return fmt.Errorf("PCR %d selected twice", p)
		}
	}
	return nil
}

// ReadPCRs implements PCRBank.
func (t *TPM) ReadPCRs(ctx context.Context, pcrs []int) ([][]byte, error) {
	if err := checkPCRs(pcrs); err != nil {
		return nil, fmt.Errorf("read PCRs %v: %w", pcrs, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.readPCRs(ctx, pcrs)
}

// readPCRs reads valid pcrs; the caller holds t.mu. TPM2_PCR_Read returns at
// most 8 digests per call, so it reads in rounds.
func (t *TPM) readPCRs(ctx context.Context, pcrs []int) ([][]byte, error) {
	got := make(map[int][]byte, len(pcrs))
	sorted := slices.Sorted(slices.Values(pcrs))
	for len(sorted) > 0 {
		rsp, err := tpm2.PCRRead{PCRSelectionIn: pcrSelection(sorted)}.Execute(t.with(ctx))
		if err != nil {
			return nil, fmt.Errorf("TPM2_PCR_Read(sha256 %v): %w", sorted, err)
		}
		var returned []int
		for _, s := range rsp.PCRSelectionOut.PCRSelections {
			if s.Hash != tpm2.TPMAlgSHA256 {
				continue
			}
			for i, b := range s.PCRSelect {
				for bit := range 8 {
					if b&(1<<bit) != 0 {
						returned = append(returned, 8*i+bit)
					}
				}
			}
		}
		if len(returned) == 0 || len(returned) != len(rsp.PCRValues.Digests) {
			return nil, fmt.Errorf("TPM2_PCR_Read(sha256 %v): TPM returned %d digests for PCRs %v (no SHA-256 bank?)",
				sorted, len(rsp.PCRValues.Digests), returned)
		}
		for i, p := range returned {
			d := rsp.PCRValues.Digests[i].Buffer
			if len(d) != sha256.Size || !slices.Contains(sorted, p) {
				return nil, fmt.Errorf("TPM2_PCR_Read(sha256 %v): bad digest for PCR %d", sorted, p)
			}
			got[p] = d
		}
		sorted = slices.DeleteFunc(sorted, func(p int) bool { return got[p] != nil })
	}
	out := make([][]byte, len(pcrs))
	for i, p := range pcrs {
		out[i] = got[p]
	}
	return out, nil
}

// ExtendPCR implements PCRBank.
func (t *TPM) ExtendPCR(ctx context.Context, pcr int, digest []byte) error {
	if err := checkPCRs([]int{pcr}); err != nil {
		return fmt.Errorf("extend PCR: %w", err)
	}
	if len(digest) != sha256.Size {
		return fmt.Errorf("extend PCR %d: digest is %d bytes, want %d", pcr, len(digest), sha256.Size)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{
			HashAlg: tpm2.TPMAlgSHA256,
			Digest:  digest,
		}}},
	}.Execute(t.with(ctx))
	if err != nil {
		return fmt.Errorf("TPM2_PCR_Extend(%d): %w", pcr, classify(err))
	}
	return nil
}
