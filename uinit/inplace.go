package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/inplace"
	"github.com/lifeboat-update/lifeboat/pkg/install"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

// DefaultInPlaceRAM bounds the old chunks an in-place update keeps in RAM
// at once; past it they are spilled to the data partition.
const DefaultInPlaceRAM = 32 << 20

// DefaultInPlaceCommit is the most bytes an in-place update writes
// between two records in its journal: what a power cut may make it
// fetch or move again.
const DefaultInPlaceCommit = 4 << 20

// The in-place update's files on the data partition: its journal and
// spill area, one per class.
const inplaceDir = "lifeboat/inplace"

func inplaceJournal(class string) string { return inplaceDir + "/" + class + ".journal" }
func inplaceSpill(class string) string   { return inplaceDir + "/" + class + ".spill" }

// ErrNoInstalledIndex is returned when the data partition keeps no index
// of the image in the only slot: its chunks cannot be located, so the slot
// cannot be rewritten in place safely.
var ErrNoInstalledIndex = errors.New("no index of the installed image: the slot cannot be updated in place safely")

// openSlotFile opens a slot's partition for an in-place update.
func openSlotFile(dev string) (inplace.Target, io.Closer, error) {
	d, err := blockdev.Open(dev, os.O_RDWR)
	if err != nil {
		return nil, nil, err
	}
	return d, d, nil
}

