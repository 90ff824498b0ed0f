package tpm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/lifeboat-update/lifeboat/pkg/tpm"
	"github.com/lifeboat-update/lifeboat/pkg/tpm/tpmtest"
)

// testCtx bounds every TPM conversation of a test.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// device is what the shared tests exercise: the real TPM on swtpm, or the
// Fake.
type device interface {
	tpm.Sealer
	tpm.PCRBank
}

type target struct {
	name string
	// open returns the device and a reboot function that returns the
	// device after a restart (PCRs reset, NV kept).
	open func(t *testing.T) (device, func() device)
}

func targets() []target {
	return []target{
		{"swtpm", func(t *testing.T) (device, func() device) {
			sim := tpmtest.Start(t)
			return sim.Open(t), func() device {
				sim.Restart(t)
				return sim.Open(t)
			}
		}},
		{"Fake", func(t *testing.T) (device, func() device) {
			f := tpm.NewFake()
			return f, func() device { f.Reboot(); return f }
		}},
	}
}

func digestOf(s string) []byte {
	d := sha256.Sum256([]byte(s))
	return d[:]
}

// extended is SHA-256(old || digest), a PCR's value after an extend.
func extended(old, digest []byte) []byte {
	h := sha256.New()
	h.Write(old)
	h.Write(digest)
	return h.Sum(nil)
}

func TestSealUnseal(t *testing.T) {
	secret := bytes.Repeat([]byte{0xA5}, 64)
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				policy tpm.Policy
				pin    []byte
			}{
				{"pcr7+11", tpm.Policy{PCRs: []int{7, 11}}, nil},
				{"pcr11+7 unsorted", tpm.Policy{PCRs: []int{11, 7}}, nil},
				{"pcr7+11 with PIN", tpm.Policy{PCRs: []int{7, 11}, PIN: []byte("1234")}, []byte("1234")},
				{"nine PCRs", tpm.Policy{PCRs: []int{0, 1, 2, 3, 4, 5, 7, 11, 14}}, nil},
			} {
				t.Run(tc.name, func(t *testing.T) {
					ctx := testCtx(t)
					dev, reboot := tg.open(t)
					blob, err := dev.Seal(ctx, secret, tc.policy)
					if err != nil {
						t.Fatalf("Seal(%v) = %v", tc.policy.PCRs, err)
					}
					got, err := dev.Unseal(ctx, blob, tc.pin)
					if err != nil || !bytes.Equal(got, secret) {
						t.Fatalf("Unseal() = %x, %v, want %x", got, err, secret)
					}

					// A measurement into a sealed PCR locks the secret away.
					if err := dev.ExtendPCR(ctx, 11, digestOf("something else booted")); err != nil {
						t.Fatalf("ExtendPCR(11) = %v", err)
					}
					got, err = dev.Unseal(ctx, blob, tc.pin)
					if !errors.Is(err, tpm.ErrPolicy) {
						t.Fatalf("Unseal() after extending PCR 11 = %x, %v, want %v", got, err, tpm.ErrPolicy)
					}
					if tg.name == "swtpm" && !errors.Is(err, tpm2.TPMRCPolicyFail) {
						t.Errorf("Unseal() after extending PCR 11 = %v, want it to wrap %v", err, tpm2.TPMRCPolicyFail)
					}
					t.Logf("refused: %v", err)

					// An unselected PCR does not matter.
					if err := dev.ExtendPCR(ctx, 16, digestOf("debug")); err != nil {
						t.Fatalf("ExtendPCR(16) = %v", err)
					}

					// After a reboot the PCRs are back where they were.
					dev = reboot()
					got, err = dev.Unseal(ctx, blob, tc.pin)
					if err != nil || !bytes.Equal(got, secret) {
						t.Fatalf("Unseal() after reboot = %x, %v, want %x", got, err, secret)
					}
				})
			}
		})
	}
}

func TestSealPredictedValues(t *testing.T) {
	secret := []byte("volume key for the next boot")
	next := digestOf("new kernel")
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			ctx := testCtx(t)
			dev, _ := tg.open(t)
			now, err := dev.ReadPCRs(ctx, []int{7, 11})
			if err != nil {
				t.Fatalf("ReadPCRs(7, 11) = %v", err)
			}
			blob, err := dev.Seal(ctx, secret, tpm.Policy{PCRs: []int{7, 11}, Values: [][]byte{now[0], extended(now[1], next)}})
			if err != nil {
				t.Fatalf("Seal(predicted) = %v", err)
			}
			if got, err := dev.Unseal(ctx, blob, nil); !errors.Is(err, tpm.ErrPolicy) {
				t.Fatalf("Unseal() before the new kernel is measured = %q, %v, want %v", got, err, tpm.ErrPolicy)
			}
			if err := dev.ExtendPCR(ctx, 11, next); err != nil {
				t.Fatalf("ExtendPCR(11) = %v", err)
			}
			after, err := dev.ReadPCRs(ctx, []int{11})
			if err != nil || !bytes.Equal(after[0], extended(now[1], next)) {
				t.Fatalf("ReadPCRs(11) after extend = %x, %v, want %x", after, err, extended(now[1], next))
			}
			if got, err := dev.Unseal(ctx, blob, nil); err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("Unseal() after the new kernel is measured = %q, %v, want %q", got, err, secret)
			}
		})
	}
}

