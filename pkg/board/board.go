// Package board reads a board definition: the data in boards/<name>/
// that says what a device is (architecture, kernel, modules, console),
// how its disk is laid out (GPT partitions and slots, per layout), where
// its bootloader keeps its environment, and how QEMU emulates it. The
// initramfs builder, the recovery ramdisk's flow (uinit), the QEMU runner
// and the tests all read the same file, so a board is described once.
package board

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/lifeboat-update/lifeboat/internal/strictjson"
	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
)

// File is the name of a board's definition in its directory.
const File = "board.json"

// ErrInvalid is wrapped by every error about a definition that does not
// make sense.
var ErrInvalid = errors.New("invalid board definition")

// Board is one board.
type Board struct {
	Name string `json:"name"`
	// Arch is the Go architecture: amd64 or arm64.
	Arch   string `json:"arch"`
	Kernel Kernel `json:"kernel"`
	// Modules are the kernel modules the ramdisk loads at start, in
	// order; their dependencies come along.
	Modules []string `json:"modules"`
	// Console is the kernel's console= argument: ttyS0,115200.
	Console string `json:"console"`
	// KernelArgs are more arguments every kernel the board boots gets,
	// after console= and panic=-1 (BaseCmdline); its bootloader script has
	// them literally. qemu-x86_64 has no_timer_check: under TCG on a busy
	// host the kernel's IO-APIC timer check can fail and panic.
	KernelArgs string     `json:"kernel_args,omitempty"`
	Bootloader Bootloader `json:"bootloader"`
	// Disk is the kernel's name of the whole disk the layouts are on
	// (vda, mmcblk0, nvme0n1): the disk a manufacturing flash partitions.
	// Empty for a board that is not flashed by the recovery ramdisk.
	Disk string `json:"disk,omitempty"`
	// ResetTrigger says how a user asks for a factory reset at power-on;
	// empty for none. The one kind is "console-key:KEY": KEY held on the
	// serial console while the bootloader starts, a lower-case letter or
	// digit, or ctrl-LETTER (ResetKey).
	ResetTrigger string `json:"reset_trigger,omitempty"`
	// RamdiskBudget is the most the xz-compressed ramdisk may weigh,
	// modules included, in bytes.
	RamdiskBudget int64 `json:"ramdisk_budget"`
	// Repo is the default repository URL; the kernel command line's
	// lifeboat.repo= wins over it.
	Repo    string             `json:"repo,omitempty"`
	Layouts map[string]*Layout `json:"layouts"`
	QEMU    QEMU               `json:"qemu"`

	// Dir is the directory the definition was read from.
	Dir string `json:"-"`
}

// Kernel names a Debian kernel package, pinned.
type Kernel struct {
	Package string `json:"package"` // linux-image-6.1.0-56-amd64
	Version string `json:"version"` // 6.1.192-2
	SHA256  string `json:"sha256"`  // of the .deb
}

// Bootloader says which bootloader a board has and where it keeps its
// environment.
type Bootloader struct {
	// Backend is grub, ebg or uboot (pkg/bootenv/...).
	Backend string `json:"backend"`
	// EnvPartition is the PARTLABEL of the partition holding the
	// environment file (grub: the ESP). For uboot it is optional: with it,
	// the fw_env devices are files in that partition's file system, named
	// by relative paths; without it, they are absolute device paths.
	EnvPartition string `json:"env_partition,omitempty"`
	// EnvFile is the environment file's path in that partition's file
	// system (grub: EFI/BOOT/grubenv).
	EnvFile string `json:"env_file,omitempty"`
	// FWEnv are fw_env.config lines (uboot): "device offset envsize
	// [sectorsize [sectors]]", one per copy.
	FWEnv []string `json:"fw_env,omitempty"`
	// SingleCopy allows a U-Boot environment with one copy (uboot).
	SingleCopy bool `json:"single_copy,omitempty"`
}

// Layout is one way to partition the board's disk.
type Layout struct {
	// DiskSize is the size of the disk QEMU emulates, for example "512M".
	DiskSize   string      `json:"disk_size"`
	Partitions []Partition `json:"partitions"`
}

// Partition roles.
const (
	RoleESP      = "esp"      // EFI system partition: bootloader, its env, the recovery kernel and ramdisk
	RoleSlot     = "slot"     // one slot of a slot class
	RoleData     = "data"     // persistent data: trusted state, journal; may be encrypted
	RoleRecovery = "recovery" // a partition holding the recovery kernel and ramdisk
	RoleFactory  = "factory"  // the factory image, read-only
	RoleBoot     = "boot"     // bootloader files (boot.scr) on boards without an ESP
)

