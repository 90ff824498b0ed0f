package blockdev

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

// testTable returns a valid three-partition table for a disk of 8 MiB of
// ss-byte sectors.
func testTable(t *testing.T, ss int) (*Table, []byte) {
	t.Helper()
	l := Layout{
		SectorSize: ss,
		DiskGUID:   g("11111111-2222-4333-8444-555555555555"),
		Partitions: []PartitionSpec{
			{Name: "boot", Type: TypeEFISystem, Size: 1 << 20, UUID: g("11111111-2222-4333-8444-000000000001"), Attributes: AttrRequired},
			{Name: "root", Type: TypeLinuxRootX86_64, Size: 2 << 20, UUID: g("11111111-2222-4333-8444-000000000002")},
			{Name: "data", Type: TypeLinuxFilesystem, Size: Rest, UUID: g("11111111-2222-4333-8444-000000000003")},
		},
	}
	m := NewMem(8 << 20)
	tab, err := l.Create(m)
	if err != nil {
		t.Fatalf("Create = %v", err)
	}
	return tab, m.Bytes()
}

// edit changes one copy of the table in img (primary or backup) with f,
// which gets the header sector and the entry array, and then recomputes
// the CRCs unless broken is set.
func edit(t *testing.T, img []byte, ss int, backup, broken bool, f func(h, entries []byte)) {
	t.Helper()
	le := binary.LittleEndian
	lba := int64(1)
	if backup {
		lba = int64(len(img)/ss) - 1
	}
	h := img[lba*int64(ss):][:ss]
	n := int(le.Uint32(h[80:])) * int(le.Uint32(h[84:]))
	if n > 1<<20 {
		n = 0
	}
	elba := int64(le.Uint64(h[72:]))
	var entries []byte
	if elba > 0 && elba*int64(ss)+int64(n) <= int64(len(img)) {
		entries = img[elba*int64(ss):][:n]
	}
	f(h, entries)
	if broken {
		return
	}
	if entries != nil {
		le.PutUint32(h[88:], crc32.ChecksumIEEE(entries))
	}
	hs := le.Uint32(h[12:])
	if hs < 92 || hs > uint32(ss) {
		return
	}
	clear(h[16:20])
	le.PutUint32(h[16:], crc32.ChecksumIEEE(h[:hs]))
}

func TestReadGPTRoundTrip(t *testing.T) {
	for _, ss := range []int{512, 4096} {
		for _, probe := range []int{0, ss} {
			want, img := testTable(t, ss)
			got, err := ReadGPT(bytes.NewReader(img), int64(len(img)), probe)
			if err != nil {
				t.Fatalf("ReadGPT(%d-byte sectors, probe %d) = %v", ss, probe, err)
			}
			compareTables(t, "round trip", got, want)
		}
	}
}

func TestReadGPTWrongSectorSize(t *testing.T) {
	_, img := testTable(t, 4096)
	_, err := ReadGPT(bytes.NewReader(img), int64(len(img)), 512)
	if !errors.Is(err, ErrNoGPT) {
		t.Errorf("ReadGPT(4096-byte table as 512) = %v, want ErrNoGPT", err)
	}
}

func TestReadGPTNoGPT(t *testing.T) {
	mbrOnly := make([]byte, 1<<20)
	mbrOnly[510], mbrOnly[511] = 0x55, 0xaa
	mbrOnly[446+4] = 0x83 // a Linux MBR partition
	_, withGPT := testTable(t, 512)
	noPMBR := bytes.Clone(withGPT)
	clear(noPMBR[446:512])
	for name, img := range map[string][]byte{
		"blank":    make([]byte, 1<<20),
		"tiny":     make([]byte, 100),
		"mbr only": mbrOnly,
		"no pmbr":  noPMBR,
		"pmbr only": func() []byte {
			b := make([]byte, 1<<20)
			copy(b[440:], pmbr(uint64(len(b)/512)))
			return b
		}(),
	} {
		_, err := ReadGPT(bytes.NewReader(img), int64(len(img)), 0)
		if !errors.Is(err, ErrNoGPT) {
			t.Errorf("ReadGPT(%s) = %v, want ErrNoGPT", name, err)
		}
	}
}

// damage is a way of spoiling one copy of a table. fix says whether the
// CRCs are recomputed afterwards, so that the later checks are reached.
type damage struct {
	name   string
	broken bool // leave the CRCs as they are
	f      func(h, e []byte)
	want   string // in the error
}

