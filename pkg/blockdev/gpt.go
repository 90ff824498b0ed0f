package blockdev

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"unicode/utf16"
)

// Errors about partition tables.
var (
	// ErrNoGPT is wrapped by the error of ReadGPT on a disk without a GUID
	// Partition Table: no protective MBR, or neither header signature.
	ErrNoGPT = errors.New("no GPT")
	// ErrCorrupt is wrapped by the errors about a damaged or inconsistent
	// table: by ReadGPT's when both copies are damaged, and by
	// Table.PrimaryErr and Table.BackupErr.
	ErrCorrupt = errors.New("corrupt GPT")
	// ErrInvalidTable is wrapped by WriteGPT's error for a table it will
	// not write, such as one with overlapping partitions.
	ErrInvalidTable = errors.New("invalid partition table")
)

// Partition attribute bits (UEFI 2.10, table 5.7); bits 48-63 belong to
// the partition type.
const (
	AttrRequired       uint64 = 1 << 0 // the platform needs it to work
	AttrNoBlockIO      uint64 = 1 << 1 // firmware must not expose it
	AttrLegacyBootable uint64 = 1 << 2 // legacy BIOS bootable
)

// The on-disk format.
const (
	gptSignature   = "EFI PART"
	gptRevision    = 0x00010000
	gptHeaderSize  = 92
	gptEntrySize   = 128
	gptNumEntries  = 128
	gptNameUnits   = 36      // UTF-16 code units in an entry's name
	maxEntryBytes  = 4 << 20 // largest entry array ReadGPT reads
	maxEntrySize   = 4096
	mbrPartitions  = 446
	mbrTypeGPT     = 0xee
	mbrSignatureLo = 0x55
	mbrSignatureHi = 0xaa
)

// Table is a GUID Partition Table.
type Table struct {
	// SectorSize is the size of the table's logical blocks: 512 or 4096.
	SectorSize int
	DiskGUID   GUID
	// FirstUsableLBA and LastUsableLBA bound the partitions. Zero, when
	// writing, means the widest the entry arrays allow.
	FirstUsableLBA, LastUsableLBA uint64
	// NumEntries and EntrySize describe the entry array; zero, when
	// writing, means 128 entries of 128 bytes.
	NumEntries, EntrySize uint32
	// Partitions are the used entries, by number.
	Partitions []Partition

	// PrimaryErr and BackupErr, set by ReadGPT, say what was wrong with
	// a copy of the table: when one is set, the table is the other copy.
	// They wrap ErrCorrupt, or the error of reading the copy.
	PrimaryErr, BackupErr error
}

// Partition is a used entry of a Table.
type Partition struct {
	// Number is the entry's place in the array from 1, as the kernel
	// numbers partitions (vda1, nvme0n1p1).
	Number     int
	Type       GUID
	UUID       GUID // the PARTUUID
	FirstLBA   uint64
	LastLBA    uint64 // inclusive
	Attributes uint64
	Name       string // the PARTLABEL
}

// Extent returns the offset and size of p in bytes.
func (t *Table) Extent(p Partition) (off, size int64) {
	ss := int64(t.SectorSize)
	return int64(p.FirstLBA) * ss, int64(p.LastLBA-p.FirstLBA+1) * ss
}

// Section returns partition p of dev, the disk t was read from.
func (t *Table) Section(dev Device, p Partition) (Device, error) {
	off, size := t.Extent(p)
	return Section(dev, off, size)
}

