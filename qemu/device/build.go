// Package device builds a board's disk and runs the board in QEMU, for the
// end-to-end tests, the demo and by hand (qemu/cmd/runboard, `make qemu`).
//
// Build makes the disk image a board's definition (boards/<name>/) and one
// of its layouts describe, without root, loop devices or mounts: the GPT
// with pkg/blockdev on the image file; the EFI system partition with
// mkfs.fat on a partition-sized file, filled with mtools (GRUB from
// grub-mkimage, the board's grub.cfg, a grubenv from pkg/bootenv/grub, the
// recovery kernel and ramdisk) and copied into place; the slots, and a
// factory partition, from image files (the factory image's record from
// pkg/factory beside the bootloader environment); the data partition with
// mkfs.ext4 -d, holding the trusted state release.Provision writes. Disk reads and writes that image's grubenv
// from the host and finds its partitions; Stick makes a USB stick image
// holding a bundle.
//
// Run starts the board's machine over package qemu, through OVMF and the
// disk's bootloader or straight into a kernel, with an optional USB stick,
// user network and TPM; Machine follows its serial console (WaitFor,
// Lines) and ends it (Wait, PowerCut).
//
//	Build(ctx, Spec) ──▶ disk.img ──▶ Run(ctx, RunSpec) ──▶ *Machine
//	  board.json + grub.cfg          OVMF (its own NVRAM) or -kernel
//	  recovery kernel + ramdisk      + USB stick, network, swtpm
//	  slot images, grubenv,          console ──▶ Console, Log, WaitFor
//	  root.json
package device

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/grub"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/factory"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/qemu"
)

// Where things are on the ESP, as the board's grub.cfg expects them.
const (
	// GRUBPrefix is GRUB's prefix: its image is built with
	// -p /EFI/BOOT and reads grub.cfg there. It is also the removable-media
	// path OVMF boots without a boot entry.
	GRUBPrefix = "EFI/BOOT"
	// GRUBImage is the GRUB EFI image on the ESP.
	GRUBImage = GRUBPrefix + "/BOOTX64.EFI"
	// GRUBConfig is grub.cfg on the ESP.
	GRUBConfig = GRUBPrefix + "/grub.cfg"
	// RecoveryKernel and RecoveryRamdisk are what the recovery entry boots.
	RecoveryKernel  = "EFI/lifeboat/vmlinuz"
	RecoveryRamdisk = "EFI/lifeboat/ramdisk.img"
	// StateDir is the trusted state's directory in the data partition's
	// file system (uinit mounts it at /data).
	StateDir = "lifeboat/state"
	// GRUBConfigFile is the board's grub.cfg in its directory.
	GRUBConfigFile = "grub.cfg"
)

// GRUBModules are built into the GRUB image (there is no module directory
// on the ESP): docs/bootloader-grub.md's list, regexp for the board's
// grub.cfg, and reboot and halt for a person at the GRUB prompt.
func GRUBModules() []string {
	return []string{
		"part_gpt", "fat", "ext2", "normal", "linux", "loadenv", "test", "echo",
		"search", "search_label", "regexp", "reboot", "halt",
	}
}

var (
	// ErrInvalidSpec is wrapped by the errors of Spec.Validate and
	// RunSpec.Validate.
	ErrInvalidSpec = errors.New("invalid device spec")
	// ErrTooBig is wrapped by the error about a file that does not fit in
	// its partition.
	ErrTooBig = errors.New("does not fit")
	// ErrNoPartition is wrapped by the error about a partition label the
	// layout does not have.
	ErrNoPartition = errors.New("no such partition")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, args...))
}