var damages = []damage{
	{name: "header byte", broken: true, f: func(h, e []byte) { h[60] ^= 1 }, want: "header CRC32"},
	{name: "entry byte", broken: true, f: func(h, e []byte) { e[200] ^= 1 }, want: "entry array CRC32"},
	{name: "signature", broken: true, f: func(h, e []byte) { h[0] = 'X' }, want: "no signature"},
	{name: "zeroed", broken: true, f: func(h, e []byte) { clear(h) }, want: "no signature"},
	{name: "revision", f: func(h, e []byte) { h[10] = 2 }, want: "revision"},
	{name: "header size small", f: func(h, e []byte) { h[12] = 91 }, want: "header size"},
	{name: "header size large", f: func(h, e []byte) { binary.LittleEndian.PutUint32(h[12:], 8192) }, want: "header size"},
	{name: "my LBA", f: func(h, e []byte) { h[24]++ }, want: "says it is at LBA"},
	{name: "entry size", f: func(h, e []byte) { h[84] = 100 }, want: "entry size"},
	{name: "no entries", f: func(h, e []byte) { clear(h[80:84]) }, want: "entries of"},
	{name: "huge entry array", f: func(h, e []byte) { binary.LittleEndian.PutUint32(h[80:], 1<<30) }, want: "entries of"},
	{name: "usable inverted", f: func(h, e []byte) { binary.LittleEndian.PutUint64(h[40:], binary.LittleEndian.Uint64(h[48:])+1) }, want: "usable LBAs"},
	{name: "last usable beyond disk", f: func(h, e []byte) { binary.LittleEndian.PutUint64(h[48:], 1<<40) }, want: "usable LBAs"},
	{name: "entries in usable area", f: func(h, e []byte) { binary.LittleEndian.PutUint64(h[72:], 2048) }, want: "entries at LBA"},
	{name: "overlap", f: func(h, e []byte) {
		// partition 2 starts inside partition 1.
		first1 := binary.LittleEndian.Uint64(e[32:])
		binary.LittleEndian.PutUint64(e[128+32:], first1+1)
	}, want: "overlap"},
	{name: "outside usable", f: func(h, e []byte) { binary.LittleEndian.PutUint64(e[32:], 1) }, want: "outside the usable"},
	{name: "first after last", f: func(h, e []byte) { binary.LittleEndian.PutUint64(e[40:], binary.LittleEndian.Uint64(e[32:])-1) }, want: "outside the usable"},
	{name: "duplicate uuid", f: func(h, e []byte) { copy(e[128+16:128+32], e[16:32]) }, want: "same GUID"},
}

func TestReadGPTOneCopyDamaged(t *testing.T) {
	for _, ss := range []int{512, 4096} {
		for _, d := range damages {
			for _, backup := range []bool{false, true} {
				want, img := testTable(t, ss)
				edit(t, img, ss, backup, d.broken, d.f)
				got, err := ReadGPT(bytes.NewReader(img), int64(len(img)), ss)
				if err != nil {
					t.Errorf("ReadGPT(%d, %s, backup %v) = %v, want the other copy", ss, d.name, backup, err)
					continue
				}
				damaged, whole := got.PrimaryErr, got.BackupErr
				if backup {
					damaged, whole = whole, damaged
				}
				if whole != nil || !errors.Is(damaged, ErrCorrupt) || !strings.Contains(damaged.Error(), d.want) {
					t.Errorf("ReadGPT(%d, %s, backup %v): damaged copy error %v, other %v; want ErrCorrupt mentioning %q", ss, d.name, backup, damaged, whole, d.want)
				}
				got.PrimaryErr, got.BackupErr = nil, nil
				compareTables(t, d.name, got, want)
			}
		}
	}
}

func TestReadGPTBothCopiesDamaged(t *testing.T) {
	for _, d := range damages {
		_, img := testTable(t, 512)
		edit(t, img, 512, false, d.broken, d.f)
		edit(t, img, 512, true, d.broken, d.f)
		_, err := ReadGPT(bytes.NewReader(img), int64(len(img)), 512)
		want := ErrCorrupt
		if d.name == "signature" || d.name == "zeroed" {
			want = ErrNoGPT
		}
		if !errors.Is(err, want) {
			t.Errorf("ReadGPT(both copies: %s) = %v, want %v", d.name, err, want)
		}
	}
}

func TestReadGPTCopiesDisagree(t *testing.T) {
	want, img := testTable(t, 512)
	edit(t, img, 512, true, false, func(h, e []byte) { h[56] ^= 1 }) // disk GUID
	got, err := ReadGPT(bytes.NewReader(img), int64(len(img)), 512)
	if err != nil {
		t.Fatalf("ReadGPT = %v", err)
	}
	if got.PrimaryErr != nil || !errors.Is(got.BackupErr, ErrCorrupt) {
		t.Errorf("ReadGPT(disk GUIDs differ): primary %v, backup %v; want backup ErrCorrupt", got.PrimaryErr, got.BackupErr)
	}
	got.BackupErr = nil
	compareTables(t, "disagreeing copies", got, want)
}

// A disk grown after partitioning: the backup is no longer at the end.
func TestReadGPTGrownDisk(t *testing.T) {
	want, img := testTable(t, 512)
	img = append(img, make([]byte, 1<<20)...)
	got, err := ReadGPT(bytes.NewReader(img), int64(len(img)), 0)
	if err != nil {
		t.Fatalf("ReadGPT(grown disk) = %v", err)
	}
	compareTables(t, "grown disk", got, want)
}

