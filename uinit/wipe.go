package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
	"github.com/lifeboat-update/lifeboat/pkg/reset"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

// Wiped is one partition wipe mode cleared, in the result.
type Wiped struct {
	Label string `json:"label"`
	Bytes int64  `json:"bytes"`
	// Discarded, ZeroedByDevice and ZeroedByWriting are pkg/reset's
	// WipeStats; Verified are the bytes read back as zeros.
	Discarded       int64 `json:"discarded_bytes"`
	ZeroedByDevice  int64 `json:"zeroed_by_device_bytes"`
	ZeroedByWriting int64 `json:"zeroed_by_writing_bytes"`
	Verified        int64 `json:"verified_bytes"`
}

// ErrNotWipeable is matched by the error of a wipe the rule below refuses.
var ErrNotWipeable = errors.New("not wipeable")

// refusal is a label the rule refuses, and why.
type refusal struct{ label, why string }

func (e *refusal) Error() string        { return "wipe " + e.label + ": " + e.why }
func (e *refusal) Is(target error) bool { return target == ErrNotWipeable }

// wipeCheck is the check a refused wipe fails, in the result.
const wipeCheck = "refused"

// wipe is lifeboat.mode=wipe: it wipes the partitions lifeboat.wipe=
// names, each made to read as zeros and read back (pkg/reset.Wipe). Every
// label is checked before the first byte is written, so that a refused
// label wipes nothing:
//
//   - the label must be a partition of the board's layout;
//   - data partitions are wiped and get a new, empty ext4, so that the
//     next update provisions its trusted state there (an encrypted one
//     loses its LUKS2 header, so its data cannot be unlocked again, and
//     is left without a file system: it cannot be re-keyed here);
//   - a slot partition is wiped only when the bootloader cannot boot its
//     slot: neither good nor on trial nor next to boot;
//   - the ESP, boot, recovery and factory partitions, and the partition
//     holding the bootloader environment, are never wiped: the device
//     would not boot, or a factory reset would have nothing to restore.
//
// After a wipe, lifeboat.after=kexec (the default) means reboot: there is
// no new kernel to start.
func (f *flow) wipe(ctx context.Context) error {
	if f.p.after == "kexec" {
		f.p.after = "reboot"
	}
	if err := f.openLayout(); err != nil {
		return err
	}
	l := f.layout
	parts, err := f.wipeable(ctx, l)
	if err != nil {
		return err
	}
	f.phase("check")

	for _, p := range parts {
		var w Wiped
		var err error
		if p.Role == board.RoleData {
			w, err = f.freshData(ctx, p) // factory.go: and a new ext4
		} else {
			if w, err = f.wipeOne(ctx, p.Label); err == nil {
				f.sayWiped(w)
			}
		}
		if err != nil {
			return &phaseError{"wipe", err}
		}
		f.res.Wiped = append(f.res.Wiped, w)
	}
	f.phase("wipe")
	return nil
}

// wipeable returns the partitions lifeboat.wipe= names, in its order, or
// an error wrapping ErrNotWipeable for the first one the rule refuses.
func (f *flow) wipeable(ctx context.Context, l *board.Layout) ([]board.Partition, error) {
	var labels []string
	for _, s := range strings.Split(f.p.wipe, ",") {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(labels, s) {
			labels = append(labels, s)
		}
	}
	if len(labels) == 0 {
		return nil, &phaseError{wipeCheck, fmt.Errorf("lifeboat.mode=wipe wants lifeboat.wipe=LABEL[,LABEL...]: %w", ErrNotWipeable)}
	}
	refuse := func(label, format string, args ...any) error {
		return &phaseError{wipeCheck, &refusal{label, fmt.Sprintf(format, args...)}}
	}
	var parts []board.Partition
	var st *slot.Status
	for _, label := range labels {
		p, ok := l.Partition(label)
		if !ok {
			var have []string
			for _, q := range l.Partitions {
				have = append(have, q.Label)
			}
			return nil, refuse(label, "layout %s has no such partition (it has %s)", f.p.layout, strings.Join(have, ", "))
		}
		if label == f.board.Bootloader.EnvPartition {
			return nil, refuse(label, "it holds the bootloader environment")
		}
		switch p.Role {
		case board.RoleData:
		case board.RoleSlot:
			if st == nil {
				s, err := f.slotStatus(ctx, l)
				if err != nil {
					return nil, err
				}
				st = &s
			}
			if why := bootable(*st, slot.Name(p.Slot)); why != "" {
				return nil, refuse(label, "slot %s %s; only a failed or inactive slot is wiped", p.Slot, why)
			}
		default:
			return nil, refuse(label, "a partition of role %s is never wiped (only data partitions, and slots the bootloader cannot boot)", p.Role)
		}
		parts = append(parts, p)
	}
	return parts, nil
}

// slotStatus opens the bootloader environment and returns the slots'
// states.
func (f *flow) slotStatus(ctx context.Context, l *board.Layout) (slot.Status, error) {
	if err := f.openEnv(ctx); err != nil {
		return slot.Status{}, err
	}
	env := f.env
	vars, err := slot.NewVars(env, slot.WithSlots(append(slotNames(l), slot.Recovery)...), slot.WithCmdline(os.DevNull))
	if err != nil {
		return slot.Status{}, &phaseError{"bootloader", err}
	}
	st, err := vars.Status(ctx)
	if err != nil {
		return slot.Status{}, &phaseError{"bootloader", err}
	}
	f.say("slots: %s", describe(st))
	return st, nil
}

// bootable says why the bootloader may boot slot s, or "" when it cannot.
func bootable(st slot.Status, s slot.Name) string {
	for _, ss := range st.Slots {
		if ss.Name == s && (ss.State == slot.Good || ss.State == slot.Trying) {
			return fmt.Sprintf("is %s: the bootloader may boot it", ss.State)
		}
	}
	if st.Next == s {
		return "is the slot the bootloader boots next"
	}
	return ""
}

// sayWiped says what wipeOne did.
func (f *flow) sayWiped(w Wiped) {
	f.say("wiped %s: %d bytes read back as zeros (%d discarded, %d zeroed by the device, %d by writing)",
		w.Label, w.Verified, w.Discarded, w.ZeroedByDevice, w.ZeroedByWriting)
}

// wipeOne wipes the partition labelled label whole, and reads it back.
func (f *flow) wipeOne(ctx context.Context, label string) (Wiped, error) {
	path, err := f.sys.Partition(ctx, label)
	if err != nil {
		return Wiped{}, err
	}
	// O_EXCL: the kernel refuses a block device that is mounted or
	// otherwise in use.
	dev, err := blockdev.Open(path, os.O_RDWR|os.O_EXCL)
	if err != nil {
		return Wiped{}, fmt.Errorf("open %s: %w", label, err)
	}
	defer dev.Close()
	f.say("wiping %s (%s, %d bytes)", label, path, dev.Size())
	st, err := reset.Wipe(ctx, dev, 0, dev.Size(), reset.Verify(), reset.WithProgress(&progress.Lines{W: f.console, Step: 25}))
	w := Wiped{Label: label, Bytes: st.Bytes, Discarded: st.Discarded + st.SecureDiscarded,
		ZeroedByDevice: st.ZeroedByDevice, ZeroedByWriting: st.ZeroedByWriting, Verified: st.Verified}
	if err != nil {
		return w, fmt.Errorf("%s: %w", label, err)
	}
	return w, nil
}
