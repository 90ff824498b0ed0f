package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/assemble"
	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/factory"
	"github.com/lifeboat-update/lifeboat/pkg/flash"
	"github.com/lifeboat-update/lifeboat/pkg/identity"
	"github.com/lifeboat-update/lifeboat/pkg/install"
	"github.com/lifeboat-update/lifeboat/pkg/mkfs"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

// flashCheck is the check a refused flash fails, in the result: a disk
// that is not blank, or too small for the layout.
const flashCheck = "refused"

// DefaultProductUUID is where the kernel shows the DMI system UUID, the
// device ID of a flash given no lifeboat.device=.
const DefaultProductUUID = "/sys/class/dmi/id/product_uuid"

// flash is lifeboat.mode=flash, the manufacturing flash of a blank disk
// (README.md, "Manufacturing flash"). In order, each step a phase:
//
//   - partition: the layout's GPT on the board's disk (board.json "disk"),
//     which must be blank (no GPT, no MBR partitions) unless
//     lifeboat.force=1, and at least the layout's disk_size; then the
//     kernel re-reads it and every PARTLABEL appears;
//   - data: an empty ext4 on the data partition, holding the trusted
//     state provisioned from the ramdisk's root.json;
//   - source: the bundle or the repository, as for an update;
//   - boot: the partition images the source serves beside the repository
//     (package flash: the ESP or boot partition), each decompressed and
//     checked against the manifest's size and SHA-256 before it is
//     written, and read back after;
//   - install: the newest release into the layout's first slot, every
//     chunk verified and the slot verified after (pkg/install); the
//     release recorded as installed and the slot's index kept;
//   - factory, when the layout has a factory partition: the same image
//     into it, seeded by the slot just written and verified the same way,
//     and the factory record (pkg/factory);
//   - identity: the device ID and a new token (pkg/identity) on the
//     partition holding the bootloader environment;
//   - switch: the slot's verity argument and lifeboat_layout, then the
//     slot put on trial: the last write, so that a flash cut short never
//     boots a slot.
//
// The result carries the registration for the fleet server.
func (f *flow) flash(ctx context.Context) (string, string, error) {
	if err := f.openLayout(); err != nil {
		return "", "", err
	}
	l := f.layout
	data, err := f.flashable(l)
	if err != nil {
		return "", "", &phaseError{"check", err}
	}
	disk, err := f.sys.Disk(ctx, f.board.Disk)
	if err != nil {
		return "", "", &phaseError{"disk", err}
	}
	if err := f.partition(ctx, disk, l); err != nil {
		return "", "", err
	}
	f.phase("partition")

	if err := f.mkfsData(ctx, data.Label); err != nil {
		return "", "", &phaseError{"data", err}
	}
	stateDir, err := f.openState(ctx)
	if err != nil {
		return "", "", &phaseError{"data", err}
	}
	f.phase("data")

	fetch, stores, done, err := f.openSource(ctx, false)
	if err != nil {
		return "", "", err
	}
	defer done()

	manifest, err := f.writeFlashImages(ctx, fetch, l)
	if err != nil {
		return "", "", &phaseError{"boot", err}
	}
	if err := f.openEnv(ctx); err != nil {
		return "", "", err
	}
	f.phase("boot")

	// The install, into the first slot of every class.
	target := slot.Name(l.SlotNames()[0])
	slots := map[string]string{}
	for _, class := range l.Classes() {
		label := partitionOf(l, class, target)
		if label == "" {
			return "", "", &phaseError{"layout", fmt.Errorf("class %s has no slot %s", class, target)}
		}
		dev, err := f.sys.Partition(ctx, label)
		if err != nil {
			return "", "", &phaseError{"disk", err}
		}
		slots[class] = dev
	}
	f.res.Slot = string(target)
	client := &release.Client{State: durable.OS(stateDir), Fetch: fetch, Board: f.board.Name}
	res, err := install.Install(ctx, client, slots, install.Options{Stores: stores, Progress: f.progress()})
	if err != nil {
		return "", "", err
	}
	f.res.Version = res.Version
	verity := ""
	for _, im := range res.Images {
		// An in-place update of a one-slot layout needs the index.
		if err := f.keepIndex(string(target), im); err != nil {
			return "", "", &phaseError{"state", fmt.Errorf("keep the index of %s %s: %w", target, im.Class, err)}
		}
		if v := f.written(res.Version, target, im); v != "" {
			verity = v
		}
	}
	f.phase("install")

	if p, ok := l.Role(board.RoleFactory); ok {
		if err := f.writeFactory(ctx, p.Label, target, res, stores); err != nil {
			return "", "", &phaseError{"factory", err}
		}
		f.phase("factory")
	}

	server := manifest.Server
	if f.p.server != "" {
		server = f.p.server
	}
	reg, err := f.writeIdentity(res.Version, server)
	if err != nil {
		return "", "", &phaseError{"identity", err}
	}
	f.phase("identity")

	if err := f.switchFlashed(ctx, target, verity); err != nil {
		return "", "", &phaseError{"switch", err}
	}
	f.say("bootloader: %s is next, with %d tries", target, slot.DefaultTries)
	f.phase("switch")
	// Registered only once the device boots what was flashed.
	f.res.Identity = &reg
	return string(target), verity, nil
}

