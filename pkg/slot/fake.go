package slot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

// SimulateBoot does to env what the boot script Vars documents does at
// power-on, and returns the entry it boots, or "" when none could and the
// script set the counters back instead (the machine resets). slots are the
// entries the script knows (nil: any); good is what it sets counters back
// to. It saves env only when the script would: once, on decrementing or
// resetting a counter.
func SimulateBoot(ctx context.Context, env bootenv.Env, slots []Name, good int) (Name, error) {
	vars, err := env.Load(ctx)
	if err != nil && !errors.Is(err, bootenv.ErrNoEnv) {
		return "", err
	}
	known := func(s Name) bool { return slots == nil || slices.Contains(slots, s) }
	order := strings.Fields(vars[OrderVar])
	for _, f := range order {
		s := Name(f)
		switch {
		case !known(s), s == Recovery: // the script has no entry; recovery comes last
		case s.ReadOnly():
			return s, nil
		case counter(vars, s) > 0:
			vars[LeftVar(s)] = strconv.Itoa(counter(vars, s) - 1)
			return s, env.Save(ctx, vars)
		}
	}
	if slices.Contains(slots, Recovery) || slots == nil && slices.Contains(order, string(Recovery)) {
		return Recovery, nil
	}
	if vars == nil {
		return "", nil // nothing to reset
	}
	for _, f := range order {
		if s := Name(f); !s.ReadOnly() && known(s) {
			vars[LeftVar(s)] = strconv.Itoa(good)
		}
	}
	return "", env.Save(ctx, vars)
}

// Fake is a Bootloader in memory, for tests of packages that switch slots:
// a Vars over a MemEnv whose booted slot is set by Reboot instead of read
// from a kernel command line. It records the calls it is given and can be
// made to fail. It is safe for concurrent use.
type Fake struct {
	Env *MemEnv

	mu     sync.Mutex
	vars   *Vars
	slots  []Name
	booted Name
	calls  []string
	err    error
}

var _ Bootloader = (*Fake)(nil)

// NewFake returns a Fake with the given slots (read-only entries included)
// in boot order, every one good, booted into the first.
func NewFake(slots ...Name) *Fake {
	vars := bootenv.Vars{}
	var order []string
	for _, s := range slots {
		order = append(order, string(s))
		if !s.ReadOnly() {
			vars[LeftVar(s)] = strconv.Itoa(DefaultTries)
		}
	}
	vars[OrderVar] = strings.Join(order, " ")
	env := NewMemEnv(vars)
	v, err := NewVars(env, WithSlots(slots...))
	if err != nil {
		panic(fmt.Sprintf("slot.NewFake: %v", err))
	}
	f := &Fake{Env: env, vars: v, slots: slices.Clone(slots)}
	if len(slots) > 0 {
		f.booted = slots[0]
	}
	return f
}

// Booted returns the slot the last Reboot booted.
func (f *Fake) Booted() Name {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.booted
}

// Reboot runs the boot script (SimulateBoot) and makes the entry it picks
// the booted one; it returns that entry, "" if none booted.
func (f *Fake) Reboot(ctx context.Context) (Name, error) {
	s, err := SimulateBoot(ctx, f.Env, f.slots, f.vars.tries)
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.booted = s
	f.calls = append(f.calls, "reboot")
	return s, nil
}

// Fail makes every later call return err; nil undoes it.
func (f *Fake) Fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// Calls returns the calls made so far: "status", "try B 3", "good A",
// "bad B", "reboot".
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *Fake) call(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	return f.err
}

func (f *Fake) Status(ctx context.Context) (Status, error) {
	if err := f.call("status"); err != nil {
		return Status{}, err
	}
	w, err := f.vars.load(ctx)
	if err != nil {
		return Status{}, err
	}
	return f.vars.status(w, f.Booted()), nil
}

func (f *Fake) Try(ctx context.Context, s Name, tries int) error {
	if err := f.call("try %s %d", s, tries); err != nil {
		return err
	}
	return f.vars.Try(ctx, s, tries)
}

func (f *Fake) MarkGood(ctx context.Context, s Name) error {
	if err := f.call("good %s", s); err != nil {
		return err
	}
	return f.vars.MarkGood(ctx, s)
}

func (f *Fake) MarkBad(ctx context.Context, s Name) error {
	if err := f.call("bad %s", s); err != nil {
		return err
	}
	return f.vars.MarkBad(ctx, s)
}
