package slot

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

// The variables of the try-counter scheme, RAUC's names.
const (
	// OrderVar lists the slots to boot, space-separated, preferred first.
	OrderVar = "BOOT_ORDER"
	// TryVar is Lifeboat's own: the slot on trial, set by Try and cleared
	// when the slot is marked good or bad. It tells Trying from Good; boot
	// scripts ignore it.
	TryVar = "LIFEBOAT_TRY"
)

// LeftVar is the variable holding how many boots slot s has left:
// BOOT_<s>_LEFT, the name as it is (BOOT_A_LEFT).
func LeftVar(s Name) string { return "BOOT_" + string(s) + "_LEFT" }

// Vars is the Bootloader for bootloaders whose boot script keeps the try
// counters in an environment (U-Boot, GRUB), with RAUC's scheme.
//
// The boot script's selection rule, which Vars assumes and the board's
// script must implement exactly (docs/bootloader-grub.md has GRUB's):
//
//  1. Walk BOOT_ORDER (unset or empty: no slot) in order, skipping names
//     the script has no entry for. A slot boots if BOOT_<s>_LEFT is
//     greater than 0; an unset or empty counter is 0. The script first
//     decrements the counter and saves the environment, then boots the
//     slot with lifeboat.slot=<s> on the kernel command line. A factory
//     entry has no counter: reached, it boots.
//  2. If no slot boots, the recovery entry boots, if the board has one
//     (listed last in BOOT_ORDER or not: a script may fall back to it
//     without reading the entry).
//  3. Without a recovery entry, the script sets every counter back to the
//     good count, saves, and resets the machine (RAUC's example does so).
//
// The running system runs mark-good on every boot once it is healthy: a
// slot that boots three times without it falls back, whether it was on
// trial or had been good.
//
// How Status reads the variables, for each slot:
//
//   - not in BOOT_ORDER: Inactive, the boot script will not pick it;
//   - recovery: Good, TriesLeft 0 (no counter), whether listed or not;
//   - factory in BOOT_ORDER: Good, TriesLeft 0 (no counter);
//   - tries left, LIFEBOAT_TRY names it: Trying;
//   - tries left otherwise: Good;
//   - no tries left, LIFEBOAT_TRY names it and it is the booted slot:
//     Trying, on its last try (it runs now; if it does not mark itself
//     good the next boot falls back);
//   - no tries left otherwise: Failed.
//
// Next is the entry that boots by rules 1 and 2, empty under rule 3.
// Booted comes from the kernel command line.
//
// The transitions, each one Load and one Save, so that a power cut leaves
// the old state or the new (the backends make Save atomic):
//
//   - Try(s, n): BOOT_<s>_LEFT=n, s first, LIFEBOAT_TRY=s. A trial still
//     pending on another slot is abandoned: its counter set to 0, the
//     slot moved last.
//   - MarkGood(s): BOOT_<s>_LEFT to the good count; s first, except that
//     a slot still pending trial stays ahead of it (a mark-good on every
//     boot must not cancel an update about to be tried); LIFEBOAT_TRY is
//     cleared when it names s or a slot with no tries left.
//   - MarkBad(s): BOOT_<s>_LEFT=0, s moved last; LIFEBOAT_TRY cleared if
//     it names s.
//
// Every write keeps the read-only entries at the end of BOOT_ORDER,
// factory before recovery. Vars refuses to write when the environment has
// no valid copy (bootenv.ErrNoEnv): saving only our variables would, for
// U-Boot, replace its whole default environment.
type Vars struct {
	env     bootenv.Env
	slots   []Name
	tries   int
	cmdline string
}

var _ Bootloader = (*Vars)(nil)

// VarsOption configures a Vars.
type VarsOption func(*Vars)

// WithSlots names the board's slots, read-only entries included (in
// particular Recovery, when the board has the Lifeboat ramdisk). Without it the slots are those the environment
// names in BOOT_ORDER and BOOT_<s>_LEFT. With it, other names in
// BOOT_ORDER are ignored and dropped at the next write.
func WithSlots(s ...Name) VarsOption { return func(v *Vars) { v.slots = slices.Clone(s) } }

// WithGoodTries sets the good count: what MarkGood sets, and what the
// boot script sets every counter back to under rule 3. The default is
// DefaultTries.
func WithGoodTries(n int) VarsOption { return func(v *Vars) { v.tries = n } }