// Partition is one GPT partition of a layout.
type Partition struct {
	Label string `json:"label"` // PARTLABEL, and the file system label where there is one
	Role  string `json:"role"`
	// Size is "64M", "1G", a byte count, or "rest" (one partition at most).
	Size string `json:"size"`
	// Class and Slot name the slot a RoleSlot partition is: rootfs, A.
	Class string `json:"class,omitempty"`
	Slot  string `json:"slot,omitempty"`
	// FS is the file system made on it when the disk is built: vfat,
	// ext4, or empty (raw: slots, factory).
	FS string `json:"fs,omitempty"`
	// Encrypted data partitions are LUKS2, their key sealed to the TPM.
	Encrypted bool `json:"encrypted,omitempty"`
}

// QEMU says how QEMU emulates the board.
type QEMU struct {
	Binary  string `json:"binary"`  // qemu-system-x86_64
	Machine string `json:"machine"` // q35, virt
	CPU     string `json:"cpu"`
	Memory  string `json:"memory"`
	// Firmware is ovmf or u-boot.
	Firmware string   `json:"firmware"`
	Args     []string `json:"args,omitempty"`
}

// Load reads dir/board.json.
func Load(dir string) (*Board, error) {
	b, err := os.ReadFile(filepath.Join(dir, File))
	if err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	bd, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, File), err)
	}
	bd.Dir = dir
	return bd, nil
}

// Parse decodes and validates a definition. Unknown fields are errors, so
// a misspelt key is not silently ignored.
func Parse(b []byte) (*Board, error) {
	var bd Board
	if err := strictjson.Unmarshal(b, &bd); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := bd.Validate(); err != nil {
		return nil, err
	}
	return &bd, nil
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	diskRE    = regexp.MustCompile(`^[a-z][a-z0-9]*$`)
	sha256RE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	triggerRE = regexp.MustCompile(`^console-key:([a-z0-9]|ctrl-[a-z])$`)
)

// BaseCmdline is how every kernel command line on the board starts: its
// console, panic=-1 (reboot at once) and its KernelArgs.
func (b *Board) BaseCmdline() string {
	return strings.TrimSpace("console=" + b.Console + " panic=-1 " + b.KernelArgs)
}

