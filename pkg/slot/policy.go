package slot

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// The read-only entries: never tried, never marked, never written by an
// update.
const (
	// Recovery is the Lifeboat ramdisk's entry, always last in the boot
	// order: what boots when no slot can.
	Recovery Name = "recovery"
	// Factory is an optional slot holding the image the device left the
	// factory with, booted before Recovery when no updatable slot can.
	Factory Name = "factory"
)

// ReadOnly reports whether n is a read-only entry: Recovery or Factory.
func (n Name) ReadOnly() bool { return n == Recovery || n == Factory }

// Try counts: how many boots a slot gets before the bootloader gives up on it.
const (
	// DefaultTries is the count a good slot gets back when it marks itself
	// good.
	DefaultTries = 3
	// MaxTries bounds every count: U-Boot's setexpr counts in hexadecimal
	// and its test -gt in decimal, which agree only on single digits.
	MaxTries = 9
)

// Errors of the slot policy; each refusal wraps one of them.
var (
	// ErrBooted: the slot is the one running; a system does not try or
	// overwrite itself.
	ErrBooted = errors.New("slot is the booted slot")
	// ErrNotBooted: the slot is not the one running, or the booted slot
	// cannot be told; only the running system can vouch for itself.
	ErrNotBooted = errors.New("slot is not the booted slot")
	// ErrReadOnly: the slot is a read-only entry (Recovery, Factory).
	ErrReadOnly = errors.New("read-only slot")
	// ErrOnTrial: the running slot is itself on trial and has not marked
	// itself good; it must not start another trial.
	ErrOnTrial = errors.New("booted slot is on trial")
	// ErrNoFallback: no good slot would remain to fall back to.
	ErrNoFallback = errors.New("no good slot to fall back to")
	// ErrTries: a try count outside 1..MaxTries.
	ErrTries = errors.New("try count out of range")
)

// Policy is the slot state machine over any Bootloader: it refuses the
// transitions that could leave a device without a verified system, and
// passes the rest to the bootloader, which records each as one power-cut
// safe write. The rules:
//
//   - Try refuses unknown and read-only slots, the booted slot, a count
//     outside 1..MaxTries, a booted slot that is itself still on trial,
//     and a trial with no good slot left to fall back to.
//   - MarkGood marks the booted slot only, unless forced; never a
//     read-only one.
//   - MarkBad refuses unknown and read-only slots. It may mark the booted
//     slot (that is how a running system gives up on itself).
//   - Rollback marks bad the slot on trial, or else the booted slot, and
//     checks that a good slot boots next.
//
// Every method reads the bootloader's Status first; none caches it.
type Policy struct {
	Bootloader Bootloader
}

// Status returns the bootloader's status.
func (p *Policy) Status(ctx context.Context) (Status, error) {
	return p.Bootloader.Status(ctx)
}

// find returns s's status in st.
func find(st Status, s Name) (SlotStatus, bool) {
	i := slices.IndexFunc(st.Slots, func(ss SlotStatus) bool { return ss.Name == s })
	if i < 0 {
		return SlotStatus{}, false
	}
	return st.Slots[i], true
}

// fallback returns the first good slot other than s, in the order the
// status lists them, read-only entries included.
func fallback(st Status, s Name) (Name, bool) {
	for _, ss := range st.Slots {
		if ss.Name != s && ss.State == Good {
			return ss.Name, true
		}
	}
	return "", false
}

// writable returns s's status, refusing unknown and read-only slots.
func writable(st Status, s Name) (SlotStatus, error) {
	ss, ok := find(st, s)
	if !ok {
		return ss, fmt.Errorf("slot %q: %w", s, ErrUnknownSlot)
	}
	if s.ReadOnly() {
		return ss, fmt.Errorf("slot %s: %w", s, ErrReadOnly)
	}
	return ss, nil
}

// Try makes s boot next, on trial, for at most tries boots.
func (p *Policy) Try(ctx context.Context, s Name, tries int) error {
	st, err := p.Bootloader.Status(ctx)
	if err != nil {
		return err
	}
	if _, err := writable(st, s); err != nil {
		return fmt.Errorf("try: %w", err)
	}
	if tries < 1 || tries > MaxTries {
		return fmt.Errorf("try %s %d times: %w (1..%d)", s, tries, ErrTries, MaxTries)
	}
	if s == st.Booted {
		return fmt.Errorf("try %s: %w: a system does not try itself", s, ErrBooted)
	}
	if b, ok := find(st, st.Booted); ok && b.State == Trying {
		return fmt.Errorf("try %s: %w: mark %s good first", s, ErrOnTrial, st.Booted)
	}
	if _, ok := fallback(st, s); !ok {
		return fmt.Errorf("try %s: %w", s, ErrNoFallback)
	}
	return p.Bootloader.Try(ctx, s, tries)
}

// MarkGood records that s booted well. An empty s is the booted slot. A
// slot other than the booted one is refused unless force is set.
func (p *Policy) MarkGood(ctx context.Context, s Name, force bool) (Name, error) {
	st, err := p.Bootloader.Status(ctx)
	if err != nil {
		return "", err
	}
	if s == "" {
		if st.Booted == "" {
			return "", fmt.Errorf("mark good: %w: the booted slot cannot be told; name one", ErrNotBooted)
		}
		s = st.Booted
	}
	if _, err := writable(st, s); err != nil {
		return s, fmt.Errorf("mark good: %w", err)
	}
	if s != st.Booted && !force {
		booted := string(st.Booted)
		if booted == "" {
			booted = "unknown"
		}
		return s, fmt.Errorf("mark %s good: %w (booted: %s): only the running system can vouch for itself", s, ErrNotBooted, booted)
	}
	return s, p.Bootloader.MarkGood(ctx, s)
}

// MarkBad records that s must not boot until it is rewritten.
func (p *Policy) MarkBad(ctx context.Context, s Name) error {
	st, err := p.Bootloader.Status(ctx)
	if err != nil {
		return err
	}
	if _, err := writable(st, s); err != nil {
		return fmt.Errorf("mark bad: %w", err)
	}
	return p.Bootloader.MarkBad(ctx, s)
}

// Rollback gives up on the slot on trial or, with none, on the booted
// slot: it marks that slot bad, so that the good slot before it boots next.
// It returns the slot given up and the one that boots next. It refuses when
// no good slot would remain.
func (p *Policy) Rollback(ctx context.Context) (from, next Name, err error) {
	st, err := p.Bootloader.Status(ctx)
	if err != nil {
		return "", "", err
	}
	for _, ss := range st.Slots {
		if ss.State == Trying && !ss.Name.ReadOnly() {
			from = ss.Name
			break
		}
	}
	if from == "" {
		from = st.Booted
	}
	if from == "" {
		return "", "", fmt.Errorf("rollback: %w: no slot on trial and the booted slot cannot be told", ErrNotBooted)
	}
	if _, err := writable(st, from); err != nil {
		return from, "", fmt.Errorf("rollback: %w", err)
	}
	want, ok := fallback(st, from)
	if !ok {
		return from, "", fmt.Errorf("rollback from %s: %w", from, ErrNoFallback)
	}
	if err := p.Bootloader.MarkBad(ctx, from); err != nil {
		return from, "", err
	}
	st, err = p.Bootloader.Status(ctx)
	if err != nil {
		return from, "", err
	}
	if ss, ok := find(st, st.Next); !ok || st.Next == from || ss.State != Good {
		return from, st.Next, fmt.Errorf("rollback from %s: %s boots next, want a good slot such as %s", from, st.Next, want)
	}
	return from, st.Next, nil
}
