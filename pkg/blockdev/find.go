package blockdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Errors about finding partitions.
var (
	// ErrNotFound is wrapped by the error of a search that found no
	// partition.
	ErrNotFound = errors.New("partition not found")
	// ErrAmbiguous is wrapped by the error of a search for one partition
	// that found several, as when two disks carry the same image.
	ErrAmbiguous = errors.New("more than one partition matches")
)

// Match selects partitions: every field that is set must match, and the
// zero Match matches every partition.
type Match struct {
	Label string // the partition's name, PARTLABEL
	UUID  GUID   // PARTUUID
	Type  GUID
}

// Matches reports whether p matches m.
func (m Match) Matches(p Partition) bool {
	return (m.Label == "" || p.Name == m.Label) &&
		(m.UUID.IsZero() || p.UUID == m.UUID) &&
		(m.Type.IsZero() || p.Type == m.Type)
}

// String describes m for messages.
func (m Match) String() string {
	var s []string
	if m.Label != "" {
		s = append(s, fmt.Sprintf("label %q", m.Label))
	}
	if !m.UUID.IsZero() {
		s = append(s, "PARTUUID "+m.UUID.String())
	}
	if !m.Type.IsZero() {
		s = append(s, "type "+m.Type.String())
	}
	if len(s) == 0 {
		return "any partition"
	}
	return strings.Join(s, ", ")
}

// Find returns the one partition of t that matches m, or an error wrapping
// ErrNotFound or ErrAmbiguous.
func (t *Table) Find(m Match) (Partition, error) {
	var found []Partition
	for _, p := range t.Partitions {
		if m.Matches(p) {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return Partition{}, fmt.Errorf("%s: %w", m, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return Partition{}, fmt.Errorf("%s: partitions %d and %d: %w", m, found[0].Number, found[1].Number, ErrAmbiguous)
}

// SysPartition is a partition of a disk of the running system.
type SysPartition struct {
	// Partition is the partition's entry in its disk's GPT. When it was
	// found through udev's links alone (its disk could not be read), only
	// Number, UUID or Name (whichever the link gave) are set.
	Partition
	// Path is the partition's device node, such as /dev/vda2; empty when
	// the kernel has no partition at the place the GPT gives (its view of
	// the table is stale), so as never to hand out a node over other
	// bytes.
	Path string
	// Disk is the device node of the whole disk, such as /dev/vda.
	Disk string
	// Offset and Size are the partition's place in the disk, in bytes.
	Offset, Size int64
}

// FindPartition returns the one partition of the running system's disks
// that matches m, or an error wrapping ErrNotFound or ErrAmbiguous; see
// FindPartitions.
func FindPartition(m Match) (SysPartition, error) {
	return findPartition("/", m)
}

// FindPartitions returns the partitions of the running system's disks that
// match m. It reads the GPT of every disk in /sys/block that has a size,
// and takes the partitions' device nodes from /sys/block/DISK/PART (so it
// needs no udev). Where a disk cannot be opened or read, it adds the
// partition udev's /dev/disk/by-partuuid or by-partlabel link names, if
// any; it fails only when nothing matched and some disk could not be read.
func FindPartitions(m Match) ([]SysPartition, error) {
	return findPartitions("/", m)
}

func findPartition(root string, m Match) (SysPartition, error) {
	found, err := findPartitions(root, m)
	if err != nil {
		return SysPartition{}, err
	}
	switch len(found) {
	case 0:
		return SysPartition{}, fmt.Errorf("%s: %w", m, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return SysPartition{}, fmt.Errorf("%s: %s and %s: %w", m, found[0].where(), found[1].where(), ErrAmbiguous)
}

func (p SysPartition) where() string {
	if p.Path != "" {
		return p.Path
	}
	return fmt.Sprintf("%s partition %d", p.Disk, p.Number)
}

// sysPart is a partition as sysfs shows it.
type sysPart struct {
	node        string
	start, size int64 // bytes
}

func findPartitions(root string, m Match) ([]SysPartition, error) {
	blockDir := filepath.Join(root, "sys/block")
	disks, err := os.ReadDir(blockDir)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", m, err)
	}
	var found []SysPartition
	var unreadable []error
	for _, d := range disks {
		dir := filepath.Join(blockDir, d.Name())
		ps, err := scanDisk(root, dir, d.Name(), m)
		if err != nil {
			unreadable = append(unreadable, err)
			continue
		}
		found = append(found, ps...)
	}
	if len(unreadable) == 0 {
		return found, nil
	}
	if p, ok := fromLinks(root, m); ok && !hasPath(found, p.Path) {
		found = append(found, p)
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("find %s: %w", m, errors.Join(append([]error{ErrNotFound}, unreadable...)...))
	}
	return found, nil
}

func hasPath(ps []SysPartition, path string) bool {
	for _, p := range ps {
		if p.Path == path {
			return true
		}
	}
	return false
}

// scanDisk reads the GPT of the disk whose sysfs directory is dir and
// returns its partitions that match m. A disk of size zero (no medium, an
// unbound loop device) or without a GPT has none.
func scanDisk(root, dir, name string, m Match) ([]SysPartition, error) {
	sectors, err := ReadSysInt(filepath.Join(dir, "size"))
	if err != nil || sectors == 0 {
		return nil, err
	}
	ss := 512
	if n, err := ReadSysInt(filepath.Join(dir, "queue/logical_block_size")); err == nil && (n == 512 || n == 4096) {
		ss = int(n)
	}
	node := SysDevNode(root, dir, name)
	f, err := os.Open(node)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := ReadGPT(f, sectors*512, ss)
	if errors.Is(err, ErrNoGPT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", node, err)
	}
	parts := sysParts(root, dir)
	var found []SysPartition
	for _, p := range t.Partitions {
		if !m.Matches(p) {
			continue
		}
		sp := SysPartition{Partition: p, Disk: node}
		sp.Offset, sp.Size = t.Extent(p)
		if k, ok := parts[p.Number]; ok && k.start == sp.Offset && k.size == sp.Size {
			sp.Path = k.node
		}
		found = append(found, sp)
	}
	return found, nil
}

// sysParts returns the partitions the kernel knows of the disk whose sysfs
// directory is dir, by number.
func sysParts(root, dir string) map[int]sysPart {
	ents, _ := os.ReadDir(dir)
	parts := make(map[int]sysPart)
	for _, e := range ents {
		pdir := filepath.Join(dir, e.Name())
		n, err := ReadSysInt(filepath.Join(pdir, "partition"))
		if err != nil {
			continue
		}
		start, err1 := ReadSysInt(filepath.Join(pdir, "start"))
		size, err2 := ReadSysInt(filepath.Join(pdir, "size"))
		if err1 != nil || err2 != nil {
			continue
		}
		parts[int(n)] = sysPart{node: SysDevNode(root, pdir, e.Name()), start: start * 512, size: size * 512}
	}
	return parts
}

// SysDevNode returns the device node, under root, of the sysfs block
// device directory dir named name: its uevent's DEVNAME, or the name with
// '!' for '/'. A DEVNAME that climbs out with ".." is ignored.
func SysDevNode(root, dir, name string) string {
	dev := strings.ReplaceAll(name, "!", "/")
	if b, err := os.ReadFile(filepath.Join(dir, "uevent")); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "DEVNAME="); ok && v != "" && !strings.Contains(v, "..") {
				dev = v
			}
		}
	}
	return filepath.Join(root, "dev", dev)
}

// ReadSysInt reads a sysfs file holding one non-negative decimal number.
func ReadSysInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: %q is not a number", path, strings.TrimSpace(string(b)))
	}
	return n, nil
}

