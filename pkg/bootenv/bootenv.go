// Package bootenv reads and writes bootloader environments: the variables
// a bootloader and the running system share to choose what boots next. One
// interface, Env, with a backend per bootloader: uboot (U-Boot's
// environment, single or redundant, compatible with fw_printenv and
// fw_setenv), ebg (EFI Boot Guard's BGENV.DAT, compatible with bg_printenv
// and bg_setenv) and grub (the grubenv block, compatible with grub-editenv).
//
// Every Save is power-cut safe: the copy the bootloader does not use is
// written and flushed before the copy it uses is switched, so a cut leaves
// the old variables or the new, never none. Policy (slots, try counters)
// lives in pkg/slot; backends only read and write variables.
package bootenv

import (
	"context"
	"errors"
)

// Vars are an environment's variables.
type Vars map[string]string

// Env is one bootloader environment.
type Env interface {
	// Load returns the variables the bootloader would see now.
	Load(ctx context.Context) (Vars, error)
	// Save replaces the variables, power-cut safely.
	Save(ctx context.Context, v Vars) error
	// String names the environment for errors and logs.
	String() string
}

// ErrNoEnv reports that no valid copy of the environment was found: the
// bootloader would use its built-in defaults.
var ErrNoEnv = errors.New("no valid bootloader environment")

// ErrCorrupt is wrapped by errors about environment bytes that do not
// parse or do not match their checksum.
var ErrCorrupt = errors.New("corrupt bootloader environment")
