package tpm_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/tpm"
	"github.com/lifeboat-update/lifeboat/qemu/vmtest"
)

// TestSealUnsealVM seals and unseals through the kernel's resource manager,
// /dev/tpmrm0 (tpm_tis on QEMU's swtpm), and checks refusal after a PCR
// extend.
func TestSealUnsealVM(t *testing.T) {
	if !vmtest.Run(t, vmtest.Options{TPM: true}) {
		return
	}
	ctx := testCtx(t)
	tp, err := tpm.Open(tpm.DefaultDevice)
	if err != nil {
		t.Fatalf("Open(%s) = %v", tpm.DefaultDevice, err)
	}
	defer tp.Close()

	pcrs, err := tp.ReadPCRs(ctx, []int{7, 11})
	if err != nil {
		t.Fatalf("ReadPCRs(7, 11) = %v", err)
	}
	t.Logf("PCR 7 = %x, PCR 11 = %x", pcrs[0], pcrs[1])

	secret := bytes.Repeat([]byte{0x5A}, 64)
	for _, p := range []tpm.Policy{
		{PCRs: []int{7, 11}},
		{PCRs: []int{7, 11}, PIN: []byte("2468")},
	} {
		blob, err := tp.Seal(ctx, secret, p)
		if err != nil {
			t.Fatalf("Seal(%v, PIN %q) = %v", p.PCRs, p.PIN, err)
		}
		if got, err := tp.Unseal(ctx, blob, p.PIN); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("Unseal(PIN %q) = %x, %v, want %x", p.PIN, got, err, secret)
		}
		if len(p.PIN) > 0 {
			if got, err := tp.Unseal(ctx, blob, []byte("1357")); !errors.Is(err, tpm.ErrAuth) {
				t.Fatalf("Unseal(wrong PIN) = %x, %v, want %v", got, err, tpm.ErrAuth)
			}
		}
		if err := tp.ExtendPCR(ctx, 11, digestOf("leaving the ramdisk")); err != nil {
			t.Fatalf("ExtendPCR(11) = %v", err)
		}
		if got, err := tp.Unseal(ctx, blob, p.PIN); !errors.Is(err, tpm.ErrPolicy) {
			t.Fatalf("Unseal() after extending PCR 11 = %x, %v, want %v", got, err, tpm.ErrPolicy)
		} else {
			t.Logf("refused after extend: %v", err)
		}
	}

	// The identity key signs through the resource manager too.
	k, err := tp.IdentityKey(ctx)
	if err != nil {
		t.Fatalf("IdentityKey() = %v", err)
	}
	defer k.Close()
	signSteps(t, k)
}