// ReadGPT reads the GUID Partition Table of a disk of size bytes.
// sectorSize is its logical sector size, 512 or 4096, or 0 to find out
// which the table was written for, as for a disk image.
//
// The bytes are untrusted and checked strictly. When one copy is damaged
// and the other whole, ReadGPT returns the whole one and sets PrimaryErr or
// BackupErr; when both are damaged it fails with an error wrapping
// ErrCorrupt, and on a disk without a GPT with one wrapping ErrNoGPT.
func ReadGPT(r io.ReaderAt, size int64, sectorSize int) (*Table, error) {
	if err := readPMBR(r); err != nil {
		return nil, err
	}
	sizes := []int{sectorSize}
	switch sectorSize {
	case 0:
		sizes = []int{512, 4096}
	case 512, 4096:
	default:
		return nil, fmt.Errorf("read GPT: sector size %d, want 512 or 4096", sectorSize)
	}
	var err error
	for _, ss := range sizes {
		var t *Table
		t, err = readGPT(r, size, ss)
		if !errors.Is(err, ErrNoGPT) {
			return t, err
		}
	}
	return nil, err
}

// readPMBR checks for a protective MBR: the boot signature and a partition
// of type 0xEE (the only one, or one of a hybrid MBR's).
func readPMBR(r io.ReaderAt) error {
	var mbr [512]byte
	if _, err := r.ReadAt(mbr[:], 0); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("read protective MBR: disk too small: %w", ErrNoGPT)
		}
		return fmt.Errorf("read protective MBR: %w", err)
	}
	if mbr[510] != mbrSignatureLo || mbr[511] != mbrSignatureHi {
		return fmt.Errorf("no MBR boot signature: %w", ErrNoGPT)
	}
	for i := range 4 {
		if mbr[mbrPartitions+16*i+4] == mbrTypeGPT {
			return nil
		}
	}
	return fmt.Errorf("MBR has no protective (0xEE) partition: %w", ErrNoGPT)
}

// header is a parsed GPT header.
type header struct {
	myLBA, altLBA         uint64
	firstUsable, lastUsab uint64
	disk                  GUID
	entriesLBA            uint64
	numEntries, entrySize uint32
	entriesCRC            uint32
}

// entrySectors returns the number of sectors the header's entry array
// takes.
func (h *header) entrySectors(ss int) uint64 {
	return (uint64(h.numEntries)*uint64(h.entrySize) + uint64(ss) - 1) / uint64(ss)
}

// copyErr wraps ErrCorrupt with what is wrong with one copy.
func copyErr(which string, format string, args ...any) error {
	return fmt.Errorf("%s GPT: %s: %w", which, fmt.Sprintf(format, args...), ErrCorrupt)
}

// readGPT reads both copies of the table with sector size ss.
func readGPT(r io.ReaderAt, size int64, ss int) (*Table, error) {
	if size < 0 {
		size = 0
	}
	sectors := uint64(size) / uint64(ss)
	if sectors < 3 {
		return nil, fmt.Errorf("%d-byte disk has no room for a GPT of %d-byte sectors: %w", size, ss, ErrNoGPT)
	}
	last := sectors - 1
	pt, perr := readCopy(r, "primary", ss, sectors, 1)
	backupLBA := last
	if perr == nil {
		backupLBA = pt.altLBA
	}
	bt, berr := readCopy(r, "backup", ss, sectors, backupLBA)
	if errors.Is(perr, ErrNoGPT) && errors.Is(berr, ErrNoGPT) {
		return nil, fmt.Errorf("no GPT header at LBA 1 or %d of %d-byte sectors: %w", backupLBA, ss, ErrNoGPT)
	}
	switch {
	case perr == nil && berr == nil:
		if err := sameTable(pt, bt); err != nil {
			berr = err
		}
		return pt.table(ss, nil, berr), nil
	case perr == nil:
		return pt.table(ss, nil, corrupt(berr)), nil
	case berr == nil:
		return bt.table(ss, corrupt(perr), nil), nil
	}
	return nil, errors.Join(corrupt(perr), corrupt(berr))
}

// corrupt turns a missing signature into damage: the other copy exists.
func corrupt(err error) error {
	if errors.Is(err, ErrNoGPT) && !errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	return err
}

// gptCopy is one parsed copy of the table.
type gptCopy struct {
	header
	parts []Partition
}

