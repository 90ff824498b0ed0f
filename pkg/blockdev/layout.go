package blockdev

import (
	"cmp"
	"errors"
	"fmt"
)

// Errors about layouts.
var (
	// ErrNoFit is wrapped by the error about a layout too big for the
	// disk.
	ErrNoFit = errors.New("layout does not fit the disk")
	// ErrNotBlank is wrapped by Layout.Create's error on a disk that
	// already has a GPT.
	ErrNotBlank = errors.New("disk already has a partition table")
)

// Rest is the Size of the partition that takes the space the others leave.
const Rest int64 = -1

// DefaultAlign is the default alignment of partitions: 1 MiB, which suits
// every erase block and RAID stripe in practice.
const DefaultAlign = 1 << 20

// Layout is a board's partitions, to be created on a blank disk.
type Layout struct {
	// SectorSize is the disk's logical sector size, 512 or 4096; zero
	// means that of the device (Create) or 512 (Plan).
	SectorSize int
	// Align is the alignment in bytes of the start of every partition, a
	// multiple of the sector size; zero means DefaultAlign.
	Align int64
	// DiskGUID is the disk's GUID; zero means a random one.
	DiskGUID GUID
	// Partitions are numbered from 1 in this order, and laid out in it.
	Partitions []PartitionSpec
}

// PartitionSpec is one partition of a Layout.
type PartitionSpec struct {
	Name string // PARTLABEL, at most 36 UTF-16 code units
	Type GUID
	// Size is the size in bytes, a multiple of the sector size, or Rest
	// (one partition at most), which takes what the others leave, rounded
	// down to the alignment.
	Size int64
	// UUID is the PARTUUID; zero means a random one. Fix it for
	// reproducible images.
	UUID       GUID
	Attributes uint64
}

// Validate checks the layout on its own, without a disk.
func (l Layout) Validate() error {
	ss := cmp.Or(l.SectorSize, 512)
	if ss != 512 && ss != 4096 {
		return fmt.Errorf("layout: sector size %d, want 512 or 4096", ss)
	}
	align := cmp.Or(l.Align, DefaultAlign)
	if align <= 0 || align%int64(ss) != 0 {
		return fmt.Errorf("layout: alignment %d is not a multiple of the %d-byte sector", align, ss)
	}
	if len(l.Partitions) > gptNumEntries {
		return fmt.Errorf("layout: %d partitions, the most is %d", len(l.Partitions), gptNumEntries)
	}
	rest := 0
	uuids := make(map[GUID]string)
	for i, p := range l.Partitions {
		what := fmt.Sprintf("layout: partition %d (%q)", i+1, p.Name)
		switch {
		case p.Type.IsZero():
			return fmt.Errorf("%s has no type", what)
		case p.Size == Rest:
			rest++
		case p.Size <= 0 || p.Size%int64(ss) != 0:
			return fmt.Errorf("%s: size %d is not a positive multiple of the %d-byte sector", what, p.Size, ss)
		}
		if err := encodeName(make([]byte, 2*gptNameUnits), p.Name); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !p.UUID.IsZero() {
			if other, ok := uuids[p.UUID]; ok {
				return fmt.Errorf("%s has the GUID of %q", what, other)
			}
			uuids[p.UUID] = p.Name
		}
	}
	if rest > 1 {
		return fmt.Errorf("layout: %d partitions of size Rest, the most is one", rest)
	}
	return nil
}