// flashable checks what a flash needs of the board and layout, before the
// disk is touched, and returns the data partition.
func (f *flow) flashable(l *board.Layout) (board.Partition, error) {
	data, ok := l.Role(board.RoleData)
	switch {
	case f.board.Disk == "":
		return data, fmt.Errorf("board %s names no disk to flash (board.json \"disk\")", f.board.Name)
	case f.board.Bootloader.EnvPartition == "":
		return data, fmt.Errorf("board %s has no partition for the bootloader environment, where the identity is kept", f.board.Name)
	case !ok:
		return data, fmt.Errorf("layout %s has no data partition for the trusted state", f.p.layout)
	case data.Encrypted:
		return data, fmt.Errorf("layout %s: the data partition %s is encrypted, and a flash makes no LUKS2 volume", f.p.layout, data.Label)
	case f.p.device != "":
		if err := identity.CheckDeviceID(f.p.device); err != nil {
			return data, fmt.Errorf("lifeboat.device=: %w", err)
		}
	}
	return data, nil
}

// partition writes the layout's GPT on the whole disk at path and waits
// for the kernel's device nodes of its partitions.
func (f *flow) partition(ctx context.Context, path string, l *board.Layout) error {
	want, err := board.ParseSize(l.DiskSize)
	if err != nil {
		return &phaseError{"layout", err}
	}
	gpt, err := l.GPT()
	if err != nil {
		return &phaseError{"layout", err}
	}
	// O_EXCL: the kernel refuses a disk with a partition mounted.
	dev, err := blockdev.Open(path, os.O_RDWR|os.O_EXCL)
	if err != nil {
		return &phaseError{"disk", fmt.Errorf("open %s: %w", path, err)}
	}
	defer dev.Close()
	if dev.Size() < want {
		return &phaseError{flashCheck, fmt.Errorf("disk %s has %d bytes, layout %s needs %d (disk_size %s)", path, dev.Size(), f.p.layout, want, l.DiskSize)}
	}
	if f.p.force {
		// Both copies of a GPT, and the MBR, are in the first and the
		// last MiB.
		const mib = 1 << 20
		for _, off := range []int64{0, dev.Size() - mib} {
			if _, err := blockdev.Zero(ctx, dev, off, mib); err != nil {
				return &phaseError{"partition", err}
			}
		}
		f.say("lifeboat.force=1: cleared the partition tables of %s", path)
	}
	t, err := gpt.Create(dev)
	if errors.Is(err, blockdev.ErrNotBlank) {
		return &phaseError{flashCheck, fmt.Errorf("disk %s is not blank (%w); give lifeboat.force=1 to overwrite it", path, err)}
	}
	if err != nil {
		return &phaseError{"partition", fmt.Errorf("%s: %w", path, err)}
	}
	if err := dev.Close(); err != nil {
		return &phaseError{"partition", err}
	}
	var labels []string
	for _, p := range t.Partitions {
		labels = append(labels, p.Name)
	}
	f.say("wrote layout %s's GPT on %s (%d bytes): %s", f.p.layout, path, dev.Size(), strings.Join(labels, ", "))
	if err := f.sys.RereadPartitions(path); err != nil {
		return &phaseError{"partition", err}
	}
	for _, label := range labels {
		if _, err := f.sys.Partition(ctx, label); err != nil {
			return &phaseError{"partition", err}
		}
	}
	return nil
}