func (c *gptCopy) table(ss int, perr, berr error) *Table {
	return &Table{
		SectorSize:     ss,
		DiskGUID:       c.disk,
		FirstUsableLBA: c.firstUsable,
		LastUsableLBA:  c.lastUsab,
		NumEntries:     c.numEntries,
		EntrySize:      c.entrySize,
		Partitions:     c.parts,
		PrimaryErr:     perr,
		BackupErr:      berr,
	}
}

// sameTable checks that the backup describes the same table as the
// primary.
func sameTable(p, b *gptCopy) error {
	switch {
	case p.disk != b.disk:
		return copyErr("backup", "disk GUID %s, primary has %s", b.disk, p.disk)
	case p.firstUsable != b.firstUsable || p.lastUsab != b.lastUsab:
		return copyErr("backup", "usable LBAs %d-%d, primary has %d-%d", b.firstUsable, b.lastUsab, p.firstUsable, p.lastUsab)
	case p.numEntries != b.numEntries || p.entrySize != b.entrySize || p.entriesCRC != b.entriesCRC:
		return copyErr("backup", "entries differ from the primary's")
	}
	return nil
}

// readCopy reads and checks the header at lba and its entries.
func readCopy(r io.ReaderAt, which string, ss int, sectors, lba uint64) (*gptCopy, error) {
	buf := make([]byte, ss)
	if _, err := r.ReadAt(buf, int64(lba)*int64(ss)); err != nil {
		return nil, fmt.Errorf("read %s GPT header at LBA %d: %w", which, lba, err)
	}
	if string(buf[:8]) != gptSignature {
		return nil, fmt.Errorf("%s GPT: no signature at LBA %d: %w", which, lba, ErrNoGPT)
	}
	h, err := parseHeader(buf, which, ss, sectors, lba)
	if err != nil {
		return nil, err
	}
	n := int64(h.numEntries) * int64(h.entrySize)
	entries := make([]byte, n)
	if _, err := r.ReadAt(entries, int64(h.entriesLBA)*int64(ss)); err != nil {
		return nil, fmt.Errorf("read %s GPT entries at LBA %d: %w", which, h.entriesLBA, err)
	}
	if crc := crc32.ChecksumIEEE(entries); crc != h.entriesCRC {
		return nil, copyErr(which, "entry array CRC32 %#08x, header says %#08x", crc, h.entriesCRC)
	}
	parts, err := parseEntries(entries, which, h)
	if err != nil {
		return nil, err
	}
	return &gptCopy{header: *h, parts: parts}, nil
}