// WithCmdline sets the file the kernel command line is read from; the
// default is DefaultCmdline.
func WithCmdline(path string) VarsOption { return func(v *Vars) { v.cmdline = path } }

// NewVars returns the Bootloader keeping its state in env.
func NewVars(env bootenv.Env, opts ...VarsOption) (*Vars, error) {
	v := &Vars{env: env, tries: DefaultTries, cmdline: DefaultCmdline}
	for _, o := range opts {
		o(v)
	}
	if v.tries < 1 || v.tries > MaxTries {
		return nil, fmt.Errorf("good count %d: %w (1..%d)", v.tries, ErrTries, MaxTries)
	}
	for i, s := range v.slots {
		if !validName(string(s)) {
			return nil, fmt.Errorf("slot name %q: want letters, digits and _", s)
		}
		if slices.Contains(v.slots[:i], s) {
			return nil, fmt.Errorf("slot %s named twice", s)
		}
	}
	return v, nil
}

func (v *Vars) String() string { return v.env.String() }

// validName reports whether s can name a slot in a variable name and in a
// space-separated list, for U-Boot and GRUB alike.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// view is one reading of the environment.
type view struct {
	vars  bootenv.Vars
	known []Name // every slot, those in the order first
	order []Name // BOOT_ORDER as the boot script reads it
	try   Name
}

func (v *Vars) load(ctx context.Context) (*view, error) {
	vars, err := v.env.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", v.env, err)
	}
	w := &view{vars: vars, try: Name(vars[TryVar])}
	fields := strings.Fields(vars[OrderVar])
	known := v.slots
	if known == nil {
		for _, f := range fields {
			if validName(f) && !slices.Contains(known, Name(f)) {
				known = append(known, Name(f))
			}
		}
		var counted []Name
		for k := range vars {
			s, ok := strings.CutPrefix(k, "BOOT_")
			if s, ok2 := strings.CutSuffix(s, "_LEFT"); ok && ok2 && validName(s) && !slices.Contains(known, Name(s)) {
				counted = append(counted, Name(s))
			}
		}
		sort.Slice(counted, func(i, j int) bool { return counted[i] < counted[j] })
		known = append(known, counted...)
	}
	for _, f := range fields {
		if s := Name(f); slices.Contains(known, s) && !slices.Contains(w.order, s) {
			w.order = append(w.order, s)
		}
	}
	w.known = slices.Clone(w.order)
	for _, s := range known {
		if !slices.Contains(w.known, s) {
			w.known = append(w.known, s)
		}
	}
	return w, nil
}

// left returns how many boots s has left by the script's reading of vars.
func (v *Vars) left(vars bootenv.Vars, s Name) int {
	return counter(vars, s)
}

// counter reads BOOT_<s>_LEFT as the boot scripts do: unset or empty is 0;
// decimal, or hexadecimal with 0x as U-Boot's setexpr may leave it;
// anything else is 0, as U-Boot's test -gt reads it.
func counter(vars bootenv.Vars, s Name) int {
	x := vars[LeftVar(s)]
	if x == "" {
		return 0
	}
	var n int64
	var err error
	if h, ok := strings.CutPrefix(x, "0x"); ok {
		n, err = strconv.ParseInt(h, 16, 32)
	} else {
		n, err = strconv.ParseInt(x, 10, 32)
	}
	if err != nil || n < 0 {
		return 0
	}
	return int(n)
}

// Status reads the slots' states from the environment and the booted slot
// from the kernel command line.
func (v *Vars) Status(ctx context.Context) (Status, error) {
	w, err := v.load(ctx)
	if err != nil {
		return Status{}, err
	}
	booted, err := BootedFromCmdline(v.cmdline)
	if err != nil {
		return Status{}, err
	}
	return v.status(w, booted), nil
}