// Plan lays l out on a disk of size bytes and returns the table, with
// random GUIDs where l has none. It fails with an error wrapping ErrNoFit
// when the partitions do not fit.
func (l Layout) Plan(size int64) (*Table, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	ss := int64(cmp.Or(l.SectorSize, 512))
	align := cmp.Or(l.Align, DefaultAlign)
	sectors := size / ss
	es := int64(gptNumEntries*gptEntrySize) / ss
	if sectors < 2*es+4 {
		return nil, fmt.Errorf("layout: %d-byte disk has no room for a GPT: %w", size, ErrNoFit)
	}
	t := &Table{
		SectorSize:     int(ss),
		DiskGUID:       l.DiskGUID,
		FirstUsableLBA: uint64(2 + es),
		LastUsableLBA:  uint64(sectors - 2 - es),
		NumEntries:     gptNumEntries,
		EntrySize:      gptEntrySize,
	}
	if t.DiskGUID.IsZero() {
		t.DiskGUID = NewGUID()
	}
	alignUp := func(n int64) int64 { return (n + align - 1) / align * align }
	usableEnd := int64(t.LastUsableLBA+1) * ss // bytes
	// Space the partitions after the Rest one need, each aligned.
	after := make([]int64, len(l.Partitions)+1)
	for i := len(l.Partitions) - 1; i >= 0; i-- {
		if l.Partitions[i].Size != Rest {
			after[i] = after[i+1] + alignUp(l.Partitions[i].Size)
		} else {
			after[i] = after[i+1]
		}
	}
	start := alignUp(int64(t.FirstUsableLBA) * ss)
	for i, spec := range l.Partitions {
		n := spec.Size
		if n == Rest {
			n = (usableEnd - start - after[i+1]) / align * align
			if n <= 0 {
				return nil, fmt.Errorf("layout: no room left for partition %d (%q) on a %d-byte disk: %w", i+1, spec.Name, size, ErrNoFit)
			}
		}
		if start+n > usableEnd {
			return nil, fmt.Errorf("layout: partition %d (%q) would end at byte %d, the disk's usable area at %d: %w", i+1, spec.Name, start+n, usableEnd, ErrNoFit)
		}
		p := Partition{
			Number:     i + 1,
			Type:       spec.Type,
			UUID:       spec.UUID,
			FirstLBA:   uint64(start / ss),
			LastLBA:    uint64((start+n)/ss - 1),
			Attributes: spec.Attributes,
			Name:       spec.Name,
		}
		if p.UUID.IsZero() {
			p.UUID = NewGUID()
		}
		t.Partitions = append(t.Partitions, p)
		start = alignUp(start + n)
	}
	return t, nil
}

// Create lays l out on dev, which must be blank (no MBR partitions, no GPT,
// not even a damaged one: ErrNotBlank), writes the table and flushes. On a
// block device the sector size is the device's (a different non-zero
// SectorSize is an error); elsewhere, as on a disk image, it is SectorSize
// or 512.
func (l Layout) Create(dev Device) (*Table, error) {
	if f, ok := dev.(*File); ok && f.BlockDevice() {
		ss, _ := f.SectorSizes()
		if l.SectorSize != 0 && l.SectorSize != ss {
			return nil, fmt.Errorf("layout: sector size %d, %s has %d", l.SectorSize, f.Name(), ss)
		}
		l.SectorSize = ss
	}
	if err := checkBlank(dev); err != nil {
		return nil, err
	}
	t, err := l.Plan(dev.Size())
	if err != nil {
		return nil, err
	}
	if err := WriteGPT(dev, dev.Size(), t); err != nil {
		return nil, err
	}
	if err := dev.Flush(); err != nil {
		return nil, err
	}
	return t, nil
}

// checkBlank fails with ErrNotBlank when dev has an MBR with partitions or
// a GPT.
func checkBlank(dev Device) error {
	var mbr [512]byte
	if _, err := dev.ReadAt(mbr[:], 0); err != nil {
		return fmt.Errorf("layout: read MBR: %w", err)
	}
	if mbr[510] == mbrSignatureLo && mbr[511] == mbrSignatureHi {
		for i := range 4 {
			if mbr[mbrPartitions+16*i+4] != 0 {
				return fmt.Errorf("layout: MBR partition %d: %w", i+1, ErrNotBlank)
			}
		}
	}
	switch _, err := ReadGPT(dev, dev.Size(), 0); {
	case err == nil, errors.Is(err, ErrCorrupt):
		return fmt.Errorf("layout: %w", ErrNotBlank)
	case !errors.Is(err, ErrNoGPT):
		return fmt.Errorf("layout: %w", err)
	}
	return nil
}