func TestWriteGPTRefuses(t *testing.T) {
	base, _ := testTable(t, 512)
	for _, tc := range []struct {
		name string
		f    func(t *Table)
	}{
		{"sector size", func(t *Table) { t.SectorSize = 1024 }},
		{"overlap", func(t *Table) { t.Partitions[1].FirstLBA = t.Partitions[0].LastLBA }},
		{"outside usable", func(t *Table) { t.Partitions[2].LastLBA = t.LastUsableLBA + 1 }},
		{"before usable", func(t *Table) { t.Partitions[0].FirstLBA = 33 }},
		{"inverted", func(t *Table) { t.Partitions[0].LastLBA = t.Partitions[0].FirstLBA - 1 }},
		{"same number", func(t *Table) { t.Partitions[1].Number = 1 }},
		{"number zero", func(t *Table) { t.Partitions[1].Number = 0 }},
		{"number beyond entries", func(t *Table) { t.Partitions[1].Number = 129 }},
		{"no type", func(t *Table) { t.Partitions[1].Type = GUID{} }},
		{"no uuid", func(t *Table) { t.Partitions[1].UUID = GUID{} }},
		{"same uuid", func(t *Table) { t.Partitions[1].UUID = t.Partitions[0].UUID }},
		{"long name", func(t *Table) { t.Partitions[1].Name = strings.Repeat("x", 37) }},
		{"NUL in name", func(t *Table) { t.Partitions[1].Name = "a\x00b" }},
		{"usable overlaps entries", func(t *Table) { t.FirstUsableLBA = 33 }},
		{"usable overlaps backup", func(t *Table) { t.LastUsableLBA = 8<<20/512 - 33 }},
		{"entry size", func(t *Table) { t.EntrySize = 192 }},
	} {
		tab := *base
		tab.Partitions = append([]Partition(nil), base.Partitions...)
		tc.f(&tab)
		m := NewMem(8 << 20)
		if err := WriteGPT(m, m.Size(), &tab); !errors.Is(err, ErrInvalidTable) {
			t.Errorf("WriteGPT(%s) = %v, want ErrInvalidTable", tc.name, err)
		}
		if !bytes.Equal(m.Bytes(), make([]byte, 8<<20)) {
			t.Errorf("WriteGPT(%s) wrote to the disk before refusing", tc.name)
		}
	}
}

// Names take up to 36 UTF-16 code units, surrogate pairs counting two.
func TestGPTNames(t *testing.T) {
	for _, name := range []string{"", "a", strings.Repeat("é", 36), strings.Repeat("𝄞", 18), "tab\there"} {
		tab, _ := testTable(t, 512)
		tab.Partitions[0].Name = name
		m := NewMem(8 << 20)
		if err := WriteGPT(m, m.Size(), tab); err != nil {
			t.Errorf("WriteGPT(name %q) = %v", name, err)
			continue
		}
		got, err := ReadGPT(m, m.Size(), 0)
		if err != nil || got.Partitions[0].Name != name {
			t.Errorf("ReadGPT(name %q) = %+v, %v", name, got, err)
		}
	}
	tab, _ := testTable(t, 512)
	tab.Partitions[0].Name = strings.Repeat("𝄞", 18) + "x"
	if err := WriteGPT(NewMem(8<<20), 8<<20, tab); !errors.Is(err, ErrInvalidTable) {
		t.Errorf("WriteGPT(37 code units) = %v, want ErrInvalidTable", err)
	}
}

func TestGUID(t *testing.T) {
	// The EFI System type as GPT stores it (UEFI 2.10, table 5.14).
	disk := []byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}
	if got := decodeGUID(disk); got != TypeEFISystem {
		t.Errorf("decodeGUID(% x) = %s, want %s", disk, got, TypeEFISystem)
	}
	var b [16]byte
	TypeEFISystem.encode(b[:])
	if !bytes.Equal(b[:], disk) {
		t.Errorf("%s.encode() = % x, want % x", TypeEFISystem, b, disk)
	}
	if s := TypeEFISystem.String(); s != "c12a7328-f81f-11d2-ba4b-00a0c93ec93b" {
		t.Errorf("String() = %s", s)
	}
	if g, err := ParseGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"); err != nil || g != TypeEFISystem {
		t.Errorf("ParseGUID(upper case) = %s, %v", g, err)
	}
	for _, bad := range []string{"", "c12a7328f81f11d2ba4b00a0c93ec93b", "c12a7328-f81f-11d2-ba4b-00a0c93ec93", "g12a7328-f81f-11d2-ba4b-00a0c93ec93b", "c12a7328-f81f-11d2-ba4b+00a0c93ec93b"} {
		if _, err := ParseGUID(bad); err == nil {
			t.Errorf("ParseGUID(%q) = nil error", bad)
		}
	}
	a, b2 := NewGUID(), NewGUID()
	if a == b2 || a[6]>>4 != 4 || a[8]>>6 != 2 {
		t.Errorf("NewGUID() = %s, %s: want distinct version-4 GUIDs", a, b2)
	}
}
