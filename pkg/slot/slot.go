// Package slot is the A/B slot model and its state machine, over any
// bootloader: which slot runs, which boots next and how many tries it has,
// which is known good. install -> try -> good, or fall back when the tries
// run out; a recovery entry (the Lifeboat ramdisk); an optional factory
// slot. The policy lives here once; bootloader backends only read and write
// variables (pkg/bootenv) or, for bootloaders that keep slot states
// themselves (EFI Boot Guard), implement Bootloader directly.
package slot

import (
	"context"
	"errors"
)

// Name names a slot: "A", "B", or a board's own names.
type Name string

// State is what is known of a slot.
type State string

const (
	// Good: the slot booted and marked itself good.
	Good State = "good"
	// Trying: the slot is to boot on trial, with tries left.
	Trying State = "trying"
	// Failed: the slot used up its tries, or was marked bad.
	Failed State = "failed"
	// Inactive: the slot holds nothing bootable the bootloader would pick.
	Inactive State = "inactive"
)

// SlotStatus is one slot's state.
type SlotStatus struct {
	Name      Name  `json:"name"`
	State     State `json:"state"`
	TriesLeft int   `json:"tries_left"`
}

// Status is the whole picture a bootloader gives.
type Status struct {
	// Booted is the slot running now (from the kernel command line), or
	// empty when it cannot be told (in the ramdisk).
	Booted Name `json:"booted,omitempty"`
	// Next is the slot the bootloader picks at the next boot.
	Next  Name         `json:"next"`
	Slots []SlotStatus `json:"slots"`
}

// Bootloader is what the slot policy needs from a bootloader.
type Bootloader interface {
	Status(ctx context.Context) (Status, error)
	// Try makes s boot next, at most tries times before falling back to
	// the slot that is good.
	Try(ctx context.Context, s Name, tries int) error
	// MarkGood records that s booted well: it stays the default.
	MarkGood(ctx context.Context, s Name) error
	// MarkBad records that s must not boot again until it is rewritten.
	MarkBad(ctx context.Context, s Name) error
}

// ErrUnknownSlot reports a slot name the bootloader does not have.
var ErrUnknownSlot = errors.New("unknown slot")
