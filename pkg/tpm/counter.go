package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// DefaultCounterIndex is the NV index of Lifeboat's anti-rollback counter,
// in the owner range (0x01000000–0x013FFFFF); the low bytes spell "LB".
const DefaultCounterIndex uint32 = 0x01004C42

// MaxAdvance bounds the increments one AdvanceTo may make: each is an NV
// write, and NV wears out.
const MaxAdvance = 1024

// Counter is a monotonic counter for anti-rollback.
type Counter interface {
	// Value returns the counter's value.
	Value(ctx context.Context) (uint64, error)
	// Increment adds one and returns the new value.
	Increment(ctx context.Context) (uint64, error)
	// AdvanceTo increments the counter until it is at least n and returns
	// its value; it never decrements. It fails with ErrAdvanceTooFar,
	// having changed nothing, when that takes more than MaxAdvance steps.
	AdvanceTo(ctx context.Context, n uint64) (uint64, error)
}

// NVCounter is a Counter in a TPM NV index (see the package documentation
// for its attributes).
type NVCounter struct {
	t     *TPM
	index tpm2.TPMHandle
}

// Counter returns the counter at NV index (usually DefaultCounterIndex).
// Call Define once before using it.
func (t *TPM) Counter(index uint32) *NVCounter {
	return &NVCounter{t: t, index: tpm2.TPMHandle(index)}
}

// counterAttributes are the attributes Define gives the index; Written is
// set by the TPM on the first increment.
func counterAttributes() tpm2.TPMANV {
	return tpm2.TPMANV{
		NT:         tpm2.TPMNTCounter,
		OwnerWrite: true,
		OwnerRead:  true,
		AuthRead:   true,
		NoDA:       true,
	}
}

func (c *NVCounter) public() tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{
		NVIndex:    c.index,
		NameAlg:    tpm2.TPMAlgSHA256,
		Attributes: counterAttributes(),
		DataSize:   8,
	}
}

// Define defines the counter's NV index with owner authorization and gives
// it its first value. It is idempotent: an index already defined with the
// same attributes is kept (and initialized if it never was); one defined
// differently is ErrCounterMismatch.
func (c *NVCounter) Define(ctx context.Context) error {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	h, written, err := c.lookup(ctx)
	if errors.Is(err, ErrNoCounter) {
		_, err = tpm2.NVDefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			PublicInfo: tpm2.New2B(c.public()),
		}.Execute(c.t.with(ctx))
		if err != nil {
			return fmt.Errorf("define counter: TPM2_NV_DefineSpace(%#x): %w", uint32(c.index), classify(err))
		}
		h, written, err = c.lookup(ctx)
	}
	if err != nil {
		return fmt.Errorf("define counter: %w", err)
	}
	if !written {
		if err := c.increment(ctx, h); err != nil {
			return fmt.Errorf("define counter: %w", err)
		}
	}
	return nil
}

// Undefine deletes the counter's NV index. A counter defined again later
// starts no lower than the largest value any counter on the TPM ever held.
func (c *NVCounter) Undefine(ctx context.Context) error {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	if _, _, err := c.lookup(ctx); err != nil {
		return fmt.Errorf("undefine counter: %w", err)
	}
	_, err := tpm2.NVUndefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: c.index},
	}.Execute(c.t.with(ctx))
	if err != nil {
		return fmt.Errorf("undefine counter: TPM2_NV_UndefineSpace(%#x): %w", uint32(c.index), classify(err))
	}
	return nil
}

