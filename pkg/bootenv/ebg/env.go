package ebg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

// The names under which [Env] shows the struct's fields among the
// variables; every other name is a user variable.
const (
	VarKernelFile   = "kernelfile"
	VarKernelParams = "kernelparams"
	VarUState       = "ustate"
	VarRevision     = "revision"
	VarWatchdog     = "watchdog_timeout_sec"
	VarInProgress   = "in_progress"
)

var fieldNames = []string{VarKernelFile, VarKernelParams, VarUState, VarRevision, VarWatchdog, VarInProgress}

// ErrNameClash is wrapped by the error of loading a config with a user
// variable named like one of the struct's fields, which Vars cannot show
// apart.
var ErrNameClash = errors.New("user variable named like a field")

// Env is one config partition's BGENV.DAT as a bootenv.Env. Numbers are
// decimal, as bg_printenv -r prints them; user variables are strings as
// bg_setenv -x writes them. Load returns bootenv.ErrNoEnv (wrapped with
// the cause, bootenv.ErrCorrupt) for a config EBG would not use.
//
// Save writes the config in place. On its own that is power-cut safe only
// for a config EBG does not boot next; get the Env from [Slots.Env] to
// have that checked.
type Env struct {
	part Part
	// guard, when set, is called with the config about to be written and
	// refuses writes that are not power-cut safe.
	guard func(ctx context.Context, c *Config) error
}

var _ bootenv.Env = (*Env)(nil)

// NewEnv returns the environment in p.
func NewEnv(p Part) *Env { return &Env{part: p} }

func (e *Env) String() string { return "ebg:" + e.part.String() }

// Config reads and parses the config.
func (e *Env) Config(ctx context.Context) (*Config, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return readConfig(e.part)
}

// Load returns the config's variables.
func (e *Env) Load(ctx context.Context) (bootenv.Vars, error) {
	c, err := e.Config(ctx)
	if err != nil {
		if errors.Is(err, bootenv.ErrCorrupt) {
			return nil, fmt.Errorf("%w: %w", bootenv.ErrNoEnv, err)
		}
		return nil, err
	}
	v, err := VarsOf(c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e, err)
	}
	return v, nil
}

// Save replaces the config with v: the fields from their names (an absent
// one is zero, as with bg_setenv without -P), every other name a string
// user variable. User variables of types other than strings keep their
// type when v holds them unchanged.
func (e *Env) Save(ctx context.Context, v bootenv.Vars) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var old *Config
	if c, err := readConfig(e.part); err == nil {
		old = c
	}
	c, err := ConfigOf(v, old)
	if err != nil {
		return fmt.Errorf("%s: %w", e, err)
	}
	if old.Equal(c) {
		return nil
	}
	if e.guard != nil {
		if err := e.guard(ctx, c); err != nil {
			return err
		}
	}
	return writeConfig(e.part, c)
}

// VarsOf returns c's variables as [Env.Load] does.
func VarsOf(c *Config) (bootenv.Vars, error) {
	uv, err := c.UserVars()
	if err != nil {
		return nil, err
	}
	v := bootenv.Vars{
		VarKernelFile:   c.KernelFile,
		VarKernelParams: c.KernelParams,
		VarUState:       strconv.Itoa(int(c.UState)),
		VarRevision:     strconv.FormatUint(uint64(c.Revision), 10),
		VarWatchdog:     strconv.Itoa(int(c.WatchdogTimeoutSec)),
		VarInProgress:   strconv.Itoa(int(c.InProgress)),
	}
	for _, u := range uv {
		if _, ok := v[u.Key]; ok {
			return nil, fmt.Errorf("%q: %w", u.Key, ErrNameClash)
		}
		if s, ok := u.Value(); ok {
			v[u.Key] = s
		}
	}
	return v, nil
}

// ConfigOf returns the config holding v, as [Env.Save] writes it. old, if
// not nil, is the config being replaced: its user variables that v holds
// unchanged keep their type, and those Vars cannot show (types bg_printenv
// does not print) are kept.
func ConfigOf(v bootenv.Vars, old *Config) (*Config, error) {
	c := &Config{KernelFile: v[VarKernelFile], KernelParams: v[VarKernelParams]}
	num := func(name string, bits int) (uint64, error) {
		s, ok := v[name]
		if !ok || s == "" {
			return 0, nil
		}
		n, err := strconv.ParseUint(s, 10, bits)
		if err != nil {
			return 0, fmt.Errorf("%s=%q: %w", name, s, err)
		}
		return n, nil
	}
	u, err := num(VarUState, 8)
	if err != nil {
		return nil, err
	}
	c.UState = UState(u)
	r, err := num(VarRevision, 32)
	if err != nil {
		return nil, err
	}
	c.Revision = uint32(r)
	w, err := num(VarWatchdog, 16)
	if err != nil {
		return nil, err
	}
	c.WatchdogTimeoutSec = uint16(w)
	p, err := num(VarInProgress, 8)
	if err != nil {
		return nil, err
	}
	c.InProgress = uint8(p)

	var keep []UserVar
	kept := make(map[string]bool)
	if old != nil {
		if ov, err := old.UserVars(); err == nil {
			for _, o := range ov {
				s, printable := o.Value()
				cur, in := v[o.Key]
				if printable && (!in || cur != s || o.Type&standardTypeMask == TypeStringASCII) {
					continue // removed, changed, or a string: written from v below
				}
				keep = append(keep, o)
				kept[o.Key] = true
			}
		}
	}
	uv := keep
	names := make([]string, 0, len(v))
	for k := range v {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if slices.Contains(fieldNames, k) || kept[k] {
			continue
		}
		uv = append(uv, StringVar(k, v[k]))
	}
	if err := c.SetUserVars(uv); err != nil {
		return nil, err
	}
	return c, nil
}