// parseHeader checks a header sector read from lba.
func parseHeader(b []byte, which string, ss int, sectors, lba uint64) (*header, error) {
	le := binary.LittleEndian
	if rev := le.Uint32(b[8:]); rev != gptRevision {
		return nil, copyErr(which, "revision %#08x, want %#08x", rev, gptRevision)
	}
	hsize := le.Uint32(b[12:])
	if hsize < gptHeaderSize || hsize > uint32(ss) {
		return nil, copyErr(which, "header size %d, want %d to %d", hsize, gptHeaderSize, ss)
	}
	want := le.Uint32(b[16:])
	hb := bytes.Clone(b[:hsize])
	clear(hb[16:20])
	if crc := crc32.ChecksumIEEE(hb); crc != want {
		return nil, copyErr(which, "header CRC32 %#08x, header says %#08x", crc, want)
	}
	h := &header{
		myLBA:       le.Uint64(b[24:]),
		altLBA:      le.Uint64(b[32:]),
		firstUsable: le.Uint64(b[40:]),
		lastUsab:    le.Uint64(b[48:]),
		disk:        decodeGUID(b[56:72]),
		entriesLBA:  le.Uint64(b[72:]),
		numEntries:  le.Uint32(b[80:]),
		entrySize:   le.Uint32(b[84:]),
		entriesCRC:  le.Uint32(b[88:]),
	}
	last := sectors - 1
	primary := lba == 1
	switch {
	case h.myLBA != lba:
		return nil, copyErr(which, "header at LBA %d says it is at LBA %d", lba, h.myLBA)
	case primary && (h.altLBA <= 1 || h.altLBA > last):
		return nil, copyErr(which, "alternate LBA %d outside the %d-sector disk", h.altLBA, sectors)
	case !primary && h.altLBA != 1:
		return nil, copyErr(which, "alternate LBA %d, want 1", h.altLBA)
	case h.entrySize < gptEntrySize || h.entrySize > maxEntrySize || h.entrySize&(h.entrySize-1) != 0:
		return nil, copyErr(which, "entry size %d, want 128 times a power of two", h.entrySize)
	case h.numEntries == 0 || uint64(h.numEntries)*uint64(h.entrySize) > maxEntryBytes:
		return nil, copyErr(which, "%d entries of %d bytes", h.numEntries, h.entrySize)
	case h.firstUsable > h.lastUsab || h.lastUsab >= last:
		return nil, copyErr(which, "usable LBAs %d-%d on a %d-sector disk", h.firstUsable, h.lastUsab, sectors)
	}
	es := h.entrySectors(ss)
	if primary {
		// Header, entries, usable area, in that order, before the backup.
		if h.entriesLBA < 2 || h.entriesLBA > h.firstUsable || es > h.firstUsable-h.entriesLBA {
			return nil, copyErr(which, "entries at LBA %d (%d sectors) not between the header and the first usable LBA %d", h.entriesLBA, es, h.firstUsable)
		}
		if h.lastUsab >= h.altLBA {
			return nil, copyErr(which, "last usable LBA %d not before the backup header at %d", h.lastUsab, h.altLBA)
		}
	} else if h.entriesLBA <= h.lastUsab || h.entriesLBA >= lba || es > lba-h.entriesLBA {
		return nil, copyErr(which, "entries at LBA %d (%d sectors) not between the last usable LBA %d and the header at %d", h.entriesLBA, es, h.lastUsab, lba)
	}
	return h, nil
}

// parseEntries decodes and checks the used entries of an array.
func parseEntries(b []byte, which string, h *header) ([]Partition, error) {
	le := binary.LittleEndian
	var parts []Partition
	seen := make(map[GUID]int)
	for i := range int(h.numEntries) {
		e := b[i*int(h.entrySize):][:gptEntrySize]
		typ := decodeGUID(e[0:16])
		if typ.IsZero() {
			continue
		}
		p := Partition{
			Number:     i + 1,
			Type:       typ,
			UUID:       decodeGUID(e[16:32]),
			FirstLBA:   le.Uint64(e[32:]),
			LastLBA:    le.Uint64(e[40:]),
			Attributes: le.Uint64(e[48:]),
			Name:       decodeName(e[56:128]),
		}
		if p.FirstLBA > p.LastLBA || p.FirstLBA < h.firstUsable || p.LastLBA > h.lastUsab {
			return nil, copyErr(which, "partition %d at LBAs %d-%d, outside the usable %d-%d", p.Number, p.FirstLBA, p.LastLBA, h.firstUsable, h.lastUsab)
		}
		if n, ok := seen[p.UUID]; ok {
			return nil, copyErr(which, "partitions %d and %d have the same GUID %s", n, p.Number, p.UUID)
		}
		seen[p.UUID] = p.Number
		parts = append(parts, p)
	}
	if err := checkOverlap(parts); err != nil {
		return nil, copyErr(which, "%v", err)
	}
	return parts, nil
}

// checkOverlap returns an error naming two partitions that overlap.
func checkOverlap(parts []Partition) error {
	byStart := slices.Clone(parts)
	slices.SortFunc(byStart, func(a, b Partition) int { return cmp.Compare(a.FirstLBA, b.FirstLBA) })
	for i := 1; i < len(byStart); i++ {
		if a, b := byStart[i-1], byStart[i]; b.FirstLBA <= a.LastLBA {
			return fmt.Errorf("partitions %d (LBAs %d-%d) and %d (LBAs %d-%d) overlap", a.Number, a.FirstLBA, a.LastLBA, b.Number, b.FirstLBA, b.LastLBA)
		}
	}
	return nil
}