// Spec says what Build puts on a device's disk.
type Spec struct {
	Board *board.Board
	// Layout names one of the board's layouts.
	Layout string
	// Out is the image to write. An existing file is replaced, but only
	// once the new image is complete.
	Out string
	// Kernel and Ramdisk are the recovery kernel image and ramdisk, copied
	// to RecoveryKernel and RecoveryRamdisk on the ESP.
	Kernel  string
	Ramdisk string
	// Slots maps slot partition labels (rootfs-a) to the image files
	// written into them; other slots are left zero.
	Slots map[string]string
	// Env are the grubenv variables, written with pkg/bootenv/grub at the
	// board's env_file; none boots recovery.
	Env bootenv.Vars
	// RootJSON, if set, is the repository's root of trust, provisioned
	// (release.Provision) into StateDir on the data partition.
	RootJSON []byte
	// Installed, if set, records that release version as installed
	// (release.Client.Installed) in the provisioned state: the device
	// never plans an older one. It needs RootJSON.
	Installed string
	// DataFiles are more files for the data partition: its path in the
	// file system (slash-separated) to the host file to copy there, such
	// as a slot's index (install.SlotIndexName).
	DataFiles map[string]string
	// EnvFiles are more files for the partition holding the bootloader
	// environment (the ESP, or U-Boot's boot partition): its path there
	// (slash-separated) to the host file to copy, such as the device's
	// identity (pkg/identity.Name).
	EnvFiles map[string]string
	// GRUBConfig is the grub.cfg to use; "" means the board's
	// (GRUBConfigFile in its directory).
	GRUBConfig string
	// BootCmd is a U-Boot board's boot script source to use; "" means
	// the board's (BootCmdFile in its directory).
	BootCmd string
	// Factory, if set, is what the layout's factory partition holds, with
	// its record (pkg/factory) on the partition holding the bootloader
	// environment, as the manufacturing line leaves a device.
	Factory *Factory
	// TPMState is the swtpm state directory of the device's TPM, made
	// (swtpm_setup) if it holds none. A layout whose data partition is
	// encrypted needs it: the partition's passphrase is sealed to this TPM
	// (crypt.go). Run the device with RunSpec.TPMState set to the same
	// directory (Disk.TPMState).
	TPMState string
}

// Factory is a factory partition's content.
type Factory struct {
	// Record says what the partition holds: the release's version and
	// image (pkg/factory.Record).
	Record factory.Record
	// Image is the slot content written into the partition: Record.Image's
	// Size bytes, its verity tree included, as an install leaves a slot.
	Image string
	// Index is Record.Image's chunk index file (.caibx), kept beside the
	// record.
	Index string
}

// grubConfig returns the grub.cfg s uses.
func (s *Spec) grubConfig() string {
	if s.GRUBConfig != "" {
		return s.GRUBConfig
	}
	return filepath.Join(s.Board.Dir, GRUBConfigFile)
}

// Validate checks s without building anything.
func (s *Spec) Validate() error {
	if s.Board == nil {
		return invalid("no board")
	}
	b := s.Board
	l, err := b.Layout(s.Layout)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	if s.Out == "" {
		return invalid("no output image")
	}
	switch b.Bootloader.Backend {
	case "grub":
		if err := s.validateGRUB(l); err != nil {
			return err
		}
	case "uboot":
		if err := s.validateUBoot(l); err != nil {
			return err
		}
	default:
		return invalid("board %s: bootloader %s: Build makes GRUB and U-Boot disks only", b.Name, b.Bootloader.Backend)
	}
	return s.validateContent(l)
}

// validateGRUB checks what a GRUB disk needs.
func (s *Spec) validateGRUB(l *board.Layout) error {
	b := s.Board
	if b.Arch != "amd64" {
		return invalid("board %s: arch %s: Build makes x86_64 EFI disks only", b.Name, b.Arch)
	}
	esp, ok := l.Role(board.RoleESP)
	if !ok {
		return invalid("layout %s has no ESP", s.Layout)
	}
	if b.Bootloader.EnvPartition != esp.Label {
		return invalid("board %s keeps grubenv on %q, not on the ESP %q", b.Name, b.Bootloader.EnvPartition, esp.Label)
	}
	if want := GRUBPrefix + "/grubenv"; b.Bootloader.EnvFile != want {
		return invalid("board %s: env_file %q: GRUB's grub.cfg reads ${prefix}/grubenv, %s", b.Name, b.Bootloader.EnvFile, want)
	}
	return needFiles(map[string]string{"recovery kernel": s.Kernel, "recovery ramdisk": s.Ramdisk, "grub.cfg": s.grubConfig()})
}