// mkfsData makes an empty ext4 on the data partition labelled label.
func (f *flow) mkfsData(ctx context.Context, label string) error {
	path, err := f.sys.Partition(ctx, label)
	if err != nil {
		return err
	}
	dev, err := os.OpenFile(path, os.O_RDWR|os.O_EXCL, 0)
	if err != nil {
		return err
	}
	defer dev.Close()
	size, err := dev.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("size of %s: %w", path, err)
	}
	if err := mkfs.Ext4(dev, size, label); err != nil {
		return err
	}
	f.say("made an empty ext4 on %s (%s, %d bytes)", label, path, size)
	return dev.Close()
}

// writeFlashImages writes the partition images the source serves beside
// the repository, and returns their manifest. The partition holding the
// bootloader environment must be among them; slots, data and factory
// partitions must not.
func (f *flow) writeFlashImages(ctx context.Context, fetch release.Fetcher, l *board.Layout) (*flash.Manifest, error) {
	b, err := fetch.Fetch(ctx, flash.ManifestName, flash.MaxManifestSize)
	if err != nil {
		return nil, err
	}
	m, err := flash.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flash.ManifestName, err)
	}
	if m.Board != f.board.Name {
		return nil, fmt.Errorf("%s is for board %s, this is %s", flash.ManifestName, m.Board, f.board.Name)
	}
	if _, ok := m.Image(f.board.Bootloader.EnvPartition); !ok {
		return nil, fmt.Errorf("%s has no image of %s, the partition holding the bootloader environment", flash.ManifestName, f.board.Bootloader.EnvPartition)
	}
	for _, im := range m.Images {
		p, ok := l.Partition(im.Label)
		switch {
		case !ok:
			return nil, fmt.Errorf("%s: layout %s has no partition %s", flash.ManifestName, f.p.layout, im.Label)
		case p.Role == board.RoleSlot || p.Role == board.RoleData || p.Role == board.RoleFactory:
			return nil, fmt.Errorf("%s: partition %s has role %s: it is written from the release, not from an image", flash.ManifestName, im.Label, p.Role)
		}
		if err := f.writeFlashImage(ctx, fetch, im); err != nil {
			return nil, fmt.Errorf("%s: %w", im.Label, err)
		}
	}
	return m, nil
}

// writeFlashImage fetches one image and checks it against the manifest,
// then writes it from the partition's first byte, decompressing it again
// as it goes (so that a large image never sits in RAM), and reads it
// back.
func (f *flow) writeFlashImage(ctx context.Context, fetch release.Fetcher, im flash.Image) error {
	stored, err := fetch.Fetch(ctx, flash.ImageName(im.Label), im.Stored)
	if err != nil {
		return err
	}
	if err := im.Verify(stored); err != nil {
		return err
	}
	path, err := f.sys.Partition(ctx, im.Label)
	if err != nil {
		return err
	}
	dev, err := blockdev.Open(path, os.O_RDWR|os.O_EXCL)
	if err != nil {
		return err
	}
	defer dev.Close()
	if im.Size > dev.Size() {
		return fmt.Errorf("image of %d bytes, the partition has %d", im.Size, dev.Size())
	}
	r, err := im.Decompress(stored)
	if err != nil {
		return err
	}
	defer r.Close()
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(io.NewOffsetWriter(dev, 0), r, buf); err != nil {
		return err
	}
	if err := dev.Flush(); err != nil {
		return err
	}
	// Read back against the image, decompressed once more: cheaper than
	// hashing it again.
	back, err := im.Decompress(stored)
	if err != nil {
		return err
	}
	defer back.Close()
	want := make([]byte, len(buf))
	for off := int64(0); off < im.Size; off += int64(len(buf)) {
		n := min(int64(len(buf)), im.Size-off)
		if _, err := io.ReadFull(back, want[:n]); err != nil {
			return err
		}
		if _, err := dev.ReadAt(buf[:n], off); err != nil {
			return fmt.Errorf("read back: %w", err)
		}
		if !bytes.Equal(buf[:n], want[:n]) {
			return fmt.Errorf("read back: %s differs from the image written in [%d, +%d)", path, off, n)
		}
	}
	f.say("wrote %s (%s): %d bytes (%d compressed), SHA-256 %s, read back", im.Label, path, im.Size, im.Stored, im.SHA256)
	return nil
}

