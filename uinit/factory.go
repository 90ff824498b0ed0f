package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/dmcrypt"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/factory"
	"github.com/lifeboat-update/lifeboat/pkg/install"
	"github.com/lifeboat-update/lifeboat/pkg/mkfs"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/reset"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

// ModeVar is the bootloader variable that makes the recovery entry's mode
// factory-reset (boards/*/grub.cfg, boot.cmd) while a reset is under way.
const ModeVar = "lifeboat_mode"

// FactoryResetMode is lifeboat.mode=factory-reset, and ModeVar's value.
const FactoryResetMode = "factory-reset"

// factoryReset is lifeboat.mode=factory-reset: it restores the root-class
// slot and empties the data partition, so that the device boots as it
// left the factory. Each step can run again, so a power cut resumes the
// reset from the start:
//
//  1. Before anything is written, one save makes the bootloader boot the
//     recovery entry in this mode until the reset ends: ModeVar, and
//     BOOT_ORDER "recovery S" with every slot's counter 0, S being the
//     slot the reset ends on.
//  2. With a factory partition, its content is checked against the factory
//     record (pkg/factory, on the partition holding the bootloader
//     environment), copied into slot S (the root class's first slot) and
//     read back. Without one (A/B layouts), S is the last known-good slot,
//     which is kept as it is.
//  3. The data partition is wiped and gets a new ext4 holding the trusted
//     state from the ramdisk's root.json, the factory release recorded as
//     installed and its index kept as S's; an encrypted one is
//     crypto-erased instead, and left without a file system.
//  4. S's dm-verity argument, then one save: S to try, ModeVar removed.
//
// After it lifeboat.after=kexec (the default) means reboot.
func (f *flow) factoryReset(ctx context.Context) (string, string, error) {
	if f.p.after == "kexec" {
		f.p.after = "reboot"
	}
	if err := f.openLayout(); err != nil {
		return "", "", err
	}
	l := f.layout
	if err := f.openEnv(ctx); err != nil {
		return "", "", err
	}
	env := f.env
	v, err := env.Load(ctx)
	if err != nil && !errors.Is(err, bootenv.ErrNoEnv) {
		return "", "", &phaseError{"bootloader", err}
	}
	resuming := v[ModeVar] == FactoryResetMode
	if resuming {
		f.say("factory reset: resuming the reset a power cut interrupted")
		f.res.Resumed = true
	}
	class := rootClass(l)

	// What the reset ends on, checked before the first write.
	var (
		target slot.Name
		rec    *factory.Record
		idx    *chunk.Index
	)
	fp, hasFactory := l.Role(board.RoleFactory)
	if hasFactory {
		if rec, idx, err = f.readFactory(ctx, fp); err != nil {
			return "", "", err
		}
		target = slot.Name(l.Slots(class)[0].Slot)
		if rec.Image.Class != class {
			return "", "", &phaseError{"factory", fmt.Errorf("the factory image is of class %s; the layout boots class %s", rec.Image.Class, class)}
		}
		if err := f.fits(ctx, partitionOf(l, class, target), rec.Image.Size); err != nil {
			return "", "", &phaseError{"factory", err}
		}
		f.res.Version = rec.Version
		f.say("factory image: release %s, %d bytes of %s, checked against the factory record", rec.Version, rec.Image.Size, fp.Label)
	} else {
		if target, err = f.goodSlot(ctx, l, v, resuming); err != nil {
			return "", "", err
		}
	}
	f.res.Slot = string(target)
	f.phase("check")

	// 1. From here on, every boot comes back to this mode.
	if err := beginReset(ctx, env, target, slotNames(l)); err != nil {
		return "", "", &phaseError{"bootloader", err}
	}
	f.recoveryFirst = true
	f.say("bootloader: recovery in mode %s first until the reset is done", FactoryResetMode)

	// 2. The slot.
	verity := ""
	if hasFactory {
		if err := f.restoreSlot(ctx, fp, partitionOf(l, class, target), rec.Image); err != nil {
			return "", "", err
		}
		if vt := rec.Image.Verity; vt != nil {
			verity = fmt.Sprintf("%d:%s", vt.HashOffset, vt.RootHash)
		}
	} else {
		verity = verityVar(ctx, env, target)
		f.say("no factory partition in layout %s: keeping slot %s, the last known-good one, as it is", f.p.layout, target)
	}
	f.phase("restore")

	// 3. The data partition.
	data, ok := l.Role(board.RoleData)
	if !ok {
		f.say("layout %s has no data partition: nothing to erase", f.p.layout)
	} else if err := f.resetData(ctx, data, target, rec, idx); err != nil {
		return "", "", err
	}
	f.phase("data")

	// 4. The switch: the verity argument while recovery is still first,
	// then one save that tries the slot and ends the reset.
	if err := setVar(ctx, env, verityName(target), verity); err != nil {
		return "", "", &phaseError{"switch", err}
	}
	vars, err := slot.NewVars(dropOnSave{env, []string{ModeVar}}, slot.WithSlots(append(slotNames(l), slot.Recovery)...), slot.WithCmdline(os.DevNull))
	if err != nil {
		return "", "", &phaseError{"switch", err}
	}
	if err := vars.Try(ctx, target, slot.DefaultTries); err != nil {
		return "", "", &phaseError{"switch", err}
	}
	f.recoveryFirst = false
	f.say("factory reset done: %s is next, with %d tries", target, slot.DefaultTries)
	f.phase("switch")
	return string(target), verity, nil
}