func TestSealPIN(t *testing.T) {
	secret := []byte("k")
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			ctx := testCtx(t)
			dev, _ := tg.open(t)
			withPIN, err := dev.Seal(ctx, secret, tpm.Policy{PCRs: []int{7}, PIN: []byte("correct horse")})
			if err != nil {
				t.Fatalf("Seal(PIN) = %v", err)
			}
			noPIN, err := dev.Seal(ctx, secret, tpm.Policy{PCRs: []int{7}})
			if err != nil {
				t.Fatalf("Seal() = %v", err)
			}
			for _, tc := range []struct {
				name string
				blob []byte
				pin  []byte
				want error
			}{
				{"wrong PIN", withPIN, []byte("battery staple"), tpm.ErrAuth},
				{"missing PIN", withPIN, nil, tpm.ErrAuth},
				{"PIN for a PIN-less blob", noPIN, []byte("1234"), tpm.ErrAuth},
				{"right PIN", withPIN, []byte("correct horse"), nil},
				{"no PIN", noPIN, nil, nil},
			} {
				got, err := dev.Unseal(ctx, tc.blob, tc.pin)
				if !errors.Is(err, tc.want) || (tc.want == nil && !bytes.Equal(got, secret)) {
					t.Errorf("%s: Unseal(%q) = %q, %v, want %q, %v", tc.name, tc.pin, got, err, secret, tc.want)
				}
			}
		})
	}
}

func TestSealInvalid(t *testing.T) {
	ok := []byte("secret")
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			ctx := testCtx(t)
			dev, _ := tg.open(t)
			for _, tc := range []struct {
				name   string
				secret []byte
				policy tpm.Policy
			}{
				{"empty secret", nil, tpm.Policy{PCRs: []int{7}}},
				{"secret too long", make([]byte, tpm.MaxSecret+1), tpm.Policy{PCRs: []int{7}}},
				{"no PCRs", ok, tpm.Policy{}},
				{"NoPCRs with PCRs", ok, tpm.Policy{NoPCRs: true, PCRs: []int{7}}},
				{"NoPCRs with values", ok, tpm.Policy{NoPCRs: true, Values: [][]byte{}}},
				{"PCR 24", ok, tpm.Policy{PCRs: []int{24}}},
				{"PCR -1", ok, tpm.Policy{PCRs: []int{-1}}},
				{"PCR twice", ok, tpm.Policy{PCRs: []int{7, 7}}},
				{"too few values", ok, tpm.Policy{PCRs: []int{7, 11}, Values: [][]byte{make([]byte, 32)}}},
				{"short value", ok, tpm.Policy{PCRs: []int{7}, Values: [][]byte{make([]byte, 20)}}},
				{"PIN too long", ok, tpm.Policy{PCRs: []int{7}, PIN: make([]byte, tpm.MaxPIN+1)}},
			} {
				if blob, err := dev.Seal(ctx, tc.secret, tc.policy); err == nil {
					t.Errorf("%s: Seal(%d bytes, %+v) = %x, nil, want an error", tc.name, len(tc.secret), tc.policy, blob)
				}
			}
			if blob, err := dev.Seal(ctx, make([]byte, tpm.MaxSecret), tpm.Policy{PCRs: []int{7}}); err != nil {
				t.Errorf("Seal(%d bytes) = %x, %v, want success", tpm.MaxSecret, blob, err)
			}
			for _, tc := range []struct {
				name string
				blob []byte
			}{
				{"empty", nil},
				{"garbage", []byte("this is not a sealed blob at all")},
			} {
				if got, err := dev.Unseal(ctx, tc.blob, nil); !errors.Is(err, tpm.ErrMalformed) {
					t.Errorf("%s: Unseal(%q) = %q, %v, want %v", tc.name, tc.blob, got, err, tpm.ErrMalformed)
				}
			}
		})
	}
}

