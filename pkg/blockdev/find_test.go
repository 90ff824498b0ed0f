package blockdev

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// fakeSys builds a fake root with /sys/block and /dev.
type fakeSys struct {
	t    *testing.T
	root string
}

func (f fakeSys) write(name, content string) {
	f.t.Helper()
	p := filepath.Join(f.root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f fakeSys) link(name, target string) {
	f.t.Helper()
	p := filepath.Join(f.root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		f.t.Fatal(err)
	}
}

// disk adds a disk whose content is img (nil: no device node) and whose
// kernel partitions are tab's, or those given by sysParts if not nil.
func (f fakeSys) disk(name string, img []byte, tab *Table, parts []Partition) {
	f.t.Helper()
	dir := "sys/block/" + name
	f.write(dir+"/size", strconv.Itoa(len(img)/512)+"\n")
	if img == nil {
		f.write(dir+"/size", "16384\n")
	}
	f.write(dir+"/queue/logical_block_size", "512\n")
	f.write(dir+"/uevent", "MAJOR=254\nMINOR=0\nDEVNAME="+name+"\nDEVTYPE=disk\n")
	if img != nil {
		f.write("dev/"+name, string(img))
	}
	if parts == nil && tab != nil {
		parts = tab.Partitions
	}
	for _, p := range parts {
		pname := name + strconv.Itoa(p.Number)
		pdir := dir + "/" + pname
		f.write(pdir+"/partition", strconv.Itoa(p.Number)+"\n")
		f.write(pdir+"/start", strconv.FormatUint(p.FirstLBA, 10)+"\n")
		f.write(pdir+"/size", strconv.FormatUint(p.LastLBA-p.FirstLBA+1, 10)+"\n")
		f.write(pdir+"/uevent", "DEVNAME="+pname+"\nPARTN="+strconv.Itoa(p.Number)+"\nPARTNAME="+p.Name+"\n")
		f.link("sys/class/block/"+pname, "../../block/"+name+"/"+pname)
	}
}

func TestFindPartitions(t *testing.T) {
	tab, img := testTable(t, 512)
	fake := fakeSys{t, t.TempDir()}
	fake.disk("vda", img, tab, nil)
	fake.disk("loop0", []byte{}, nil, nil)          // no medium
	fake.disk("sr0", make([]byte, 1<<20), nil, nil) // no GPT
	root := fake.root

	for _, tc := range []struct {
		m    Match
		want int // partition number
	}{
		{Match{Label: "root"}, 2},
		{Match{UUID: g("11111111-2222-4333-8444-000000000003")}, 3},
		{Match{Type: TypeEFISystem}, 1},
		{Match{Label: "root", Type: TypeLinuxRootX86_64}, 2},
	} {
		got, err := findPartition(root, tc.m)
		if err != nil {
			t.Errorf("FindPartition(%s) = %v", tc.m, err)
			continue
		}
		p := tab.Partitions[tc.want-1]
		off, size := tab.Extent(p)
		want := SysPartition{
			Partition: p,
			Path:      filepath.Join(root, "dev/vda"+strconv.Itoa(tc.want)),
			Disk:      filepath.Join(root, "dev/vda"),
			Offset:    off,
			Size:      size,
		}
		if got != want {
			t.Errorf("FindPartition(%s) = %+v, want %+v", tc.m, got, want)
		}
	}
	for _, m := range []Match{{Label: "nope"}, {Label: "root", Type: TypeEFISystem}} {
		if _, err := findPartition(root, m); !errors.Is(err, ErrNotFound) {
			t.Errorf("FindPartition(%s) = %v, want ErrNotFound", m, err)
		}
	}
	// The same image on a second disk makes every search ambiguous.
	fake.disk("sda", img, tab, nil)
	if _, err := findPartition(root, Match{Label: "root"}); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("FindPartition(label on two disks) = %v, want ErrAmbiguous", err)
	}
	all, err := findPartitions(root, Match{})
	if err != nil || len(all) != 6 {
		t.Errorf("FindPartitions(any) = %d partitions, %v; want 6", len(all), err)
	}
}

// When the kernel's partitions are not where the GPT says, the partition
// is found but has no device node.
func TestFindPartitionStaleKernelTable(t *testing.T) {
	tab, img := testTable(t, 512)
	fake := fakeSys{t, t.TempDir()}
	stale := append([]Partition(nil), tab.Partitions...)
	stale[1].FirstLBA++
	fake.disk("vda", img, tab, stale)
	got, err := findPartition(fake.root, Match{Label: "root"})
	if err != nil {
		t.Fatalf("FindPartition = %v", err)
	}
	if got.Path != "" || got.Disk != filepath.Join(fake.root, "dev/vda") {
		t.Errorf("FindPartition(stale) = path %q, disk %q; want no path", got.Path, got.Disk)
	}
	if got, _ := findPartition(fake.root, Match{Label: "boot"}); got.Path == "" {
		t.Errorf("FindPartition(boot) has no path; only the stale partition should lose it")
	}
}

// A disk that cannot be read is searched through udev's links.
func TestFindPartitionUdevFallback(t *testing.T) {
	tab, _ := testTable(t, 512)
	fake := fakeSys{t, t.TempDir()}
	fake.disk("mmcblk0", nil, tab, nil) // no device node: unreadable
	for i, p := range tab.Partitions {
		node := "../../mmcblk0" + strconv.Itoa(i+1)
		fake.write("dev/mmcblk0"+strconv.Itoa(i+1), "")
		fake.link("dev/disk/by-partuuid/"+p.UUID.String(), node)
		fake.link("dev/disk/by-partlabel/"+udevEncode(p.Name), node)
	}
	got, err := findPartition(fake.root, Match{UUID: tab.Partitions[1].UUID})
	if err != nil {
		t.Fatalf("FindPartition(by UUID via udev) = %v", err)
	}
	off, size := tab.Extent(tab.Partitions[1])
	want := SysPartition{
		Partition: Partition{Number: 2, UUID: tab.Partitions[1].UUID},
		Path:      filepath.Join(fake.root, "dev/mmcblk02"),
		Disk:      filepath.Join(fake.root, "dev/mmcblk0"),
		Offset:    off,
		Size:      size,
	}
	if got != want {
		t.Errorf("FindPartition(by UUID via udev) = %+v, want %+v", got, want)
	}
	if got, err := findPartition(fake.root, Match{Label: "data"}); err != nil || got.Number != 3 {
		t.Errorf("FindPartition(by label via udev) = %+v, %v", got, err)
	}
	if _, err := findPartition(fake.root, Match{Type: TypeEFISystem}); !errors.Is(err, ErrNotFound) {
		t.Errorf("FindPartition(by type, disk unreadable) = %v, want ErrNotFound", err)
	}
}

func TestUdevEncode(t *testing.T) {
	for in, want := range map[string]string{
		"rootfs-a":   "rootfs-a",
		"EFI System": `EFI\x20System`,
		"a/b":        `a\x2fb`,
		"données":    "données",
		"x\xffy":     `x\xffy`,
	} {
		if got := udevEncode(in); got != want {
			t.Errorf("udevEncode(%q) = %q, want %q", in, got, want)
		}
	}
}