// writeFactory writes the image of the root class, just installed into
// slot s, into the factory partition labelled label, seeded by the slot,
// and records it (pkg/factory) on the partition holding the bootloader
// environment.
func (f *flow) writeFactory(ctx context.Context, label string, s slot.Name, res *install.Result, stores []store.Store) error {
	class := rootClass(f.layout)
	var im *install.ImageResult
	for i := range res.Images {
		if res.Images[i].Class == class {
			im = &res.Images[i]
		}
	}
	if im == nil {
		return fmt.Errorf("release %s has no %s image for the factory partition", res.Version, class)
	}
	dev, err := f.sys.Partition(ctx, label)
	if err != nil {
		return err
	}
	seed, c, err := f.openSeed(im.Slot, string(s), class)
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := install.WriteImage(ctx, release.PlannedImage{Image: im.Image, Index: im.Index}, dev, install.Options{
		Stores:   stores,
		Seeds:    []*assemble.Seed{seed},
		Progress: f.progress(),
	})
	if err != nil {
		return fmt.Errorf("write %s %s into %s: %w", res.Version, class, label, err)
	}
	f.say("wrote %s %s into %s, seeded by %s:", res.Version, class, label, s)
	st.WriteSummary(f.console)
	f.res.FetchedBytes += st.Fetched()
	f.res.ImageBytes += st.Bytes
	var idx bytes.Buffer
	if _, err := im.Index.WriteTo(&idx); err != nil {
		return err
	}
	rec := factory.Record{Board: f.board.Name, Version: res.Version, Image: im.Image}
	if err := factory.Write(durable.OS(f.envDir), rec, idx.Bytes()); err != nil {
		return fmt.Errorf("factory record: %w", err)
	}
	f.say("factory record: %s %s in %s (%s:%s)", res.Version, class, label, f.board.Bootloader.EnvPartition, factory.RecordName)
	return nil
}

// writeIdentity makes the device's identity, naming the fleet server
// server ("" none), writes it on the partition holding the bootloader
// environment and returns its registration.
func (f *flow) writeIdentity(version, server string) (identity.Registration, error) {
	id, from, err := f.deviceID()
	if err != nil {
		return identity.Registration{}, err
	}
	ident, err := identity.New(id, f.board.Name, rand.Reader)
	if err != nil {
		return identity.Registration{}, err
	}
	ident.Server = server
	if err := identity.Write(durable.OS(f.envDir), ident); err != nil {
		return identity.Registration{}, err
	}
	reg, err := ident.Registration(version)
	if err != nil {
		return identity.Registration{}, err
	}
	f.say("identity: device %s (%s), token SHA-256 %s, fleet server %q, in %s:%s", reg.DeviceID, from, reg.TokenSHA256, server, f.board.Bootloader.EnvPartition, identity.Name)
	return reg, nil
}

// deviceID returns the device ID and where it came from: lifeboat.device=,
// else the DMI system UUID when there is a usable one, else a random UUID.
func (f *flow) deviceID() (id, from string, err error) {
	if f.p.device != "" {
		return f.p.device, "lifeboat.device=", nil // checked by flashable
	}
	if f.productUUID != "" {
		b, err := os.ReadFile(f.productUUID)
		u := strings.ToLower(strings.TrimSpace(string(b)))
		switch {
		case err != nil:
			f.say("no DMI system UUID (%v): a random device ID", err)
		case strings.Trim(u, "0-") == "" || strings.Trim(u, "f-") == "" || identity.CheckDeviceID(u) != nil:
			f.say("DMI system UUID %q is not unique: a random device ID", u)
		default:
			return u, "DMI system UUID", nil
		}
	}
	u, err := identity.NewUUID(rand.Reader)
	return u, "random", err
}

// switchFlashed makes the flashed slot s boot: its verity argument and the
// layout's name first, in one save that boots nothing, then s on trial.
func (f *flow) switchFlashed(ctx context.Context, s slot.Name, verity string) error {
	v, err := f.env.Load(ctx)
	if err != nil {
		return err
	}
	if verity != "" {
		v[verityName(s)] = verity
	}
	v["lifeboat_layout"] = f.p.layout
	if err := f.env.Save(ctx, v); err != nil {
		return err
	}
	vars, err := slot.NewVars(f.env, slot.WithSlots(append(slotNames(f.layout), slot.Recovery)...), slot.WithCmdline(os.DevNull))
	if err != nil {
		return err
	}
	return vars.Try(ctx, s, slot.DefaultTries)
}