// A blob sealed with NoPCRs unseals whatever the PCRs hold, on its TPM
// only.
func TestSealNoPCRs(t *testing.T) {
	secret := []byte("volume passphrase")
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			ctx := testCtx(t)
			dev, reboot := tg.open(t)
			other, _ := tg.open(t)
			for _, pin := range [][]byte{nil, []byte("1234")} {
				blob, err := dev.Seal(ctx, secret, tpm.Policy{NoPCRs: true, PIN: pin})
				if err != nil {
					t.Fatalf("Seal(NoPCRs, PIN %q) = %v", pin, err)
				}
				s, err := tpm.ParseSealed(blob)
				if err != nil || len(s.PCRs) != 0 || s.PIN != (pin != nil) {
					t.Fatalf("ParseSealed() = %+v, %v, want no PCRs", s, err)
				}
				for _, pcr := range []int{7, 11} {
					if err := dev.ExtendPCR(ctx, pcr, digestOf("anything booted")); err != nil {
						t.Fatalf("ExtendPCR(%d) = %v", pcr, err)
					}
				}
				if got, err := dev.Unseal(ctx, blob, pin); err != nil || !bytes.Equal(got, secret) {
					t.Fatalf("Unseal() after extends = %q, %v, want %q", got, err, secret)
				}
				if pin != nil {
					if got, err := dev.Unseal(ctx, blob, []byte("4321")); !errors.Is(err, tpm.ErrAuth) {
						t.Errorf("Unseal(wrong PIN) = %q, %v, want %v", got, err, tpm.ErrAuth)
					}
				}
				if got, err := other.Unseal(ctx, blob, pin); err == nil {
					t.Errorf("Unseal() on another device = %q, nil, want an error", got)
				}
				dev = reboot()
				if got, err := dev.Unseal(ctx, blob, pin); err != nil || !bytes.Equal(got, secret) {
					t.Fatalf("Unseal() after reboot = %q, %v, want %q", got, err, secret)
				}
			}
		})
	}
}

// A blob is bound to the TPM (or Fake) that sealed it.
func TestUnsealOtherDevice(t *testing.T) {
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, _ := tg.open(t)
			b, _ := tg.open(t)
			blob, err := a.Seal(ctx, []byte("only for a"), tpm.Policy{PCRs: []int{7}})
			if err != nil {
				t.Fatalf("Seal() = %v", err)
			}
			if got, err := b.Unseal(ctx, blob, nil); err == nil {
				t.Fatalf("Unseal() on another device = %q, nil, want an error", got)
			} else {
				t.Logf("refused: %v", err)
			}
		})
	}
}

// Fake blobs and TPM blobs are not interchangeable.
func TestUnsealWrongKind(t *testing.T) {
	ctx := testCtx(t)
	sim := tpmtest.Start(t)
	real := sim.Open(t)
	fake := tpm.NewFake()
	p := tpm.Policy{PCRs: []int{7}}
	realBlob, err := real.Seal(ctx, []byte("x"), p)
	if err != nil {
		t.Fatalf("TPM.Seal() = %v", err)
	}
	fakeBlob, err := fake.Seal(ctx, []byte("x"), p)
	if err != nil {
		t.Fatalf("Fake.Seal() = %v", err)
	}
	if got, err := fake.Unseal(ctx, realBlob, nil); !errors.Is(err, tpm.ErrMalformed) {
		t.Errorf("Fake.Unseal(TPM blob) = %q, %v, want %v", got, err, tpm.ErrMalformed)
	}
	if got, err := real.Unseal(ctx, fakeBlob, nil); !errors.Is(err, tpm.ErrMalformed) {
		t.Errorf("TPM.Unseal(Fake blob) = %q, %v, want %v", got, err, tpm.ErrMalformed)
	}
}

// The Fake computes the same PCR values as the TPM.
func TestFakePCRsMatchTPM(t *testing.T) {
	ctx := testCtx(t)
	real := tpmtest.Start(t).Open(t)
	fake := tpm.NewFake()
	pcrs := []int{23, 0, 7, 11, 16, 1, 2, 3, 4, 5}
	for _, d := range []tpm.PCRBank{real, fake} {
		for i, p := range pcrs {
			if err := d.ExtendPCR(ctx, p, digestOf(string(rune('a'+i)))); err != nil {
				t.Fatalf("ExtendPCR(%d) = %v", p, err)
			}
		}
	}
	want, err := fake.ReadPCRs(ctx, pcrs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := real.ReadPCRs(ctx, pcrs)
	if err != nil {
		t.Fatalf("ReadPCRs(%v) = %v", pcrs, err)
	}
	for i := range pcrs {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("PCR %d = %x, want %x (as the Fake computes it)", pcrs[i], got[i], want[i])
		}
	}
	for _, bad := range [][]int{nil, {24}, {3, 3}} {
		if _, err := real.ReadPCRs(ctx, bad); err == nil {
			t.Errorf("ReadPCRs(%v) = nil error, want an error", bad)
		}
	}
	if err := real.ExtendPCR(ctx, 7, []byte("short")); err == nil {
		t.Errorf("ExtendPCR(7, 5 bytes) = nil, want an error")
	}
}