// lookup reads the index's public area, checks that it is a counter with
// our attributes, and returns its named handle and whether it was written.
func (c *NVCounter) lookup(ctx context.Context) (tpm2.NamedHandle, bool, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: c.index}.Execute(c.t.with(ctx))
	if errors.Is(err, tpm2.TPMRCHandle) {
		return tpm2.NamedHandle{}, false, fmt.Errorf("%w: NV index %#x", ErrNoCounter, uint32(c.index))
	}
	if err != nil {
		return tpm2.NamedHandle{}, false, fmt.Errorf("TPM2_NV_ReadPublic(%#x): %w", uint32(c.index), err)
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return tpm2.NamedHandle{}, false, fmt.Errorf("TPM2_NV_ReadPublic(%#x): %w", uint32(c.index), err)
	}
	got := *pub
	written := got.Attributes.Written
	got.Attributes.Written = false
	want := c.public()
	if got.NVIndex != want.NVIndex || got.NameAlg != want.NameAlg || got.Attributes != want.Attributes ||
		got.DataSize != want.DataSize || len(got.AuthPolicy.Buffer) != 0 {
		return tpm2.NamedHandle{}, false, fmt.Errorf("%w: NV index %#x has %+v, want %+v",
			ErrCounterMismatch, uint32(c.index), got, want)
	}
	return tpm2.NamedHandle{Handle: c.index, Name: rsp.NVName}, written, nil
}

// read reads the counter; the caller holds c.t.mu.
func (c *NVCounter) read(ctx context.Context) (tpm2.NamedHandle, uint64, error) {
	h, written, err := c.lookup(ctx)
	if err != nil {
		return h, 0, err
	}
	if !written {
		return h, 0, fmt.Errorf("%w: NV index %#x never incremented", ErrNoCounter, uint32(c.index))
	}
	rsp, err := tpm2.NVRead{
		// AUTHREAD with the index's empty authValue.
		AuthHandle: tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    h,
		Size:       8,
	}.Execute(c.t.with(ctx))
	if err != nil {
		return h, 0, fmt.Errorf("TPM2_NV_Read(%#x): %w", uint32(c.index), classify(err))
	}
	if len(rsp.Data.Buffer) != 8 {
		return h, 0, fmt.Errorf("TPM2_NV_Read(%#x): %d bytes, want 8", uint32(c.index), len(rsp.Data.Buffer))
	}
	return h, binary.BigEndian.Uint64(rsp.Data.Buffer), nil
}

func (c *NVCounter) increment(ctx context.Context, h tpm2.NamedHandle) error {
	_, err := tpm2.NVIncrement{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    h,
	}.Execute(c.t.with(ctx))
	if err != nil {
		return fmt.Errorf("TPM2_NV_Increment(%#x): %w", uint32(c.index), classify(err))
	}
	return nil
}

// Value implements Counter.
func (c *NVCounter) Value(ctx context.Context) (uint64, error) {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	_, v, err := c.read(ctx)
	if err != nil {
		return 0, fmt.Errorf("read counter: %w", err)
	}
	return v, nil
}

// Increment implements Counter.
func (c *NVCounter) Increment(ctx context.Context) (uint64, error) {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	h, _, err := c.read(ctx)
	if err != nil {
		return 0, fmt.Errorf("increment counter: %w", err)
	}
	if err := c.increment(ctx, h); err != nil {
		return 0, fmt.Errorf("increment counter: %w", err)
	}
	_, v, err := c.read(ctx)
	if err != nil {
		return 0, fmt.Errorf("increment counter: %w", err)
	}
	return v, nil
}

// AdvanceTo implements Counter.
func (c *NVCounter) AdvanceTo(ctx context.Context, n uint64) (uint64, error) {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	h, v, err := c.read(ctx)
	if err != nil {
		return 0, fmt.Errorf("advance counter to %d: %w", n, err)
	}
	if v < n && n-v > MaxAdvance {
		return v, fmt.Errorf("advance counter to %d: %w: at %d, %d steps exceed %d",
			n, ErrAdvanceTooFar, v, n-v, MaxAdvance)
	}
	for v < n {
		if err := c.increment(ctx, h); err != nil {
			return v, fmt.Errorf("advance counter to %d: at %d: %w", n, v, err)
		}
		_, nv, err := c.read(ctx)
		if err != nil {
			return v, fmt.Errorf("advance counter to %d: %w", n, err)
		}
		v = nv
	}
	return v, nil
}