// fromLinks finds the partition m names through udev's by-partuuid or
// by-partlabel links, where they exist. It cannot check a type.
func fromLinks(root string, m Match) (SysPartition, bool) {
	if !m.Type.IsZero() {
		return SysPartition{}, false
	}
	var link string
	switch {
	case !m.UUID.IsZero():
		link = filepath.Join(root, "dev/disk/by-partuuid", m.UUID.String())
	case m.Label != "":
		link = filepath.Join(root, "dev/disk/by-partlabel", udevEncode(m.Label))
	default:
		return SysPartition{}, false
	}
	node, err := filepath.EvalSymlinks(link)
	if err != nil {
		return SysPartition{}, false
	}
	name := filepath.Base(node)
	pdir := filepath.Join(root, "sys/class/block", name)
	n, err := ReadSysInt(filepath.Join(pdir, "partition"))
	if err != nil {
		return SysPartition{}, false
	}
	start, err1 := ReadSysInt(filepath.Join(pdir, "start"))
	size, err2 := ReadSysInt(filepath.Join(pdir, "size"))
	if err1 != nil || err2 != nil {
		return SysPartition{}, false
	}
	disk := ""
	if real, err := filepath.EvalSymlinks(pdir); err == nil {
		d := filepath.Dir(real)
		disk = SysDevNode(root, d, filepath.Base(d))
	}
	return SysPartition{
		Partition: Partition{Number: int(n), UUID: m.UUID, Name: m.Label},
		Path:      filepath.Join(root, "dev", name),
		Disk:      disk,
		Offset:    start * 512,
		Size:      size * 512,
	}, true
}

// udevEncode escapes s as udev does in the names of /dev/disk links: bytes
// outside ASCII letters, digits, "#+-.:=@_" and valid UTF-8 become \xNN.
func udevEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case n > 1,
			'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9',
			strings.ContainsRune("#+-.:=@_", r):
			b.WriteString(s[i : i+n])
		default:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		}
		i += n
	}
	return b.String()
}
