package tpm_test

import (
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/lifeboat-update/lifeboat/pkg/tpm"
	"github.com/lifeboat-update/lifeboat/pkg/tpm/tpmtest"
)

// counterSteps drives any Counter through the same sequence, relative to
// its starting value.
func counterSteps(t *testing.T, c tpm.Counter) uint64 {
	t.Helper()
	ctx := testCtx(t)
	start, err := c.Value(ctx)
	if err != nil {
		t.Fatalf("Value() = %v", err)
	}
	if v, err := c.Increment(ctx); err != nil || v != start+1 {
		t.Fatalf("Increment() = %d, %v, want %d", v, err, start+1)
	}
	for _, tc := range []struct {
		n, want uint64
		err     error
	}{
		{start + 5, start + 5, nil},
		{start + 5, start + 5, nil},                                   // already there
		{start + 2, start + 5, nil},                                   // never goes back
		{0, start + 5, nil},                                           // never goes back
		{start + 6, start + 6, nil},                                   // one step
		{start + 6 + tpm.MaxAdvance, start + 6 + tpm.MaxAdvance, nil}, // the bound itself
		{start + 7 + 2*tpm.MaxAdvance, start + 6 + tpm.MaxAdvance, tpm.ErrAdvanceTooFar},
		{^uint64(0), start + 6 + tpm.MaxAdvance, tpm.ErrAdvanceTooFar},
	} {
		v, err := c.AdvanceTo(ctx, tc.n)
		if !errors.Is(err, tc.err) {
			t.Fatalf("AdvanceTo(start+%d) = %d, %v, want %v", tc.n-start, v, err, tc.err)
		}
		if got, err := c.Value(ctx); err != nil || got != tc.want || (tc.err == nil && v != tc.want) {
			t.Fatalf("AdvanceTo(start+%d) = %d; Value() = %d, %v, want %d", tc.n-start, v, got, err, tc.want)
		}
	}
	v, err := c.Value(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestFakeCounter(t *testing.T) {
	counterSteps(t, tpm.NewFake())
}

func TestNVCounter(t *testing.T) {
	ctx := testCtx(t)
	sim := tpmtest.Start(t)
	c := sim.Open(t).Counter(tpm.DefaultCounterIndex)

	for _, f := range []func() (uint64, error){
		func() (uint64, error) { return c.Value(ctx) },
		func() (uint64, error) { return c.Increment(ctx) },
		func() (uint64, error) { return c.AdvanceTo(ctx, 3) },
	} {
		if v, err := f(); !errors.Is(err, tpm.ErrNoCounter) {
			t.Fatalf("before Define: %d, %v, want %v", v, err, tpm.ErrNoCounter)
		}
	}
	if err := c.Define(ctx); err != nil {
		t.Fatalf("Define() = %v", err)
	}
	if err := c.Define(ctx); err != nil {
		t.Fatalf("Define() again = %v, want nil (idempotent)", err)
	}
	// The TPM initializes a counter to the largest value any counter ever
	// had (none: 0) on the first increment, which Define does.
	if v, err := c.Value(ctx); err != nil || v != 1 {
		t.Fatalf("Value() of a new counter on a new TPM = %d, %v, want 1", v, err)
	}
	last := counterSteps(t, c)

	// The counter survives a restart (and the connection is new).
	sim.Restart(t)
	c = sim.Open(t).Counter(tpm.DefaultCounterIndex)
	if v, err := c.Value(ctx); err != nil || v != last {
		t.Fatalf("Value() after restart = %d, %v, want %d", v, err, last)
	}
	if err := c.Define(ctx); err != nil {
		t.Fatalf("Define() after restart = %v", err)
	}
	if v, err := c.Value(ctx); err != nil || v != last {
		t.Fatalf("Value() after Define() after restart = %d, %v, want %d", v, err, last)
	}

	// Undefining and redefining does not roll it back.
	if err := c.Undefine(ctx); err != nil {
		t.Fatalf("Undefine() = %v", err)
	}
	if v, err := c.Value(ctx); !errors.Is(err, tpm.ErrNoCounter) {
		t.Fatalf("Value() after Undefine() = %d, %v, want %v", v, err, tpm.ErrNoCounter)
	}
	if err := c.Define(ctx); err != nil {
		t.Fatalf("Define() after Undefine() = %v", err)
	}
	if v, err := c.Value(ctx); err != nil || v < last {
		t.Fatalf("Value() of a redefined counter = %d, %v, want at least %d", v, err, last)
	} else {
		t.Logf("counter at %d undefined and redefined: %d", last, v)
	}
}

// Another kind of NV index at the counter's handle is refused, not read.
func TestNVCounterMismatch(t *testing.T) {
	tp := tpmtest.Start(t).Open(t)
	const index = tpm.DefaultCounterIndex + 1
	for _, tc := range []struct {
		name  string
		attrs tpm2.TPMANV
	}{
		{"ordinary index", tpm2.TPMANV{NT: tpm2.TPMNTOrdinary, OwnerWrite: true, AuthRead: true, NoDA: true}},
		{"counter anyone may increment", tpm2.TPMANV{NT: tpm2.TPMNTCounter, OwnerWrite: true, AuthWrite: true, AuthRead: true, OwnerRead: true, NoDA: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			defineRaw(t, tp, index, tc.attrs)
			c := tp.Counter(index)
			if err := c.Define(ctx); !errors.Is(err, tpm.ErrCounterMismatch) {
				t.Errorf("Define() = %v, want %v", err, tpm.ErrCounterMismatch)
			}
			if v, err := c.Value(ctx); !errors.Is(err, tpm.ErrCounterMismatch) {
				t.Errorf("Value() = %d, %v, want %v", v, err, tpm.ErrCounterMismatch)
			}
			if v, err := c.AdvanceTo(ctx, 1); !errors.Is(err, tpm.ErrCounterMismatch) {
				t.Errorf("AdvanceTo(1) = %d, %v, want %v", v, err, tpm.ErrCounterMismatch)
			}
			if err := c.Undefine(ctx); !errors.Is(err, tpm.ErrCounterMismatch) {
				t.Errorf("Undefine() = %v, want %v", err, tpm.ErrCounterMismatch)
			}
			undefineRaw(t, tp, index)
		})
	}
}

func defineRaw(t *testing.T, tr transport.TPM, index uint32, attrs tpm2.TPMANV) {
	t.Helper()
	_, err := tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex:    tpm2.TPMHandle(index),
			NameAlg:    tpm2.TPMAlgSHA256,
			Attributes: attrs,
			DataSize:   8,
		}),
	}.Execute(tr)
	if err != nil {
		t.Fatalf("TPM2_NV_DefineSpace(%#x) = %v", index, err)
	}
}

func undefineRaw(t *testing.T, tr transport.TPM, index uint32) {
	t.Helper()
	_, err := tpm2.NVUndefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index)},
	}.Execute(tr)
	if err != nil {
		t.Fatalf("TPM2_NV_UndefineSpace(%#x) = %v", index, err)
	}
}