// updateInPlace, once the flow has opened the environment and the trusted
// state (stateDir), updates a layout with one slot of its root class: the
// slot is rewritten in place, seeded by the release it holds. From the
// first write until the slot is whole and verified the bootloader boots
// recovery first, so a power cut comes back here, and the same plan
// resumes from its journal.
func (f *flow) updateInPlace(ctx context.Context, stateDir string) (string, string, error) {
	l := f.layout
	target := slot.Name(l.Slots(rootClass(l))[0].Slot)
	env := f.env
	vars, err := slot.NewVars(env, slot.WithSlots(target, slot.Recovery), slot.WithCmdline(os.DevNull))
	if err != nil {
		return "", "", &phaseError{"bootloader", err}
	}
	if err := f.dataFS().MkdirAll(inplaceDir, 0o755); err != nil {
		return "", "", &phaseError{"state", err}
	}
	if err := durable.Clean(f.dataFS(), inplaceDir); err != nil {
		return "", "", &phaseError{"state", err}
	}
	f.say("one slot (%s): updating it in place", target)
	f.res.Slot, f.res.Seed = string(target), string(target)
	f.phase("mount")

	// Journals left behind: an update was under way.
	resumed, err := f.inplaceLeft(l.Classes())
	if err != nil {
		return "", "", &phaseError{"state", err}
	}
	fetch, stores, done, err := f.openSource(ctx, resumed)
	if err != nil {
		return "", "", err
	}
	defer done()
	if f.idle {
		return f.upToDate(ctx, vars, target, "the fleet server assigns no release")
	}

	client := &release.Client{State: durable.OS(stateDir), Fetch: fetch, Board: f.board.Name}
	plan, err := client.PlanVersion(ctx, l.Classes(), f.assigned)
	if errors.Is(err, release.ErrUpToDate) {
		// Recorded as installed: the slot was verified before that. A cut
		// before the switch leaves journals behind: finish the switch.
		if !resumed {
			return f.upToDate(ctx, vars, target, err.Error())
		}
		f.say("%v, but the switch was cut short: finishing it", err)
		f.phase("install")
		return f.switchInPlace(ctx, vars, target, verityVar(ctx, env, target), l.Classes())
	}
	if err != nil {
		return "", "", err
	}
	f.res.Version = plan.Version

	// Every plan first, so that nothing is written before every image has
	// an index of what the slot holds.
	type job struct {
		im   release.PlannedImage
		dev  string
		plan *inplace.Plan
	}
	var jobs []job
	for _, im := range plan.Images {
		label := partitionOf(l, im.Class, target)
		if label == "" {
			return "", "", &phaseError{"layout", fmt.Errorf("class %s has no slot %s", im.Class, target)}
		}
		dev, err := f.sys.Partition(ctx, label)
		if err != nil {
			return "", "", &phaseError{"disk", err}
		}
		old, err := f.installedIndex(target, im.Class)
		if err != nil {
			return "", "", &phaseError{"plan", fmt.Errorf("%s %s: %w", target, im.Class, err)}
		}
		ram := f.inplaceRAM
		if ram == 0 {
			ram = DefaultInPlaceRAM
		}
		commit := f.inplaceCommit
		if commit == 0 {
			commit = DefaultInPlaceCommit
		}
		p, err := inplace.NewPlan(old, im.Index, inplace.PlanOptions{RAMBudget: ram, CommitBytes: commit})
		if err != nil {
			return "", "", &phaseError{"plan", fmt.Errorf("%s %s: %w", target, im.Class, err)}
		}
		f.say("plan %s %s: %d in place, %d moved, %d zero, %d fetched (%d bytes); %d stashed (peak %d bytes of RAM), %d spilled (%d bytes)",
			plan.Version, im.Class, p.InPlace, p.Moved, p.Zero, p.Fetched, p.FetchBytes, p.Stashed, p.PeakRAM, p.Spilled, p.SpillSize)
		jobs = append(jobs, job{im, dev, p})
	}
	f.phase("plan")

	// Recovery first, before the first write: one save. The slot's counter
	// goes to 0 too, for a boot script that skips recovery while a slot
	// has tries.
	if err := bootRecoveryFirst(ctx, env, target); err != nil {
		return "", "", &phaseError{"bootloader", err}
	}
	f.recoveryFirst = true
	f.say("bootloader: recovery first until %s is whole and verified", target)
	f.tell(ctx, vars, api.PhaseDownloading, 0)

	verity := ""
	for _, jb := range jobs {
		st, err := f.applyInPlace(ctx, jb.plan, jb.dev, jb.im, stores)
		if st != nil {
			f.res.FetchedBytes += st.FetchedWire
		}
		if err != nil {
			return "", "", err
		}
		f.res.ImageBytes += jb.im.Size
		f.say("wrote %s %s into %s in place: %d ops (%d skipped), %d in place, %d moved, %d resumed, %d fetched (%d bytes), %d fallbacks, %d repaired",
			plan.Version, jb.im.Class, target, st.Ops, st.Skipped, st.InPlace.Chunks, st.Moved.Chunks, st.Resumed.Chunks, st.Fetched.Chunks, st.FetchedWire, st.Fallbacks, st.Repaired)
		if err := f.keepIndex(string(target), install.ImageResult{Class: jb.im.Class, Index: jb.im.Index}); err != nil {
			// The next update in place needs it: refuse to switch without.
			return "", "", &phaseError{"state", fmt.Errorf("keep the index of %s %s: %w", target, jb.im.Class, err)}
		}
		if jb.im.Verity != nil && jb.im.Class == rootClass(l) {
			verity = fmt.Sprintf("%d:%s", jb.im.Verity.HashOffset, jb.im.Verity.RootHash)
		}
	}
	f.phase("install")
	f.tell(ctx, vars, api.PhaseInstalling, 0)

	// The slot's verity argument while recovery is still first, then the
	// release recorded, then the switch.
	if err := setVar(ctx, env, verityName(target), verity); err != nil {
		return "", "", &phaseError{"switch", err}
	}
	if err := client.Installed(plan.Version); err != nil {
		return "", "", err
	}
	return f.switchInPlace(ctx, vars, target, verity, l.Classes())
}