// readFactory reads the factory record from the partition holding the
// bootloader environment and checks the factory partition p against it.
func (f *flow) readFactory(ctx context.Context, p board.Partition) (*factory.Record, *chunk.Index, error) {
	if f.envDir == "" {
		return nil, nil, &phaseError{"factory", fmt.Errorf("board %s has no partition for the bootloader environment to keep the factory record on", f.board.Name)}
	}
	rec, idx, err := factory.Read(durable.OS(f.envDir))
	if err != nil {
		return nil, nil, &phaseError{"factory", fmt.Errorf("%s: %w", f.board.Bootloader.EnvPartition, err)}
	}
	if rec.Board != "" && rec.Board != f.board.Name {
		return nil, nil, &phaseError{"factory", fmt.Errorf("the factory record is for board %s, not %s", rec.Board, f.board.Name)}
	}
	dev, err := f.sys.Partition(ctx, p.Label)
	if err != nil {
		return nil, nil, &phaseError{"disk", err}
	}
	src, err := blockdev.Open(dev, os.O_RDONLY)
	if err != nil {
		return nil, nil, &phaseError{"disk", err}
	}
	defer src.Close()
	if err := install.VerifySlot(ctx, src, rec.Image); err != nil {
		return nil, nil, &phaseError{"factory", fmt.Errorf("factory partition %s: %w", p.Label, err)}
	}
	return rec, idx, nil
}

// fits checks that n bytes fit in the partition labelled label.
func (f *flow) fits(ctx context.Context, label string, n int64) error {
	dev, err := f.sys.Partition(ctx, label)
	if err != nil {
		return err
	}
	d, err := blockdev.Open(dev, os.O_RDONLY)
	if err != nil {
		return err
	}
	defer d.Close()
	if d.Size() < n {
		return fmt.Errorf("the factory image, %d bytes, does not fit in %s (%d bytes)", n, label, d.Size())
	}
	return nil
}

// goodSlot is the slot an A/B reset keeps: the first good one in the
// bootloader's order, or, when resuming, the one the first save named.
func (f *flow) goodSlot(ctx context.Context, l *board.Layout, v bootenv.Vars, resuming bool) (slot.Name, error) {
	names := slotNames(l)
	if resuming {
		for _, s := range strings.Fields(v[slot.OrderVar]) {
			for _, n := range names {
				if slot.Name(s) == n {
					return n, nil
				}
			}
		}
		return "", &phaseError{"check", fmt.Errorf("a factory reset is under way, but %s=%q names no slot of layout %s to keep", slot.OrderVar, v[slot.OrderVar], f.p.layout)}
	}
	vars, err := slot.NewVars(f.env, slot.WithSlots(append(names, slot.Recovery)...), slot.WithCmdline(os.DevNull))
	if err != nil {
		return "", &phaseError{"bootloader", err}
	}
	st, err := vars.Status(ctx)
	if err != nil {
		return "", &phaseError{"bootloader", err}
	}
	f.say("slots: %s", describe(st))
	for _, s := range st.Slots {
		if s.State == slot.Good && !s.Name.ReadOnly() {
			return s.Name, nil
		}
	}
	return "", &phaseError{"check", fmt.Errorf("layout %s has no factory partition and no slot is good: nothing known to boot to keep", f.p.layout)}
}