// ResetKey returns the key of a console-key reset trigger ("r",
// "ctrl-c"), or "" when the board has none.
func (b *Board) ResetKey() string {
	if m := triggerRE.FindStringSubmatch(b.ResetTrigger); m != nil {
		return m[1]
	}
	return ""
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Validate checks the definition on its own.
func (b *Board) Validate() error {
	switch {
	case !nameRE.MatchString(b.Name):
		return invalid("name %q: want lower-case letters, digits, '.', '_' or '-'", b.Name)
	case b.Arch != "amd64" && b.Arch != "arm64":
		return invalid("arch %q: want amd64 or arm64", b.Arch)
	case b.Kernel.Package == "" || b.Kernel.Version == "":
		return invalid("kernel: want package and version")
	case !sha256RE.MatchString(b.Kernel.SHA256):
		return invalid("kernel: sha256 %q is not 64 lower-case hex digits", b.Kernel.SHA256)
	case b.Console == "":
		return invalid("no console")
	case b.Disk != "" && !diskRE.MatchString(b.Disk):
		return invalid("disk %q: want a kernel block device name such as vda or mmcblk0 (lower-case letters and digits, no /dev/)", b.Disk)
	case b.RamdiskBudget <= 0:
		return invalid("ramdisk_budget %d: want a positive byte count", b.RamdiskBudget)
	case len(b.Layouts) == 0:
		return invalid("no layouts")
	case b.ResetTrigger != "" && !triggerRE.MatchString(b.ResetTrigger):
		return invalid("reset_trigger %q: want console-key:KEY, KEY a lower-case letter or digit, or ctrl-LETTER", b.ResetTrigger)
	}
	switch b.Bootloader.Backend {
	case "grub":
		if b.Bootloader.EnvPartition == "" || b.Bootloader.EnvFile == "" {
			return invalid("bootloader grub: want env_partition and env_file")
		}
	case "ebg":
	case "uboot":
		if err := b.Bootloader.validateUBoot(); err != nil {
			return err
		}
	default:
		return invalid("bootloader backend %q: want grub, ebg or uboot", b.Bootloader.Backend)
	}
	for name, l := range b.Layouts {
		if l == nil {
			return invalid("layout %q is empty", name)
		}
		if err := l.validate(b); err != nil {
			return fmt.Errorf("layout %q: %w", name, err)
		}
	}
	return nil
}

func (l *Layout) validate(b *Board) error {
	size, err := ParseSize(l.DiskSize)
	if err != nil {
		return invalid("disk_size: %v", err)
	}
	if len(l.Partitions) == 0 {
		return invalid("no partitions")
	}
	labels := map[string]bool{}
	slots := map[string]bool{}
	for i, p := range l.Partitions {
		what := fmt.Sprintf("partition %d (%q)", i+1, p.Label)
		if p.Label == "" || labels[p.Label] {
			return invalid("%s: want a unique label", what)
		}
		labels[p.Label] = true
		if p.Size != "rest" {
			if _, err := ParseSize(p.Size); err != nil {
				return invalid("%s: %v", what, err)
			}
		}
		switch p.Role {
		case RoleSlot:
			if p.Class == "" || p.Slot == "" {
				return invalid("%s: a slot wants class and slot", what)
			}
			key := p.Class + "/" + p.Slot
			if slots[key] {
				return invalid("%s: slot %s of class %s given twice", what, p.Slot, p.Class)
			}
			slots[key] = true
		case RoleESP, RoleData, RoleRecovery, RoleFactory, RoleBoot:
			if p.Class != "" || p.Slot != "" {
				return invalid("%s: only slots have class and slot", what)
			}
		default:
			return invalid("%s: role %q: want esp, slot, data, recovery, factory or boot", what, p.Role)
		}
		switch p.FS {
		case "", "vfat", "ext4":
		default:
			return invalid("%s: fs %q: want vfat, ext4 or none", what, p.FS)
		}
		if p.Encrypted && p.Role != RoleData {
			return invalid("%s: only the data partition can be encrypted", what)
		}
	}
	if b.Bootloader.EnvPartition != "" && !labels[b.Bootloader.EnvPartition] {
		return invalid("bootloader env_partition %q is not in the layout", b.Bootloader.EnvPartition)
	}
	if len(l.Slots("")) == 0 {
		return invalid("no slots")
	}
	g, err := l.GPT()
	if err != nil {
		return err
	}
	if _, err := g.Plan(size); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// Layout returns the named layout.
func (b *Board) Layout(name string) (*Layout, error) {
	l, ok := b.Layouts[name]
	if !ok {
		names := make([]string, 0, len(b.Layouts))
		for n := range b.Layouts {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("board %s has no layout %q (it has %s)", b.Name, name, strings.Join(names, ", "))
	}
	return l, nil
}

// Slots returns the slot partitions of class, or of every class when
// class is empty, in disk order.
func (l *Layout) Slots(class string) []Partition {
	var out []Partition
	for _, p := range l.Partitions {
		if p.Role == RoleSlot && (class == "" || p.Class == class) {
			out = append(out, p)
		}
	}
	return out
}

// Classes returns the slot classes, sorted.
func (l *Layout) Classes() []string {
	var out []string
	for _, p := range l.Slots("") {
		if !slices.Contains(out, p.Class) {
			out = append(out, p.Class)
		}
	}
	slices.Sort(out)
	return out
}

// SlotNames returns the names of the slots, in disk order, each once.
func (l *Layout) SlotNames() []string {
	var out []string
	for _, p := range l.Slots("") {
		if !slices.Contains(out, p.Slot) {
			out = append(out, p.Slot)
		}
	}
	return out
}

// Role returns the first partition with role, if any.
func (l *Layout) Role(role string) (Partition, bool) {
	for _, p := range l.Partitions {
		if p.Role == role {
			return p, true
		}
	}
	return Partition{}, false
}

// Partition returns the partition labelled label.
func (l *Layout) Partition(label string) (Partition, bool) {
	for _, p := range l.Partitions {
		if p.Label == label {
			return p, true
		}
	}
	return Partition{}, false
}

// GPT is the layout as pkg/blockdev creates it on a blank disk.
func (l *Layout) GPT() (blockdev.Layout, error) {
	var out blockdev.Layout
	for _, p := range l.Partitions {
		spec := blockdev.PartitionSpec{Name: p.Label, Type: partitionType(p)}
		if p.Size == "rest" {
			spec.Size = blockdev.Rest
		} else {
			n, err := ParseSize(p.Size)
			if err != nil {
				return out, invalid("partition %q: %v", p.Label, err)
			}
			spec.Size = n
		}
		out.Partitions = append(out.Partitions, spec)
	}
	if err := out.Validate(); err != nil {
		return out, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return out, nil
}

func partitionType(p Partition) blockdev.GUID {
	switch p.Role {
	case RoleESP:
		return blockdev.TypeEFISystem
	case RoleBoot:
		return blockdev.TypeMicrosoftBasicData
	case RoleData:
		if p.Encrypted {
			return blockdev.TypeLinuxLUKS
		}
		return blockdev.TypeLinuxFilesystem
	default:
		return blockdev.TypeLinuxFilesystem
	}
}

// ParseSize parses "512", "64K", "64M", "1G" (powers of 1024).
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	num := s
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K':
			mult, num = 1<<10, s[:n-1]
		case 'M':
			mult, num = 1<<20, s[:n-1]
		case 'G':
			mult, num = 1<<30, s[:n-1]
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v <= 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a positive number with an optional K, M or G", s)
	}
	return v * mult, nil
}