// switchInPlace makes the slot, whole and verified, the one to try, then
// removes the in-place update's files.
func (f *flow) switchInPlace(ctx context.Context, vars *slot.Vars, target slot.Name, verity string, classes []string) (string, string, error) {
	if err := vars.Try(ctx, target, slot.DefaultTries); err != nil {
		return "", "", &phaseError{"switch", err}
	}
	f.recoveryFirst = false
	f.say("bootloader: %s is next, with %d tries", target, slot.DefaultTries)
	for _, class := range classes {
		j := inplace.Journal{FS: f.dataFS(), Name: inplaceJournal(class)}
		if err := j.Remove(); err != nil {
			f.say("%v", err)
		}
		if err := f.dataFS().Remove(inplaceSpill(class)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			f.say("remove spill: %v", err)
		}
	}
	f.phase("switch")
	f.tell(ctx, vars, api.PhaseRebooting, 0)
	return string(target), verity, nil
}

// inplaceLeft reports whether an in-place update left a journal.
func (f *flow) inplaceLeft(classes []string) (bool, error) {
	for _, class := range classes {
		_, err := os.Stat(filepath.Join(f.data, filepath.FromSlash(inplaceJournal(class))))
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
	}
	return false, nil
}

// installedIndex reads the kept index of the image in slot s.
func (f *flow) installedIndex(s slot.Name, class string) (*chunk.Index, error) {
	name := filepath.Join(f.data, filepath.FromSlash(install.SlotIndexName(string(s), class)))
	idx, err := chunk.ReadIndexFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoInstalledIndex
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoInstalledIndex, err)
	}
	return idx, nil
}

// bootRecoveryFirst makes the bootloader boot recovery before slot s, and
// s no more, in one save.
func bootRecoveryFirst(ctx context.Context, env bootenv.Env, s slot.Name) error {
	v, err := env.Load(ctx)
	if err != nil && !errors.Is(err, bootenv.ErrNoEnv) {
		return err
	}
	if v == nil {
		v = bootenv.Vars{}
	}
	order := string(slot.Recovery) + " " + string(s)
	if v[slot.OrderVar] == order && v[slot.LeftVar(s)] == "0" {
		return nil
	}
	v[slot.OrderVar] = order
	v[slot.LeftVar(s)] = "0"
	return env.Save(ctx, v)
}

// applyInPlace runs plan p on the slot at dev, with the journal and the
// spill area on the data partition, and verifies the slot against the
// signed release.
func (f *flow) applyInPlace(ctx context.Context, p *inplace.Plan, dev string, im release.PlannedImage, stores []store.Store) (*inplace.Stats, error) {
	open := f.openSlot
	if open == nil {
		open = openSlotFile
	}
	t, c, err := open(dev)
	if err != nil {
		return nil, &phaseError{"disk", err}
	}
	defer c.Close()
	var spill inplace.Target
	if p.SpillSize > 0 {
		name := filepath.Join(f.data, filepath.FromSlash(inplaceSpill(im.Class)))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return nil, &phaseError{"state", err}
		}
		sf, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, &phaseError{"state", err}
		}
		defer sf.Close()
		// Truncate keeps what an interrupted run spilled.
		if err := sf.Truncate(p.SpillSize); err != nil {
			return nil, &phaseError{"state", fmt.Errorf("spill area: %w", err)}
		}
		spill = inplace.SyncFile{File: sf}
	}
	j := inplace.Journal{FS: f.dataFS(), Name: inplaceJournal(im.Class)}
	st, err := inplace.Apply(ctx, p, t, inplace.Sources{Stores: stores}, j, spill, inplace.Options{
		Progress: f.progress(),
	})
	if err != nil {
		return st, fmt.Errorf("update %s in place: %w", im.Class, err)
	}
	if err := install.VerifySlot(ctx, t, im.Image); err != nil {
		if errors.Is(err, install.ErrSlotMismatch) {
			err = &release.AttackError{Class: release.ErrArbitrarySoftware, Detail: "content does not match the signed release", Cause: err}
		}
		return st, err
	}
	return st, nil
}