// decodeName decodes a UTF-16LE name up to its first NUL.
func decodeName(b []byte) string {
	units := make([]uint16, 0, gptNameUnits)
	for i := 0; i+1 < len(b); i += 2 {
		u := binary.LittleEndian.Uint16(b[i:])
		if u == 0 {
			break
		}
		units = append(units, u)
	}
	return string(utf16.Decode(units))
}

// encodeName encodes name as UTF-16LE into b.
func encodeName(b []byte, name string) error {
	units := utf16.Encode([]rune(name))
	if len(units) > len(b)/2 {
		return fmt.Errorf("name %q is %d UTF-16 code units, the most is %d", name, len(units), len(b)/2)
	}
	for i, u := range units {
		if u == 0 {
			return fmt.Errorf("name %q contains NUL", name)
		}
		binary.LittleEndian.PutUint16(b[2*i:], u)
	}
	return nil
}

// WriteGPT writes t to a disk of size bytes: the protective MBR (bytes
// 440-511 of sector 0; boot code is left alone), the primary header at LBA
// 1 and its entries from LBA 2, the backup entries before the last LBA and
// the backup header at the last LBA. It refuses a table that is not valid
// (wrapping ErrInvalidTable): partitions outside the usable area or
// overlapping, duplicate numbers or GUIDs, names too long. It does not
// flush.
func WriteGPT(w io.WriterAt, size int64, t *Table) error {
	ss := t.SectorSize
	if ss != 512 && ss != 4096 {
		return fmt.Errorf("write GPT: sector size %d, want 512 or 4096: %w", ss, ErrInvalidTable)
	}
	h := header{
		disk:        t.DiskGUID,
		numEntries:  cmp.Or(t.NumEntries, gptNumEntries),
		entrySize:   cmp.Or(t.EntrySize, gptEntrySize),
		firstUsable: t.FirstUsableLBA,
		lastUsab:    t.LastUsableLBA,
	}
	if h.entrySize < gptEntrySize || h.entrySize > maxEntrySize || h.entrySize&(h.entrySize-1) != 0 ||
		uint64(h.numEntries)*uint64(h.entrySize) > maxEntryBytes {
		return fmt.Errorf("write GPT: %d entries of %d bytes: %w", h.numEntries, h.entrySize, ErrInvalidTable)
	}
	sectors := uint64(max(size, 0)) / uint64(ss)
	es := h.entrySectors(ss)
	if sectors < 2*es+4 {
		return fmt.Errorf("write GPT: %d-byte disk too small: %w", size, ErrInvalidTable)
	}
	last := sectors - 1
	minFirst, maxLast := 2+es, last-1-es
	h.firstUsable = cmp.Or(h.firstUsable, minFirst)
	h.lastUsab = cmp.Or(h.lastUsab, maxLast)
	if h.firstUsable < minFirst || h.lastUsab > maxLast || h.firstUsable > h.lastUsab {
		return fmt.Errorf("write GPT: usable LBAs %d-%d, the entry arrays allow %d-%d: %w", h.firstUsable, h.lastUsab, minFirst, maxLast, ErrInvalidTable)
	}
	entries, err := encodeEntries(t.Partitions, &h)
	if err != nil {
		return fmt.Errorf("write GPT: %w: %w", err, ErrInvalidTable)
	}
	h.entriesCRC = crc32.ChecksumIEEE(entries)

	backup, primary := h, h
	backup.myLBA, backup.altLBA, backup.entriesLBA = last, 1, last-es
	primary.myLBA, primary.altLBA, primary.entriesLBA = 1, last, 2
	pad := make([]byte, es*uint64(ss))
	copy(pad, entries)
	for _, c := range []struct {
		what string
		lba  uint64
		b    []byte
	}{
		{"backup entries", backup.entriesLBA, pad},
		{"backup header", last, backup.encode(ss)},
		{"primary entries", 2, pad},
		{"primary header", 1, primary.encode(ss)},
		{"protective MBR", 0, nil},
	} {
		off := int64(c.lba) * int64(ss)
		if c.b == nil {
			c.b, off = pmbr(sectors), 440
		}
		if _, err := w.WriteAt(c.b, off); err != nil {
			return fmt.Errorf("write GPT %s at LBA %d: %w", c.what, c.lba, err)
		}
	}
	return nil
}