// beginReset makes the bootloader boot recovery, in factory-reset mode,
// before slot s and every slot no more, in one save.
func beginReset(ctx context.Context, env bootenv.Env, s slot.Name, slots []slot.Name) error {
	v, err := env.Load(ctx)
	if err != nil && !errors.Is(err, bootenv.ErrNoEnv) {
		return err
	}
	w := maps.Clone(v)
	if w == nil {
		w = bootenv.Vars{}
	}
	w[ModeVar] = FactoryResetMode
	w[slot.OrderVar] = string(slot.Recovery) + " " + string(s)
	for _, n := range slots {
		w[slot.LeftVar(n)] = "0"
	}
	delete(w, slot.TryVar)
	if maps.Equal(v, w) {
		return nil
	}
	return env.Save(ctx, w)
}

// dropOnSave is an Env whose saves leave out names: the switch's one save
// also ends the reset.
type dropOnSave struct {
	bootenv.Env
	names []string
}

func (d dropOnSave) Save(ctx context.Context, v bootenv.Vars) error {
	v = maps.Clone(v)
	for _, n := range d.names {
		delete(v, n)
	}
	return d.Env.Save(ctx, v)
}

// restoreSlot copies the factory image from partition fp into the slot
// partition labelled label and reads it back.
func (f *flow) restoreSlot(ctx context.Context, fp board.Partition, label string, im release.Image) error {
	srcDev, err := f.sys.Partition(ctx, fp.Label)
	if err != nil {
		return &phaseError{"disk", err}
	}
	src, err := blockdev.Open(srcDev, os.O_RDONLY)
	if err != nil {
		return &phaseError{"disk", err}
	}
	defer src.Close()
	dstDev, err := f.sys.Partition(ctx, label)
	if err != nil {
		return &phaseError{"disk", err}
	}
	open := f.openSlot
	if open == nil {
		open = openSlotFile
	}
	dst, c, err := open(dstDev)
	if err != nil {
		return &phaseError{"disk", err}
	}
	defer c.Close()
	f.say("restoring %s from %s (%d bytes)", label, fp.Label, im.Size)
	if err := copyImage(ctx, dst, src, im.Size, &progress.Lines{W: f.console, Step: 25}); err != nil {
		return &phaseError{"restore", fmt.Errorf("%s: %w", label, err)}
	}
	if err := install.VerifySlot(ctx, dst, im); err != nil {
		return &phaseError{"restore", fmt.Errorf("%s read back: %w", label, err)}
	}
	f.say("restored %s: read back, it matches the factory record", label)
	return nil
}

// copyImage copies the first n bytes of src into dst, 1 MiB at a time,
// and flushes.
func copyImage(ctx context.Context, dst interface {
	io.WriterAt
	Flush() error
}, src io.ReaderAt, n int64, pr progress.Reporter) error {
	buf := make([]byte, 1<<20)
	pr.Start("restore", n)
	for off := int64(0); off < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := buf[:min(int64(len(buf)), n-off)]
		if _, err := src.ReadAt(b, off); err != nil {
			return fmt.Errorf("read at %d: %w", off, err)
		}
		if _, err := dst.WriteAt(b, off); err != nil {
			return fmt.Errorf("write at %d: %w", off, err)
		}
		off += int64(len(b))
		pr.Add(int64(len(b)))
	}
	pr.Done()
	return dst.Flush()
}