func (v *Vars) status(w *view, booted Name) Status {
	st := Status{Booted: booted, Slots: []SlotStatus{}}
	for _, s := range w.known {
		ss := SlotStatus{Name: s}
		inOrder := slices.Contains(w.order, s)
		if !s.ReadOnly() {
			ss.TriesLeft = v.left(w.vars, s)
		}
		switch {
		case s == Recovery:
			ss.State = Good
		case !inOrder:
			ss.State = Inactive
		case s.ReadOnly():
			ss.State = Good
		case ss.TriesLeft > 0 && w.try == s:
			ss.State = Trying
		case ss.TriesLeft > 0:
			ss.State = Good
		case w.try == s && booted == s:
			ss.State = Trying
		default:
			ss.State = Failed
		}
		if st.Next == "" && inOrder && s != Recovery && (s.ReadOnly() || ss.TriesLeft > 0) {
			st.Next = s
		}
		st.Slots = append(st.Slots, ss)
	}
	if st.Next == "" && slices.Contains(w.known, Recovery) {
		st.Next = Recovery
	}
	return st
}

// writable checks that the slot exists in w and has a counter.
func (w *view) writable(s Name) error {
	if !slices.Contains(w.known, s) {
		return fmt.Errorf("slot %q: %w", s, ErrUnknownSlot)
	}
	if s.ReadOnly() {
		return fmt.Errorf("slot %s: %w", s, ErrReadOnly)
	}
	return nil
}

// save writes vars with BOOT_ORDER set to order, read-only entries moved
// to the end: one Save.
func (v *Vars) save(ctx context.Context, w *view, vars bootenv.Vars, order []Name) error {
	var out []string
	for _, s := range order {
		if !s.ReadOnly() && !slices.Contains(out, string(s)) {
			out = append(out, string(s))
		}
	}
	for _, s := range []Name{Factory, Recovery} {
		if slices.Contains(w.known, s) {
			out = append(out, string(s))
		}
	}
	vars[OrderVar] = strings.Join(out, " ")
	if err := v.env.Save(ctx, vars); err != nil {
		return fmt.Errorf("save %s: %w", v.env, err)
	}
	return nil
}

// without returns order without the names in drop.
func without(order []Name, drop ...Name) []Name {
	return slices.DeleteFunc(slices.Clone(order), func(s Name) bool { return slices.Contains(drop, s) })
}

// Try makes s boot next for at most tries boots, then fall back.
func (v *Vars) Try(ctx context.Context, s Name, tries int) error {
	w, err := v.load(ctx)
	if err != nil {
		return err
	}
	if err := w.writable(s); err != nil {
		return fmt.Errorf("try: %w", err)
	}
	if tries < 1 || tries > MaxTries {
		return fmt.Errorf("try %s %d times: %w (1..%d)", s, tries, ErrTries, MaxTries)
	}
	vars := maps.Clone(w.vars)
	order := append([]Name{s}, without(w.order, s)...)
	if t := w.try; t != "" && t != s && slices.Contains(w.known, t) && v.left(vars, t) > 0 {
		vars[LeftVar(t)] = "0"
		order = append(without(order, t), t)
	}
	vars[LeftVar(s)] = strconv.Itoa(tries)
	vars[TryVar] = string(s)
	return v.save(ctx, w, vars, order)
}

// MarkGood gives s the good count and makes it the default.
func (v *Vars) MarkGood(ctx context.Context, s Name) error {
	w, err := v.load(ctx)
	if err != nil {
		return err
	}
	if err := w.writable(s); err != nil {
		return fmt.Errorf("mark good: %w", err)
	}
	vars := maps.Clone(w.vars)
	vars[LeftVar(s)] = strconv.Itoa(v.tries)
	order := append([]Name{s}, without(w.order, s)...)
	switch t := w.try; {
	case t == "":
	case t == s || v.left(vars, t) == 0 || !slices.Contains(w.order, t):
		delete(vars, TryVar)
	default: // t pending trial: it stays ahead
		order = append([]Name{t, s}, without(w.order, s, t)...)
	}
	return v.save(ctx, w, vars, order)
}

// MarkBad takes away s's tries and moves it last.
func (v *Vars) MarkBad(ctx context.Context, s Name) error {
	w, err := v.load(ctx)
	if err != nil {
		return err
	}
	if err := w.writable(s); err != nil {
		return fmt.Errorf("mark bad: %w", err)
	}
	vars := maps.Clone(w.vars)
	vars[LeftVar(s)] = "0"
	if w.try == s {
		delete(vars, TryVar)
	}
	return v.save(ctx, w, vars, append(without(w.order, s), s))
}