// encodeEntries checks the partitions against h and returns the entry
// array.
func encodeEntries(parts []Partition, h *header) ([]byte, error) {
	b := make([]byte, int(h.numEntries)*int(h.entrySize))
	le := binary.LittleEndian
	uuids := make(map[GUID]int)
	used := make(map[int]bool)
	for _, p := range parts {
		switch {
		case p.Number < 1 || p.Number > int(h.numEntries):
			return nil, fmt.Errorf("partition number %d, the table has %d entries", p.Number, h.numEntries)
		case used[p.Number]:
			return nil, fmt.Errorf("two partitions numbered %d", p.Number)
		case p.Type.IsZero():
			return nil, fmt.Errorf("partition %d has no type", p.Number)
		case p.UUID.IsZero():
			return nil, fmt.Errorf("partition %d has no GUID", p.Number)
		case p.FirstLBA > p.LastLBA || p.FirstLBA < h.firstUsable || p.LastLBA > h.lastUsab:
			return nil, fmt.Errorf("partition %d at LBAs %d-%d, outside the usable %d-%d", p.Number, p.FirstLBA, p.LastLBA, h.firstUsable, h.lastUsab)
		}
		if n, ok := uuids[p.UUID]; ok {
			return nil, fmt.Errorf("partitions %d and %d have the same GUID %s", n, p.Number, p.UUID)
		}
		used[p.Number], uuids[p.UUID] = true, p.Number
		e := b[(p.Number-1)*int(h.entrySize):]
		p.Type.encode(e[0:16])
		p.UUID.encode(e[16:32])
		le.PutUint64(e[32:], p.FirstLBA)
		le.PutUint64(e[40:], p.LastLBA)
		le.PutUint64(e[48:], p.Attributes)
		if err := encodeName(e[56:128], p.Name); err != nil {
			return nil, fmt.Errorf("partition %d: %w", p.Number, err)
		}
	}
	if err := checkOverlap(parts); err != nil {
		return nil, err
	}
	return b, nil
}

// encode returns the header's sector.
func (h *header) encode(ss int) []byte {
	b := make([]byte, ss)
	le := binary.LittleEndian
	copy(b, gptSignature)
	le.PutUint32(b[8:], gptRevision)
	le.PutUint32(b[12:], gptHeaderSize)
	le.PutUint64(b[24:], h.myLBA)
	le.PutUint64(b[32:], h.altLBA)
	le.PutUint64(b[40:], h.firstUsable)
	le.PutUint64(b[48:], h.lastUsab)
	h.disk.encode(b[56:72])
	le.PutUint64(b[72:], h.entriesLBA)
	le.PutUint32(b[80:], h.numEntries)
	le.PutUint32(b[84:], h.entrySize)
	le.PutUint32(b[88:], h.entriesCRC)
	le.PutUint32(b[16:], crc32.ChecksumIEEE(b[:gptHeaderSize]))
	return b
}

// pmbr returns bytes 440-511 of a protective MBR for a disk of sectors
// logical sectors: no disk signature, one partition of type 0xEE from LBA 1
// to the end of the disk (or 2^32-1), and the boot signature.
func pmbr(sectors uint64) []byte {
	b := make([]byte, 72)
	e := b[mbrPartitions-440:]
	e[1], e[2], e[3] = 0x00, 0x02, 0x00 // CHS of LBA 1
	e[4] = mbrTypeGPT
	e[5], e[6], e[7] = 0xff, 0xff, 0xff // CHS beyond reach
	binary.LittleEndian.PutUint32(e[8:], 1)
	binary.LittleEndian.PutUint32(e[12:], uint32(min(sectors-1, 0xffffffff)))
	b[70], b[71] = mbrSignatureLo, mbrSignatureHi
	return b
}