// resetData empties the data partition p. An unencrypted one is wiped and
// gets a new ext4 holding the trusted state, with rec's release (if any)
// recorded as installed in slot s and its index idx kept. An encrypted one
// is crypto-erased.
func (f *flow) resetData(ctx context.Context, p board.Partition, s slot.Name, rec *factory.Record, idx *chunk.Index) error {
	if p.Encrypted {
		return f.cryptoErase(ctx, p)
	}
	w, err := f.freshData(ctx, p)
	if err != nil {
		return &phaseError{"data", err}
	}
	f.res.Wiped = append(f.res.Wiped, w)
	stateDir, err := f.openState(ctx)
	if err != nil {
		return &phaseError{"state", err}
	}
	if rec == nil {
		f.say("the release in slot %s is not recorded: the next update installs the newest", s)
		return nil
	}
	client := &release.Client{State: durable.OS(stateDir), Board: f.board.Name}
	if err := client.Installed(rec.Version); err != nil {
		return &phaseError{"state", err}
	}
	if err := f.keepIndex(string(s), install.ImageResult{Class: rec.Image.Class, Index: idx}); err != nil {
		return &phaseError{"state", fmt.Errorf("keep the index of %s %s: %w", s, rec.Image.Class, err)}
	}
	f.say("data partition %s: new ext4, trusted state provisioned, release %s recorded as installed in %s", p.Label, rec.Version, s)
	return nil
}

// freshData wipes the data partition p and, unless it is encrypted, makes
// an empty ext4 on it, so that the next update provisions its trusted
// state there.
func (f *flow) freshData(ctx context.Context, p board.Partition) (Wiped, error) {
	w, err := f.wipeOne(ctx, p.Label)
	if err != nil {
		return w, err
	}
	f.sayWiped(w)
	if p.Encrypted {
		f.say("%s is encrypted: it cannot be re-keyed here (no LUKS2 formatter yet), so it is left without a file system", p.Label)
		return w, nil
	}
	path, err := f.sys.Partition(ctx, p.Label)
	if err != nil {
		return w, err
	}
	// O_EXCL: not while anything has it open or mounted.
	dev, err := os.OpenFile(path, os.O_RDWR|os.O_EXCL, 0)
	if err != nil {
		return w, fmt.Errorf("open %s: %w", p.Label, err)
	}
	defer dev.Close()
	if err := mkfs.Ext4(dev, w.Bytes, p.Label); err != nil {
		return w, fmt.Errorf("%s: %w", p.Label, err)
	}
	f.say("made an empty ext4 file system on %s", p.Label)
	return w, nil
}

// cryptoErase destroys the keys of the encrypted data partition p: its
// LUKS2 headers and keyslots, and the sealed key beside the bootloader
// environment.
func (f *flow) cryptoErase(ctx context.Context, p board.Partition) error {
	path, err := f.sys.Partition(ctx, p.Label)
	if err != nil {
		return &phaseError{"data", err}
	}
	dev, err := blockdev.Open(path, os.O_RDWR|os.O_EXCL)
	if err != nil {
		return &phaseError{"data", fmt.Errorf("open %s: %w", p.Label, err)}
	}
	defer dev.Close()
	sealed := reset.SealedKey{}
	if f.envDir != "" {
		sealed = reset.SealedKey{FS: durable.OS(f.envDir), Name: board.SealedKeyPath(p.Label)}
	}
	st, err := reset.CryptoErase(ctx, dev, reset.KeyEraserFuncs{Erase: dmcrypt.EraseKeyslots, Check: dmcrypt.Erased}, sealed)
	if err != nil {
		return &phaseError{"data", fmt.Errorf("%s: %w", p.Label, err)}
	}
	f.res.Wiped = append(f.res.Wiped, Wiped{Label: p.Label, Bytes: dev.Size()})
	f.say("crypto-erased %s: its LUKS2 keys are gone (already: %v; sealed key removed: %v)", p.Label, st.AlreadyErased, st.SealedKeyRemoved)
	f.say("%s cannot be re-keyed here (no LUKS2 formatter yet): it is left without a file system, and no trusted state is provisioned", p.Label)
	return nil
}
