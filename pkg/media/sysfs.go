package media

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
)

// Candidate is a block device that may hold a bundle: a partition of a
// removable, USB or MMC disk, or such a disk that has no partitions.
type Candidate struct {
	Name   string // sysfs name: "sda1", "mmcblk1p1", "sdb"
	Disk   string // the whole disk: "sda"
	Device string // device node: "/dev/sda1"
	Bus    string // "usb", "mmc", or "" for another removable disk
	Size   int64  // bytes
}

func (c Candidate) String() string {
	s := c.Name
	if c.Bus != "" {
		s += " (" + c.Bus + ")"
	}
	return s
}

// boardMMC are an eMMC's hardware partitions, never a user's medium.
var boardMMC = regexp.MustCompile(`^mmcblk[0-9]+(boot[0-9]+|rpmb)$`)

// scan lists the candidates under root's /sys/block, disks in name order
// and each disk's partitions in number order. Disks named in exclude, empty
// ones (a card reader with no card) and virtual devices (loop, dm, zram, ...)
// are left out.
func scan(root string, exclude []string) ([]Candidate, error) {
	blockDir := filepath.Join(root, "sys/block")
	disks, err := os.ReadDir(blockDir)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	var out []Candidate
	for _, d := range disks {
		name := d.Name()
		if slices.Contains(exclude, name) || boardMMC.MatchString(name) {
			continue
		}
		dir := filepath.Join(blockDir, name)
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			continue // gone while we looked
		}
		if strings.Contains(real, "/devices/virtual/") {
			continue
		}
		bus := ""
		switch {
		case strings.Contains(real, "/usb"):
			bus = "usb"
		case strings.Contains(real, "/mmc"):
			bus = "mmc"
		}
		removable, _ := blockdev.ReadSysInt(filepath.Join(dir, "removable"))
		if bus == "" && removable != 1 {
			continue
		}
		sectors, err := blockdev.ReadSysInt(filepath.Join(dir, "size"))
		if err != nil || sectors == 0 {
			continue
		}
		parts := partitions(root, dir, name, bus)
		if len(parts) > 0 {
			out = append(out, parts...)
			continue
		}
		out = append(out, Candidate{Name: name, Disk: name, Device: blockdev.SysDevNode(root, dir, name), Bus: bus, Size: sectors * 512})
	}
	return out, nil
}

// partitions returns the partitions of the disk whose sysfs directory is
// dir, by number, leaving out empty ones and an extended partition's
// container.
func partitions(root, dir, disk, bus string) []Candidate {
	ents, _ := os.ReadDir(dir)
	type numbered struct {
		n int64
		c Candidate
	}
	var ps []numbered
	for _, e := range ents {
		pdir := filepath.Join(dir, e.Name())
		n, err := blockdev.ReadSysInt(filepath.Join(pdir, "partition"))
		if err != nil {
			continue
		}
		// An MBR extended partition shows as 1 KiB (2 sectors).
		size, err := blockdev.ReadSysInt(filepath.Join(pdir, "size"))
		if err != nil || size <= 2 {
			continue
		}
		ps = append(ps, numbered{n, Candidate{Name: e.Name(), Disk: disk, Device: blockdev.SysDevNode(root, pdir, e.Name()), Bus: bus, Size: size * 512}})
	}
	slices.SortFunc(ps, func(a, b numbered) int { return int(a.n - b.n) })
	out := make([]Candidate, len(ps))
	for i, p := range ps {
		out[i] = p.c
	}
	return out
}

// kernelFS returns the file systems the kernel has, from /proc/filesystems.
func kernelFS(root string) (map[string]bool, error) {
	b, err := os.ReadFile(filepath.Join(root, "proc/filesystems"))
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) > 0 {
			have[f[len(f)-1]] = true
		}
	}
	return have, nil
}
