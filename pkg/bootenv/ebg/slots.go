package ebg

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

// Errors callers branch on.
var (
	// ErrUnsafe is wrapped by the error of a write that a power cut could
	// turn into a boot of neither the old choice nor the new one: the
	// config to write is the one EBG boots next, as it is, and without it
	// EBG would boot another (or nothing). Trying the running slot again
	// is such a write: try the other one.
	ErrUnsafe = errors.New("write would not be power-cut safe")
	// ErrSlotFailed is wrapped by the error of marking good a slot EBG
	// marked failed: rewrite it and try it again.
	ErrSlotFailed = errors.New("slot failed")
)

// SlotPart is one config partition, as a slot.
type SlotPart struct {
	Name slot.Name
	Part Part
}

// Slots is the slot.Bootloader over EBG's config partitions, one slot
// each. EBG keeps the slot states itself (ustate, revision): Status reads
// them and [Select] says what EBG boots next; Try, MarkGood and MarkBad
// each write one config, whole, then sync it, after checking that a cut
// in the middle of the write cannot make EBG boot anything but the old
// choice or the new ([ErrUnsafe]).
//
// EBG gives an INSTALLED config exactly one try, whatever the count asked.
type Slots struct {
	parts  []SlotPart
	booted slot.Name
}

var _ slot.Bootloader = (*Slots)(nil)

// Option sets an optional setting of [NewSlots].
type Option func(*Slots)

// WithBooted tells which slot runs now (from the kernel command line), for
// Status.Booted.
func WithBooted(s slot.Name) Option { return func(b *Slots) { b.booted = s } }

// NewSlots returns the slots over parts, given in the order EBG finds the
// config partitions (disk order): EBG breaks revision ties by it.
func NewSlots(parts []SlotPart, opts ...Option) (*Slots, error) {
	if len(parts) == 0 {
		return nil, errors.New("ebg: no config partitions")
	}
	seen := make(map[slot.Name]bool)
	for _, p := range parts {
		if p.Name == "" || p.Part == nil || seen[p.Name] {
			return nil, fmt.Errorf("ebg: slot %q: empty, without a part, or twice", p.Name)
		}
		seen[p.Name] = true
	}
	s := &Slots{parts: parts}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Configs reads every config partition; a config EBG would not use is nil.
func (s *Slots) Configs(ctx context.Context) ([]*Config, error) {
	cs := make([]*Config, len(s.parts))
	for i, p := range s.parts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := readConfig(p.Part)
		switch {
		case errors.Is(err, bootenv.ErrCorrupt):
		case err != nil:
			return nil, fmt.Errorf("slot %s: %w", p.Name, err)
		default:
			cs[i] = c
		}
	}
	return cs, nil
}

// Env returns slot n's config as a bootenv.Env whose Save refuses writes
// that are not power-cut safe (as Try does).
func (s *Slots) Env(n slot.Name) (*Env, error) {
	i, err := s.index(n)
	if err != nil {
		return nil, err
	}
	e := NewEnv(s.parts[i].Part)
	e.guard = func(ctx context.Context, c *Config) error {
		cs, err := s.Configs(ctx)
		if err != nil {
			return err
		}
		return s.safe(cs, i, c)
	}
	return e, nil
}

func (s *Slots) index(n slot.Name) (int, error) {
	for i, p := range s.parts {
		if p.Name == n {
			return i, nil
		}
	}
	return -1, fmt.Errorf("ebg: slot %q: %w", n, slot.ErrUnknownSlot)
}

// StateOf maps a config to a slot state: INSTALLED is trying with its one
// try left, TESTING trying with none (EBG fails it at the next boot),
// FAILED failed, in_progress or without a kernel inactive, anything else
// (OK, UNKNOWN) good.
func StateOf(c *Config) (slot.State, int) {
	switch {
	case c == nil, c.InProgress == 1:
		return slot.Inactive, 0
	case c.UState == Failed:
		return slot.Failed, 0
	case c.UState == Installed:
		return slot.Trying, 1
	case c.UState == Testing:
		return slot.Trying, 0
	case c.KernelFile == "":
		return slot.Inactive, 0
	}
	return slot.Good, 0
}

// Status reports each slot's state and the slot EBG boots next (empty if
// none). It fails with bootenv.ErrNoEnv if no config is valid.
func (s *Slots) Status(ctx context.Context) (slot.Status, error) {
	cs, err := s.Configs(ctx)
	if err != nil {
		return slot.Status{}, err
	}
	st := slot.Status{Booted: s.booted}
	valid := false
	for i, c := range cs {
		state, tries := StateOf(c)
		st.Slots = append(st.Slots, slot.SlotStatus{Name: s.parts[i].Name, State: state, TriesLeft: tries})
		valid = valid || c != nil
	}
	if !valid {
		return st, fmt.Errorf("ebg: %w", bootenv.ErrNoEnv)
	}
	if d := Select(cs); d.Boot >= 0 {
		st.Next = s.parts[d.Boot].Name
	}
	return st, nil
}

