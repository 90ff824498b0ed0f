package blockdev

import (
	"errors"
	"strings"
	"testing"
)

func TestLayoutPlan(t *testing.T) {
	const mib = 1 << 20
	fs := TypeLinuxFilesystem
	for _, tc := range []struct {
		name  string
		size  int64
		l     Layout
		want  [][2]int64 // offset, size in bytes
		noFit bool
	}{
		{
			name: "fixed",
			size: 16 * mib,
			l:    Layout{Partitions: []PartitionSpec{{Type: fs, Size: 4 * mib}, {Type: fs, Size: 2 * mib}}},
			want: [][2]int64{{1 * mib, 4 * mib}, {5 * mib, 2 * mib}},
		},
		{
			name: "rest last",
			size: 16 * mib,
			l:    Layout{Partitions: []PartitionSpec{{Type: fs, Size: 4 * mib}, {Type: fs, Size: Rest}}},
			// The usable area ends 33 sectors before the end: 14 MiB, not 15.
			want: [][2]int64{{1 * mib, 4 * mib}, {5 * mib, 10 * mib}},
		},
		{
			name: "rest first",
			size: 16 * mib,
			l:    Layout{Partitions: []PartitionSpec{{Type: fs, Size: Rest}, {Type: fs, Size: 4 * mib}}},
			want: [][2]int64{{1 * mib, 10 * mib}, {11 * mib, 4 * mib}},
		},
		{
			name: "unaligned sizes",
			size: 16 * mib,
			l:    Layout{Partitions: []PartitionSpec{{Type: fs, Size: 512}, {Type: fs, Size: mib + 512}, {Type: fs, Size: Rest}}},
			want: [][2]int64{{1 * mib, 512}, {2 * mib, mib + 512}, {4 * mib, 11 * mib}},
		},
		{
			name: "4k alignment",
			size: 1 * mib,
			l:    Layout{Align: 4096, Partitions: []PartitionSpec{{Type: fs, Size: 1024}, {Type: fs, Size: 4096}}},
			want: [][2]int64{{20480, 1024}, {24576, 4096}},
		},
		{
			name: "4096-byte sectors",
			size: 16 * mib,
			l:    Layout{SectorSize: 4096, Partitions: []PartitionSpec{{Type: fs, Size: 4 * mib}, {Type: fs, Size: Rest}}},
			want: [][2]int64{{1 * mib, 4 * mib}, {5 * mib, 10 * mib}},
		},
		{
			name: "exactly full",
			size: 16 * mib,
			// From 1 MiB to the backup entries, 33 sectors before the end.
			l:    Layout{Partitions: []PartitionSpec{{Type: fs, Size: 15*mib - 33*512}}},
			want: [][2]int64{{1 * mib, 15*mib - 33*512}},
		},
		{name: "full and a sector", size: 16 * mib, l: Layout{Partitions: []PartitionSpec{{Type: fs, Size: 15*mib - 32*512}}}, noFit: true},
		{name: "too big", size: 16 * mib, l: Layout{Partitions: []PartitionSpec{{Type: fs, Size: 15 * mib}}}, noFit: true},
		{name: "too big after alignment", size: 16 * mib, l: Layout{Partitions: []PartitionSpec{{Type: fs, Size: 7*mib + 512}, {Type: fs, Size: 7 * mib}}}, noFit: true},
		{name: "no room for rest", size: 16 * mib, l: Layout{Partitions: []PartitionSpec{{Type: fs, Size: 14 * mib}, {Type: fs, Size: Rest}}}, noFit: true},
		{name: "tiny disk", size: 32 * 512, l: Layout{}, noFit: true},
	} {
		tab, err := tc.l.Plan(tc.size)
		if tc.noFit {
			if !errors.Is(err, ErrNoFit) {
				t.Errorf("Plan(%s) = %v, want ErrNoFit", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Plan(%s) = %v", tc.name, err)
			continue
		}
		var got [][2]int64
		for _, p := range tab.Partitions {
			off, size := tab.Extent(p)
			got = append(got, [2]int64{off, size})
		}
		if !equal(got, tc.want) {
			t.Errorf("Plan(%s) = %v, want %v", tc.name, got, tc.want)
		}
		// What Plan returns, WriteGPT writes.
		if err := WriteGPT(NewMem(tc.size), tc.size, tab); err != nil {
			t.Errorf("WriteGPT(Plan(%s)) = %v", tc.name, err)
		}
	}
}

func equal(a, b [][2]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLayoutValidate(t *testing.T) {
	fs := TypeLinuxFilesystem
	u := g("11111111-2222-4333-8444-000000000001")
	for _, tc := range []struct {
		name string
		l    Layout
		want string
	}{
		{"sector size", Layout{SectorSize: 2048}, "sector size"},
		{"alignment", Layout{Align: 1000}, "alignment"},
		{"no type", Layout{Partitions: []PartitionSpec{{Size: 512}}}, "no type"},
		{"zero size", Layout{Partitions: []PartitionSpec{{Type: fs}}}, "size 0"},
		{"unaligned size", Layout{Partitions: []PartitionSpec{{Type: fs, Size: 1000}}}, "size 1000"},
		{"4k sector size", Layout{SectorSize: 4096, Partitions: []PartitionSpec{{Type: fs, Size: 512}}}, "size 512"},
		{"two rests", Layout{Partitions: []PartitionSpec{{Type: fs, Size: Rest}, {Type: fs, Size: Rest}}}, "Rest"},
		{"long name", Layout{Partitions: []PartitionSpec{{Type: fs, Size: 512, Name: strings.Repeat("n", 37)}}}, "UTF-16"},
		{"same uuid", Layout{Partitions: []PartitionSpec{{Type: fs, Size: 512, UUID: u}, {Type: fs, Size: 512, UUID: u}}}, "GUID"},
		{"too many", Layout{Partitions: make([]PartitionSpec, 129)}, "partitions"},
	} {
		err := tc.l.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%s) = %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestLayoutRandomGUIDs(t *testing.T) {
	l := Layout{Partitions: []PartitionSpec{{Type: TypeLinuxFilesystem, Size: Rest}}}
	a, err := l.Plan(8 << 20)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := l.Plan(8 << 20)
	if a.DiskGUID.IsZero() || a.Partitions[0].UUID.IsZero() || a.DiskGUID == b.DiskGUID || a.Partitions[0].UUID == b.Partitions[0].UUID {
		t.Errorf("Plan twice: disk GUIDs %s, %s, PARTUUIDs %s, %s; want random ones", a.DiskGUID, b.DiskGUID, a.Partitions[0].UUID, b.Partitions[0].UUID)
	}
}

func TestCreateRefusesNonBlankDisk(t *testing.T) {
	l := Layout{Partitions: []PartitionSpec{{Type: TypeLinuxFilesystem, Size: Rest}}}
	_, gptDisk := testTable(t, 512)
	damaged := NewMemBytes(gptDisk)
	damaged.WriteAt(make([]byte, 512), 512) // primary header gone
	mbr := NewMem(8 << 20)
	mbr.WriteAt([]byte{0x55, 0xaa}, 510)
	mbr.WriteAt([]byte{0x0c}, 446+4)
	for name, m := range map[string]*Mem{"gpt": NewMemBytes(gptDisk), "damaged gpt": damaged, "mbr": mbr} {
		before := m.Bytes()
		if _, err := l.Create(m); !errors.Is(err, ErrNotBlank) {
			t.Errorf("Create(%s disk) = %v, want ErrNotBlank", name, err)
		}
		if string(m.Bytes()) != string(before) {
			t.Errorf("Create(%s disk) changed the disk", name)
		}
	}
	m := NewMem(8 << 20)
	if _, err := l.Create(m); err != nil {
		t.Fatalf("Create(blank) = %v", err)
	}
	if ops := m.Ops(); len(ops) == 0 || ops[len(ops)-1].Kind != OpFlush {
		t.Errorf("Create(blank) ops = %v, want it to end with a flush", ops)
	}
}