// needFiles checks that each file, named by what it is, is given and is a
// regular file.
func needFiles(files map[string]string) error {
	for _, what := range slices.Sorted(maps.Keys(files)) {
		f := files[what]
		if f == "" {
			return invalid("no %s", what)
		}
		if err := isFile(f); err != nil {
			return invalid("%s: %v", what, err)
		}
	}
	return nil
}

// validateContent checks the slots and the data partition's content.
func (s *Spec) validateContent(l *board.Layout) error {
	for _, label := range slices.Sorted(maps.Keys(s.Slots)) {
		p, ok := l.Partition(label)
		if !ok || p.Role != board.RoleSlot {
			return invalid("slot %q: layout %s has no slot partition of that label", label, s.Layout)
		}
		if err := isFile(s.Slots[label]); err != nil {
			return invalid("slot %s: %v", label, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.DataFiles)) {
		if !fs.ValidPath(name) || name == "." {
			return invalid("data file %q: want a relative slash path", name)
		}
		if err := isFile(s.DataFiles[name]); err != nil {
			return invalid("data file %s: %v", name, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.EnvFiles)) {
		if !fs.ValidPath(name) || name == "." {
			return invalid("environment partition file %q: want a relative slash path", name)
		}
		if err := isFile(s.EnvFiles[name]); err != nil {
			return invalid("environment partition file %s: %v", name, err)
		}
	}
	if err := s.validateFactory(l); err != nil {
		return err
	}
	if data, ok := l.Role(board.RoleData); ok && data.Encrypted && s.TPMState == "" {
		return invalid("the data partition %s is encrypted: its key is sealed to a TPM, and no TPMState names one", data.Label)
	}
	if s.Installed != "" && len(s.RootJSON) == 0 {
		return invalid("an installed version needs root.json to provision the state")
	}
	if len(s.RootJSON) > 0 {
		data, ok := l.Role(board.RoleData)
		switch {
		case !ok:
			return invalid("root.json: layout %s has no data partition", s.Layout)
		case data.FS != "ext4":
			return invalid("root.json: the data partition %s has fs %q, want ext4", data.Label, data.FS)
		}
	}
	return nil
}

// validateFactory checks s.Factory against the layout.
func (s *Spec) validateFactory(l *board.Layout) error {
	fc := s.Factory
	if fc == nil {
		return nil
	}
	p, ok := l.Role(board.RoleFactory)
	if !ok {
		return invalid("factory: layout %s has no factory partition", s.Layout)
	}
	if s.Board.Bootloader.EnvPartition == "" {
		return invalid("factory: board %s has no partition for the bootloader environment to keep the factory record on", s.Board.Name)
	}
	if err := fc.Record.Validate(); err != nil {
		return invalid("%v", err)
	}
	if fc.Record.Board != s.Board.Name {
		return invalid("factory record for board %q, not %s", fc.Record.Board, s.Board.Name)
	}
	if err := needFiles(map[string]string{"factory image": fc.Image, "factory index": fc.Index}); err != nil {
		return err
	}
	fi, _ := os.Stat(fc.Image)
	if fi.Size() != fc.Record.Image.Size {
		return invalid("factory image %s: %d bytes, the record says %d", fc.Image, fi.Size(), fc.Record.Image.Size)
	}
	if size, err := board.ParseSize(p.Size); err == nil && fi.Size() > size {
		return invalid("factory image %s: %d bytes do not fit in partition %s (%d bytes)", fc.Image, fi.Size(), p.Label, size)
	}
	return nil
}

// factoryFiles writes s.Factory's record and index under tmp and returns
// them as files for the partition holding the bootloader environment.
func (s *Spec) factoryFiles(tmp string) ([][2]string, error) {
	if s.Factory == nil {
		return nil, nil
	}
	idx, err := os.ReadFile(s.Factory.Index)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(tmp, "factory")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	if err := factory.Write(durable.OS(dir), s.Factory.Record, idx); err != nil {
		return nil, fmt.Errorf("factory record: %w", err)
	}
	var files [][2]string
	for _, name := range []string{factory.IndexName(s.Factory.Record.Image.Class), factory.RecordName} {
		files = append(files, [2]string{filepath.Join(dir, filepath.FromSlash(name)), name})
	}
	return files, nil
}

func isFile(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	return nil
}

// Disk is a device's disk image.
type Disk struct {
	Path       string
	Board      *board.Board
	LayoutName string
	Layout     *board.Layout
	// Table is the image's GPT.
	Table *blockdev.Table
	// TPMState is the device's TPM (Spec.TPMState), "" for none.
	TPMState string
	// Flash is a U-Boot board's flash image (the virt board's second
	// pflash bank, U-Boot's own environment): Path with FlashSuffix; ""
	// for other boards.
	Flash string
}

// Build writes the disk s describes to s.Out and returns it.
func Build(ctx context.Context, s Spec) (*Disk, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "lifeboat-device-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	d, err := build(ctx, &s, tmp)
	if err != nil {
		return nil, fmt.Errorf("build %s disk %s: %w", s.Board.Name, s.Out, err)
	}
	return d, nil
}

func build(ctx context.Context, s *Spec, tmp string) (*Disk, error) {
	l, _ := s.Board.Layout(s.Layout)
	size, err := board.ParseSize(l.DiskSize)
	if err != nil {
		return nil, err
	}
	gpt, err := l.GPT()
	if err != nil {
		return nil, err
	}
	// The image appears at Out only when complete, so a half-built one is
	// never taken for a disk (runboard reuses an existing one).
	part := s.Out + ".part"
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer func() {
		f.Close()
		os.Remove(part)
	}()
	if err := f.Truncate(size); err != nil {
		return nil, err
	}
	dev, err := blockdev.Open(part, os.O_RDWR)
	if err != nil {
		return nil, err
	}
	table, err := gpt.Create(dev)
	dev.Close()
	if err != nil {
		return nil, err
	}
	d := &Disk{Path: s.Out, Board: s.Board, LayoutName: s.Layout, Layout: l, Table: table, TPMState: s.TPMState}
	if s.uboot() {
		d.Flash = s.Out + FlashSuffix
		if err := writeFlash(d.Flash, qemu.UBootArm64); err != nil {
			return nil, fmt.Errorf("flash: %w", err)
		}
	}
	// An encrypted data partition's passphrase, sealed to the TPM before
	// the ESP that keeps the sealed blob is made.
	var pass []byte
	var espFiles [][2]string
	if data, ok := l.Role(board.RoleData); ok && data.Encrypted {
		p, blob, err := s.sealDataKey(ctx, tmp, data)
		if err != nil {
			return nil, err
		}
		defer clear(p)
		pass = p
		espFiles = append(espFiles, [2]string{blob, board.SealedKeyPath(data.Label)})
	}
	ff, err := s.factoryFiles(tmp)
	if err != nil {
		return nil, err
	}
	espFiles = append(espFiles, ff...)
	for _, name := range slices.Sorted(maps.Keys(s.EnvFiles)) {
		espFiles = append(espFiles, [2]string{s.EnvFiles[name], name})
	}
	for _, tp := range table.Partitions {
		p, _ := l.Partition(tp.Name)
		off, n := table.Extent(tp)
		var img string
		switch {
		case p.Role == board.RoleESP && !s.uboot():
			img, err = s.esp(ctx, tmp, p, n, espFiles...)
		case p.Role == board.RoleBoot && s.uboot():
			img, err = s.bootPartition(ctx, tmp, p, n, espFiles...)
		case s.Slots[p.Label] != "":
			img = s.Slots[p.Label]
		case p.Role == board.RoleFactory && s.Factory != nil:
			img = s.Factory.Image
		case p.FS == "ext4" && p.Encrypted:
			img, err = s.luks(ctx, tmp, p, n, pass)
		case p.FS == "ext4":
			img, err = s.ext4(ctx, tmp, p, n)
		case p.FS == "vfat":
			img = filepath.Join(tmp, p.Label+".fat")
			err = mkfsFAT(ctx, img, p.Label, n)
		}
		if err == nil && img != "" {
			err = copyInto(ctx, f, off, n, img)
		}
		if err != nil {
			return nil, fmt.Errorf("partition %s: %w", p.Label, err)
		}
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(part, s.Out); err != nil {
		return nil, err
	}
	return d, nil
}

// mkfsFAT makes an empty FAT file system of size bytes in the new file
// img, labelled label.
func mkfsFAT(ctx context.Context, img, label string, size int64) error {
	fatLabel := strings.ToUpper(label)
	if len(fatLabel) > 11 {
		fatLabel = fatLabel[:11]
	}
	_, err := run(ctx, "mkfs.fat", "-n", fatLabel, "-C", img, fmt.Sprint(size/1024))
	return err
}

// esp builds the EFI system partition, size bytes, in a file under tmp and
// returns its path; more are more files for it: host file, then path on
// the ESP.
func (s *Spec) esp(ctx context.Context, tmp string, p board.Partition, size int64, more ...[2]string) (string, error) {
	img := filepath.Join(tmp, p.Label+".fat")
	if err := mkfsFAT(ctx, img, p.Label, size); err != nil {
		return "", err
	}
	efi := filepath.Join(tmp, "BOOTX64.EFI")
	args := append([]string{"-O", "x86_64-efi", "-p", "/" + GRUBPrefix, "-o", efi}, GRUBModules()...)
	if _, err := run(ctx, "grub-mkimage", args...); err != nil {
		return "", err
	}
	envDir := filepath.Join(tmp, "grubenv")
	if err := os.Mkdir(envDir, 0o755); err != nil {
		return "", err
	}
	env := s.Env
	if env == nil {
		env = bootenv.Vars{}
	}
	if err := grub.NewFile(durable.OS(envDir), "grubenv", grub.GRUBWrites()).Save(ctx, env); err != nil {
		return "", err
	}
	dirs := map[string]bool{}
	files := [][2]string{
		{efi, GRUBImage},
		{s.grubConfig(), GRUBConfig},
		{filepath.Join(envDir, "grubenv"), s.Board.Bootloader.EnvFile},
		{s.Kernel, RecoveryKernel},
		{s.Ramdisk, RecoveryRamdisk},
	}
	files = append(files, more...)
	for _, f := range files {
		for dir := path.Dir(f[1]); dir != "."; dir = path.Dir(dir) {
			dirs[dir] = true
		}
	}
	mmd := []string{"-i", img}
	for _, dir := range slices.Sorted(maps.Keys(dirs)) { // parents sort first
		mmd = append(mmd, "::"+dir)
	}
	if _, err := run(ctx, "mmd", mmd...); err != nil {
		return "", err
	}
	for _, f := range files {
		if _, err := run(ctx, "mcopy", "-i", img, f[0], "::"+f[1]); err != nil {
			return "", err
		}
	}
	return img, nil
}

// ext4 makes partition p's ext4 file system, size bytes, in a file under
// tmp and returns its path. The data partition holds the provisioned
// trusted state.
func (s *Spec) ext4(ctx context.Context, tmp string, p board.Partition, size int64) (string, error) {
	root := filepath.Join(tmp, p.Label+".root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return "", err
	}
	if p.Role == board.RoleData && len(s.RootJSON) > 0 {
		if err := provision(filepath.Join(root, filepath.FromSlash(StateDir)), s.RootJSON, s.Installed); err != nil {
			return "", err
		}
	}
	if p.Role == board.RoleData {
		for _, name := range slices.Sorted(maps.Keys(s.DataFiles)) {
			b, err := os.ReadFile(s.DataFiles[name])
			if err != nil {
				return "", err
			}
			dst := filepath.Join(root, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return "", err
			}
			if err := os.WriteFile(dst, b, 0o644); err != nil {
				return "", err
			}
		}
	}
	img := filepath.Join(tmp, p.Label+".ext4")
	f, err := os.Create(img)
	if err != nil {
		return "", err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	label := p.Label
	if len(label) > 16 {
		label = label[:16]
	}
	args := []string{"-q", "-F", "-L", label, "-E", "root_owner=0:0", "-d", root}
	if p.Encrypted {
		// dm-crypt's sectors are LUKS2's, up to 4096 bytes, and ext4's
		// blocks must not be smaller (mkfs.ext4 picks 1024 for small file
		// systems).
		args = append(args, "-b", "4096")
	}
	if _, err := run(ctx, "mkfs.ext4", append(args, img)...); err != nil {
		return "", err
	}
	return img, nil
}

// provision writes the trusted state for rootJSON into dir, and records
// installed (if not "") as the installed release.
func provision(dir string, rootJSON []byte, installed string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	state := durable.OS(dir)
	if err := release.Provision(state, rootJSON); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	if installed != "" {
		if err := (&release.Client{State: state}).Installed(installed); err != nil {
			return fmt.Errorf("record installed %s: %w", installed, err)
		}
	}
	return nil
}

// Open returns the disk at path, an image Build made for layout of b.
func Open(b *board.Board, layout, path string) (*Disk, error) {
	l, err := b.Layout(layout)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	t, err := blockdev.ReadGPT(f, fi.Size(), 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, p := range l.Partitions {
		if _, err := t.Find(blockdev.Match{Label: p.Label}); err != nil {
			return nil, fmt.Errorf("%s is not a %s %s disk: %w", path, b.Name, layout, err)
		}
	}
	d := &Disk{Path: path, Board: b, LayoutName: layout, Layout: l, Table: t}
	if b.Bootloader.Backend == "uboot" {
		d.Flash = path + FlashSuffix
	}
	return d, nil
}

// Partition returns the offset and size in bytes of the partition labelled
// label in the image.
func (d *Disk) Partition(label string) (off, size int64, err error) {
	for _, p := range d.Table.Partitions {
		if p.Name == label {
			off, size = d.Table.Extent(p)
			return off, size, nil
		}
	}
	return 0, 0, fmt.Errorf("%s: %q: %w", d.Path, label, ErrNoPartition)
}

// mtoolsImage is the mtools -i argument for the FAT in partition label.
func (d *Disk) mtoolsImage(label string) (string, error) {
	off, _, err := d.Partition(label)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s@@%d", d.Path, off), nil
}

// Env reads the grubenv in the image with pkg/bootenv/grub. The machine
// must not be running.
func (d *Disk) Env(ctx context.Context) (bootenv.Vars, error) {
	if d.Board.Bootloader.Backend == "uboot" {
		return d.ubootEnv(ctx)
	}
	tmp, err := os.MkdirTemp("", "lifeboat-grubenv-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	img, err := d.mtoolsImage(d.Board.Bootloader.EnvPartition)
	if err != nil {
		return nil, err
	}
	if _, err := run(ctx, "mcopy", "-o", "-i", img, "::"+d.Board.Bootloader.EnvFile, filepath.Join(tmp, "grubenv")); err != nil {
		return nil, fmt.Errorf("%w: %w", bootenv.ErrNoEnv, err)
	}
	return grub.NewFile(durable.OS(tmp), "grubenv").Load(ctx)
}

// SetEnv replaces the grubenv in the image with v, written as Lifeboat
// writes it on a device (grub.GRUBWrites). The machine must not be
// running.
func (d *Disk) SetEnv(ctx context.Context, v bootenv.Vars) error {
	if d.Board.Bootloader.Backend == "uboot" {
		return d.setUBootEnv(ctx, v)
	}
	tmp, err := os.MkdirTemp("", "lifeboat-grubenv-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	img, err := d.mtoolsImage(d.Board.Bootloader.EnvPartition)
	if err != nil {
		return err
	}
	if err := grub.NewFile(durable.OS(tmp), "grubenv", grub.GRUBWrites()).Save(ctx, v); err != nil {
		return err
	}
	_, err = run(ctx, "mcopy", "-o", "-i", img, filepath.Join(tmp, "grubenv"), "::"+d.Board.Bootloader.EnvFile)
	return err
}

// UpdateEnv sets the variables in set and deletes those in unset in the
// image's grubenv, and returns the result.
func (d *Disk) UpdateEnv(ctx context.Context, set bootenv.Vars, unset ...string) (bootenv.Vars, error) {
	v, err := d.Env(ctx)
	if err != nil {
		return nil, err
	}
	maps.Copy(v, set)
	for _, k := range unset {
		delete(v, k)
	}
	return v, d.SetEnv(ctx, v)
}

// PutRecovery replaces the recovery kernel and ramdisk on the image's ESP,
// for a disk kept across runs while its ramdisk is rebuilt. The machine
// must not be running.
func (d *Disk) PutRecovery(ctx context.Context, kernel, ramdisk string) error {
	if d.Board.Bootloader.Backend == "uboot" {
		img, err := d.mtoolsImage(d.Board.Bootloader.EnvPartition)
		if err != nil {
			return err
		}
		return mcopyFiles(ctx, img, [][2]string{{kernel, UBootRecoveryKernel}, {ramdisk, UBootRecoveryRamdisk}})
	}
	esp, ok := d.Layout.Role(board.RoleESP)
	if !ok {
		return fmt.Errorf("%s: layout %s has no ESP", d.Path, d.LayoutName)
	}
	img, err := d.mtoolsImage(esp.Label)
	if err != nil {
		return err
	}
	for _, f := range [][2]string{{kernel, RecoveryKernel}, {ramdisk, RecoveryRamdisk}} {
		if _, err := run(ctx, "mcopy", "-o", "-i", img, f[0], "::"+f[1]); err != nil {
			return err
		}
	}
	return nil
}

// BootPartition builds, into the new file out, the partition of s's
// layout that holds the bootloader environment (the ESP of a GRUB board,
// the boot partition of a U-Boot board) as Build puts it on a disk: the
// bootloader files, s.Env, and the recovery kernel and ramdisk. It
// returns the partition's label. This is the image a manufacturing flash
// writes (package flash); s.Out, the slots and the data partition are not
// used.
func BootPartition(ctx context.Context, s Spec, out string) (string, error) {
	s.Out = out
	if err := s.Validate(); err != nil {
		return "", err
	}
	l, _ := s.Board.Layout(s.Layout)
	label := s.Board.Bootloader.EnvPartition
	p, _ := l.Partition(label) // Validate checked it is in the layout
	size, err := partitionSize(l, label)
	if err != nil {
		return "", err
	}
	// Beside out, so that the image is renamed into place.
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".lifeboat-bootpart-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	var img string
	if s.uboot() {
		img, err = s.bootPartition(ctx, tmp, p, size)
	} else {
		img, err = s.esp(ctx, tmp, p, size)
	}
	if err != nil {
		return "", fmt.Errorf("%s partition %s: %w", s.Board.Name, label, err)
	}
	if err := os.Rename(img, out); err != nil {
		return "", err
	}
	return label, nil
}

// partitionSize is the size of partition label when l is laid out on a
// disk of its disk_size.
func partitionSize(l *board.Layout, label string) (int64, error) {
	size, err := board.ParseSize(l.DiskSize)
	if err != nil {
		return 0, err
	}
	gpt, err := l.GPT()
	if err != nil {
		return 0, err
	}
	t, err := gpt.Plan(size)
	if err != nil {
		return 0, err
	}
	tp, err := t.Find(blockdev.Match{Label: label})
	if err != nil {
		return 0, err
	}
	_, n := t.Extent(tp)
	return n, nil
}