// Try makes n boot next, once: its config gets the highest revision and
// ustate INSTALLED. Its kernel and arguments must already be in its
// config (write them with [Slots.Env]). Trying the slot EBG boots next
// anyway fails with ErrUnsafe.
func (s *Slots) Try(ctx context.Context, n slot.Name, tries int) error {
	if tries < 1 {
		return fmt.Errorf("ebg: try slot %s %d times: want at least 1", n, tries)
	}
	return s.update(ctx, n, "try", func(cs []*Config, c *Config) (bool, error) {
		var top uint32
		for _, o := range cs {
			if o != nil {
				top = max(top, o.Revision)
			}
		}
		if top == math.MaxUint32 {
			return false, fmt.Errorf("revision %d: no higher one", top)
		}
		c.Revision, c.UState, c.InProgress = top+1, Installed, 0
		return true, nil
	})
}

// MarkGood confirms n, as bg_setenv -c does: ustate OK. A slot already
// good is left alone; one EBG marked failed gives ErrSlotFailed.
func (s *Slots) MarkGood(ctx context.Context, n slot.Name) error {
	return s.update(ctx, n, "mark good", func(_ []*Config, c *Config) (bool, error) {
		switch c.UState {
		case OK:
			return false, nil
		case Failed:
			return false, fmt.Errorf("slot %s: %w", n, ErrSlotFailed)
		}
		c.UState = OK
		return true, nil
	})
}

// MarkBad makes n unbootable as EBG does for a failed trial: ustate
// FAILED, revision 0. A slot whose config EBG cannot use is left alone.
func (s *Slots) MarkBad(ctx context.Context, n slot.Name) error {
	i, err := s.index(n)
	if err != nil {
		return err
	}
	cs, err := s.Configs(ctx)
	if err != nil {
		return err
	}
	if cs[i] == nil {
		return nil
	}
	return s.update(ctx, n, "mark bad", func(_ []*Config, c *Config) (bool, error) {
		if c.UState == Failed && c.Revision == 0 {
			return false, nil
		}
		c.UState, c.Revision = Failed, 0
		return true, nil
	})
}

// update reads the configs, lets change edit a copy of n's, and writes it
// if change says so and the write is safe.
func (s *Slots) update(ctx context.Context, n slot.Name, op string, change func(cs []*Config, c *Config) (bool, error)) error {
	i, err := s.index(n)
	if err != nil {
		return err
	}
	cs, err := s.Configs(ctx)
	if err != nil {
		return fmt.Errorf("ebg: %s %s: %w", op, n, err)
	}
	if cs[i] == nil {
		return fmt.Errorf("ebg: %s %s: its config is not valid (write it first): %w", op, n, bootenv.ErrCorrupt)
	}
	c := cs[i].Clone()
	write, err := change(cs, c)
	if err != nil {
		return fmt.Errorf("ebg: %s %s: %w", op, n, err)
	}
	if !write {
		return nil
	}
	if err := s.safe(cs, i, c); err != nil {
		return fmt.Errorf("ebg: %s %s: %w", op, n, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := writeConfig(s.parts[i].Part, c); err != nil {
		return fmt.Errorf("ebg: %s %s: %w", op, n, err)
	}
	return nil
}

// safe checks that writing c as config i is power-cut safe: a torn write
// leaves config i with a bad CRC, and EBG must then boot what it boots
// before the write or after it; and after it, EBG must boot something if
// it did before, and not a failed config unless it did before.
func (s *Slots) safe(cs []*Config, i int, c *Config) error {
	with := func(x *Config) Decision {
		t := append([]*Config(nil), cs...)
		t[i] = x
		return Select(t)
	}
	before, after, torn := Select(cs), with(c), with(nil)
	name := func(d Decision) string {
		if d.Boot < 0 {
			return "nothing"
		}
		if d.Trial {
			return string(s.parts[d.Boot].Name) + " on trial"
		}
		return string(s.parts[d.Boot].Name)
	}
	if after.Boot < 0 && before.Boot >= 0 {
		return fmt.Errorf("EBG would boot %s after writing slot %s, %s before: %w", name(after), s.parts[i].Name, name(before), ErrUnsafe)
	}
	failed := func(d Decision) bool { return d.Boot >= 0 && d.After[d.Boot].UState == Failed }
	if failed(after) && !failed(before) {
		return fmt.Errorf("EBG would boot failed slot %s after writing slot %s: %w", name(after), s.parts[i].Name, ErrUnsafe)
	}
	if !torn.Same(before) && !torn.Same(after) {
		return fmt.Errorf("a torn write of slot %s would boot %s, neither %s (before) nor %s (after): %w",
			s.parts[i].Name, name(torn), name(before), name(after), ErrUnsafe)
	}
	return nil
}
