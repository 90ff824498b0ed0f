package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/assemble"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/dm"
	"github.com/lifeboat-update/lifeboat/pkg/dmcrypt"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/fleet"
	"github.com/lifeboat-update/lifeboat/pkg/identity"
	"github.com/lifeboat-update/lifeboat/pkg/inplace"
	"github.com/lifeboat-update/lifeboat/pkg/install"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/pkg/store"
	"github.com/lifeboat-update/lifeboat/pkg/tpm"
)

// System is what the flow needs from the kernel; linux.go has the real
// one, the tests a fake.
type System interface {
	LoadModule(path string) error
	// Partition returns the device node of the partition with this
	// PARTLABEL, waiting for the disk to appear.
	Partition(ctx context.Context, label string) (string, error)
	// Mount mounts dev, a file system of type fstype, on a new directory
	// and returns the directory.
	Mount(dev, fstype string, readOnly bool) (string, error)
	Unmount(dir string) error
	// TPM opens the TPM, waiting for its device to appear; the Closer
	// releases it.
	TPM(ctx context.Context) (tpm.Sealer, io.Closer, error)
	// DeviceMapper opens the device mapper; the Closer releases it (the
	// mappings made stay).
	DeviceMapper() (dm.Control, io.Closer, error)
	// KexecLoad loads kernel and initrd with cmdline, to be started by
	// KexecBoot.
	KexecLoad(kernel, initrd, cmdline string) error
	// KexecBoot jumps into the kernel KexecLoad loaded.
	KexecBoot() error
	Reboot() error
	PowerOff() error
	// Shell runs the rescue shell on the console until it exits.
	Shell() error
	// Disk returns the device node of the whole disk the kernel names
	// name (vda), waiting for it to appear.
	Disk(ctx context.Context, name string) (string, error)
	// RereadPartitions makes the kernel read the partition table of the
	// whole disk at path again (BLKRRPART).
	RereadPartitions(path string) error
}

// Sources are where a release can come from.
type Sources interface {
	// Bundle finds removable media holding a bundle and returns the
	// bundle's directory, and a function that unmounts the media.
	Bundle(ctx context.Context) (dir string, done func(), err error)
	// Network brings the network up and returns the repository URL the
	// DHCP server offered, or "".
	Network(ctx context.Context) (offered string, err error)
}

// Result is the machine-readable outcome the flow prints last, as
// LIFEBOAT-RESULT and its JSON.
type Result struct {
	OK      bool   `json:"ok"`
	Mode    string `json:"mode,omitempty"`  // lifeboat.mode: update, wipe, factory-reset or flash
	Check   string `json:"check,omitempty"` // the check that failed: a release attack class, or the phase
	Error   string `json:"error,omitempty"`
	Board   string `json:"board"`
	Version string `json:"version,omitempty"`
	// UpToDate says nothing newer was offered: nothing was written.
	UpToDate bool   `json:"up_to_date,omitempty"`
	Slot     string `json:"slot,omitempty"` // the slot written
	Seed     string `json:"seed,omitempty"` // the slot it was seeded from
	Source   string `json:"source,omitempty"`
	// Server is the fleet server the device reports to (fleet.go).
	Server string `json:"server,omitempty"`
	// FetchedBytes are the chunk bytes read from stores, as stored.
	FetchedBytes int64 `json:"fetched_bytes"`
	// ImageBytes are the bytes of the images written.
	ImageBytes int64 `json:"image_bytes"`
	// Wiped are the partitions wipe mode or a factory reset cleared
	// (wipe.go, factory.go).
	Wiped []Wiped `json:"wiped,omitempty"`
	// Identity is the registration of the identity flash mode wrote
	// (flash.go), for the fleet server.
	Identity *identity.Registration `json:"identity,omitempty"`
	// Resumed says a factory reset found itself under way: a power cut
	// interrupted an earlier run.
	Resumed bool `json:"resumed,omitempty"`
	// Phases are the seconds each phase took, in order.
	Phases []Phase `json:"phases"`
	// UptimeAtStart is the kernel's uptime when the flow began, in
	// seconds: the boot before it.
	UptimeAtStart float64 `json:"uptime_at_start,omitempty"`
	// PeakRSSBytes is the flow's peak resident memory (VmHWM) when it
	// reported.
	PeakRSSBytes int64 `json:"peak_rss_bytes,omitempty"`
}

// lockedWriter writes to w one Write at a time: the console, which more
// than one goroutine writes lines to.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Phase is one step of the flow and how long it took.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Marker prefixes are the lines a test or a line station parses.
const (
	PhaseMarker  = "LIFEBOAT-PHASE"
	ResultMarker = "LIFEBOAT-RESULT"
)

// phaseError names the phase an error happened in, when it is not a
// release check with its own class.
type phaseError struct {
	phase string
	err   error
}

func (e *phaseError) Error() string { return e.phase + ": " + e.err.Error() }
func (e *phaseError) Unwrap() error { return e.err }

// flow is one run of the recovery ramdisk.
type flow struct {
	sys     System
	src     Sources
	board   *board.Board
	etc     string // the ramdisk's /etc/lifeboat
	console io.Writer
	now     func() time.Time
	// stats, if set, gives the kernel's uptime and the process's peak
	// resident memory, for the result.
	stats func() (uptime float64, peakRSS int64)

	p      params
	layout *board.Layout
	env    bootenv.Env // the bootloader environment, once open
	envDir string      // where the partition holding it is mounted, if it has one
	data   string      // where the data partition is mounted
	start  time.Time
	last   time.Time
	res    Result
	// mounted are unmounted, last first, before the flow leaves Linux.
	mounted []string

	// The in-place update of a one-slot layout (inplace.go): its RAM
	// budget (0: DefaultInPlaceRAM), its commit interval (0:
	// DefaultInPlaceCommit), and how it opens the slot (nil: the block
	// device).
	inplaceRAM, inplaceCommit int64
	openSlot                  func(dev string) (inplace.Target, io.Closer, error)
	// recoveryFirst says the bootloader boots recovery first: the slot is
	// being rewritten.
	recoveryFirst bool

	// kernel is the running kernel's release, for the fleet server's
	// inventory; "": unknown.
	kernel string

	// productUUID is the file holding the DMI system UUID, a flash's
	// device ID when the command line gives none (flash.go); "": none.
	productUUID string

	// The fleet server (fleet.go): its client, when the identity or
	// lifeboat.server= names one, and the reporter to it; fleetHTTP and
	// fleetBackoff, if set, replace the client's HTTP client and first
	// wait between retries (tests).
	fleet        *fleet.Client
	rep          *fleet.Reporter
	fleetHTTP    *http.Client
	fleetBackoff time.Duration
	// What the fleet server's poll said: the release to install (""
	// the newest), or idle, nothing at all.
	assigned string
	idle     bool
}

func (f *flow) say(format string, args ...any) {
	fmt.Fprintf(f.console, "lifeboat: "+format+"\n", args...)
}

// phase ends the current phase: it records and prints its duration.
func (f *flow) phase(name string) {
	t := f.now()
	d := t.Sub(f.last)
	f.last = t
	f.res.Phases = append(f.res.Phases, Phase{Name: name, Seconds: d.Seconds()})
	fmt.Fprintf(f.console, "%s name=%s seconds=%.2f since_start=%.2f\n", PhaseMarker, name, d.Seconds(), t.Sub(f.start).Seconds())
}

func (f *flow) mount(dev, fstype string, ro bool) (string, error) {
	dir, err := f.sys.Mount(dev, fstype, ro)
	if err != nil {
		return "", err
	}
	f.mounted = append(f.mounted, dir)
	return dir, nil
}

func (f *flow) unmountAll() {
	for i := len(f.mounted) - 1; i >= 0; i-- {
		if err := f.sys.Unmount(f.mounted[i]); err != nil {
			f.say("unmount %s: %v", f.mounted[i], err)
		}
	}
	f.mounted = nil
}

// run is the whole flow for a command line. It returns only when the
// machine was not handed to another kernel: after the shell, or when
// rebooting or powering off failed.
func (f *flow) run(ctx context.Context, cmdline string) error {
	// The fleet server's reporter says from its own goroutine that a
	// report failed, while the install writes its progress.
	f.console = &lockedWriter{w: f.console}
	f.start = f.now()
	f.last = f.start
	f.res.Board = f.board.Name
	if f.stats != nil {
		f.res.UptimeAtStart, _ = f.stats()
	}
	f.say("recovery ramdisk for board %s", f.board.Name)
	p, err := parseParams(cmdline)
	f.p = p
	if p.inplaceRAM > 0 {
		f.inplaceRAM = p.inplaceRAM
	}
	if p.inplaceCommit > 0 {
		f.inplaceCommit = p.inplaceCommit
	}
	f.res.Mode = p.mode
	if err == nil {
		err = f.loadModules()
	}
	if err == nil && p.mode == "shell" {
		f.say("mode shell: starting the rescue shell")
		return f.sys.Shell()
	}
	var slotName string
	var verity string
	switch {
	case err == nil && p.mode == "wipe":
		err = f.wipe(ctx)
	case err == nil && p.mode == "flash":
		slotName, verity, err = f.flash(ctx)
	case err == nil && p.mode == FactoryResetMode:
		slotName, verity, err = f.factoryReset(ctx) // factory.go
	case err == nil:
		slotName, verity, err = f.update(ctx)
	}
	if err != nil {
		f.fail(err)
		f.unmountAll()
		return f.afterFailure()
	}
	f.res.OK = true
	f.report()
	return f.after(slotName, verity)
}

func (f *flow) loadModules() error {
	b, err := os.ReadFile(filepath.Join(f.etc, "modules.order"))
	if errors.Is(err, os.ErrNotExist) {
		return nil // a kernel with everything built in
	}
	if err != nil {
		return &phaseError{"modules", err}
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if path := strings.TrimSpace(sc.Text()); path != "" {
			if err := f.sys.LoadModule(path); err != nil {
				return &phaseError{"modules", err}
			}
			n++
		}
	}
	f.say("loaded %d kernel modules", n)
	f.phase("modules")
	return nil
}

// update installs the newest release into the inactive slots and
// switches the bootloader to try them. It returns the slot to start and
// its dm-verity argument.
func (f *flow) update(ctx context.Context) (string, string, error) {
	if err := f.openLayout(); err != nil {
		return "", "", err
	}
	l := f.layout

	// The bootloader environment, then the trusted state: the partition
	// holding the environment also holds the sealed key of an encrypted
	// data partition.
	if err := f.openEnv(ctx); err != nil {
		return "", "", err
	}
	f.openFleet()
	env := f.env
	stateDir, err := f.openState(ctx)
	if err != nil {
		var pe *phaseError
		if !errors.As(err, &pe) {
			err = &phaseError{"state", err}
		}
		return "", "", err
	}
	f.startReports(ctx, stateDir)
	if len(l.Slots(rootClass(l))) == 1 {
		return f.updateInPlace(ctx, stateDir) // inplace.go
	}
	// The bootloader's entries: the layout's slots and this ramdisk.
	entries := append(slotNames(l), slot.Recovery)
	vars, err := slot.NewVars(env, slot.WithSlots(entries...), slot.WithCmdline(os.DevNull))
	if err != nil {
		return "", "", &phaseError{"bootloader", err}
	}
	st, err := vars.Status(ctx)
	if err != nil {
		return "", "", &phaseError{"bootloader", err}
	}
	active, target := pickSlots(st, slotNames(l))
	f.say("slots: %s; seeding from %s, writing %s", describe(st), active, target)
	f.res.Slot, f.res.Seed = string(target), string(active)
	f.phase("mount")

	// The source.
	fetch, stores, done, err := f.openSource(ctx, false)
	if err != nil {
		return "", "", err
	}
	defer done()
	if f.idle {
		return f.upToDate(ctx, vars, active, "the fleet server assigns no release")
	}

	// The install.
	slots := map[string]string{}
	var seeds []*assemble.Seed
	for _, class := range l.Classes() {
		tp, ap := partitionOf(l, class, target), partitionOf(l, class, active)
		if tp == "" {
			return "", "", &phaseError{"layout", fmt.Errorf("class %s has no slot %s", class, target)}
		}
		dev, err := f.sys.Partition(ctx, tp)
		if err != nil {
			return "", "", &phaseError{"disk", err}
		}
		slots[class] = dev
		if ap == "" {
			continue
		}
		seedDev, err := f.sys.Partition(ctx, ap)
		if err != nil {
			return "", "", &phaseError{"disk", err}
		}
		seed, c, err := f.openSeed(seedDev, string(active), class)
		if err != nil {
			return "", "", &phaseError{"disk", err}
		}
		defer c.Close()
		seeds = append(seeds, seed)
		// The target's index no longer describes it once writing starts.
		if err := f.dataFS().Remove(install.SlotIndexName(string(target), class)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", "", &phaseError{"state", err}
		}
	}
	client := &release.Client{State: durable.OS(stateDir), Fetch: fetch, Board: f.board.Name}
	f.tell(ctx, vars, api.PhaseDownloading, 0)
	res, err := install.Install(ctx, client, slots, install.Options{
		Version:  f.assigned,
		Stores:   stores,
		Seeds:    seeds,
		Progress: f.progress(),
	})
	if errors.Is(err, release.ErrUpToDate) {
		return f.upToDate(ctx, vars, active, err.Error())
	}
	if err != nil {
		return "", "", err
	}
	f.res.Version = res.Version
	verity := ""
	for _, im := range res.Images {
		if err := f.keepIndex(string(target), im); err != nil {
			f.say("keeping the index of %s %s: %v (the next update chunks the slot instead)", target, im.Class, err)
		}
		if v := f.written(res.Version, target, im); v != "" {
			verity = v
		}
	}
	f.phase("install")
	f.tell(ctx, vars, api.PhaseInstalling, 0)

	// The switch: the slot's verity argument first (the slot is not in
	// BOOT_ORDER with tries yet, so a cut here boots the old system),
	// then one save that makes it the slot to try.
	if err := setVar(ctx, env, verityName(target), verity); err != nil {
		return "", "", &phaseError{"switch", err}
	}
	if err := vars.Try(ctx, target, slot.DefaultTries); err != nil {
		return "", "", &phaseError{"switch", err}
	}
	f.say("bootloader: %s is next, with %d tries", target, slot.DefaultTries)
	f.phase("switch")
	f.tell(ctx, vars, api.PhaseRebooting, 0)
	return string(target), verity, nil
}

// upToDate ends an update that writes nothing, for why: it starts the
// active slot, and tells the fleet server the device is idle.
func (f *flow) upToDate(ctx context.Context, vars *slot.Vars, active slot.Name, why string) (string, string, error) {
	f.res.UpToDate = true
	f.res.Slot = string(active)
	f.say("%s: nothing to write; starting %s", why, active)
	f.phase("install")
	f.tell(ctx, vars, api.PhaseIdle, 0)
	return string(active), verityVar(ctx, f.env, active), nil
}

// written reports image im of release version, written into slot s, on
// the console and in the result, and returns the slot's dm-verity
// argument when im is the root class's image with a verity tree.
func (f *flow) written(version string, s slot.Name, im install.ImageResult) string {
	f.say("wrote %s %s into %s (%s):", version, im.Class, s, im.Slot)
	im.Stats.WriteSummary(f.console)
	f.res.FetchedBytes += im.Stats.Fetched()
	f.res.ImageBytes += im.Stats.Bytes
	if im.Verity == nil || im.Class != rootClass(f.layout) {
		return ""
	}
	return fmt.Sprintf("%d:%s", im.Verity.HashOffset, im.Verity.RootHash)
}

func (f *flow) dataFS() durable.FS { return durable.OS(f.data) }

// openSeed opens a slot's partition as a seed, with the index of the
// image in it when the data partition keeps one, so that it need not be
// chunked.
func (f *flow) openSeed(dev, s, class string) (*assemble.Seed, io.Closer, error) {
	idx := filepath.Join(f.data, filepath.FromSlash(install.SlotIndexName(s, class)))
	if _, err := os.Stat(idx); err != nil {
		return assemble.OpenSeed(dev, "")
	}
	seed, c, err := assemble.OpenSeed(dev, idx)
	if err != nil {
		f.say("seed %s: %v; chunking the slot instead", s, err)
		return assemble.OpenSeed(dev, "")
	}
	return seed, c, nil
}

// keepIndex records the index of the image just written into slot s.
func (f *flow) keepIndex(s string, im install.ImageResult) error {
	var buf bytes.Buffer
	if _, err := im.Index.WriteTo(&buf); err != nil {
		return err
	}
	name := install.SlotIndexName(s, im.Class)
	if err := f.dataFS().MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	return durable.WriteFile(f.dataFS(), name, buf.Bytes(), 0o644)
}

// rootClass is the class whose slot holds the kernel to start: rootfs
// when the layout has one, else the first.
func rootClass(l *board.Layout) string {
	classes := l.Classes()
	for _, c := range classes {
		if c == "rootfs" {
			return c
		}
	}
	return classes[0]
}

func partitionOf(l *board.Layout, class string, s slot.Name) string {
	for _, p := range l.Slots(class) {
		if p.Slot == string(s) {
			return p.Label
		}
	}
	return ""
}

// verityName is the bootloader variable holding slot s's dm-verity
// argument, DATASIZE:ROOTHASH, for the boot entry's command line.
func verityName(s slot.Name) string { return "LIFEBOAT_" + string(s) + "_VERITY" }

func verityVar(ctx context.Context, env bootenv.Env, s slot.Name) string {
	v, err := env.Load(ctx)
	if err != nil {
		return ""
	}
	return v[verityName(s)]
}

func setVar(ctx context.Context, env bootenv.Env, name, value string) error {
	v, err := env.Load(ctx)
	if err != nil {
		return err
	}
	if value == "" {
		if _, ok := v[name]; !ok {
			return nil
		}
		delete(v, name)
	} else {
		if v[name] == value {
			return nil
		}
		v[name] = value
	}
	return env.Save(ctx, v)
}

// pickSlots chooses the slot to seed from, the one the bootloader would
// boot (the first in its order that is good or on trial), and the slot to
// write, another one: a failed or inactive one first.
func pickSlots(st slot.Status, names []slot.Name) (active, target slot.Name) {
	state := map[slot.Name]slot.State{}
	for _, s := range st.Slots {
		state[s.Name] = s.State
	}
	if state[st.Next] == slot.Good || state[st.Next] == slot.Trying {
		active = st.Next
	}
	if active == "" {
		for _, s := range st.Slots {
			if s.State == slot.Good {
				active = s.Name
				break
			}
		}
	}
	if active == "" {
		active = names[0]
	}
	for _, n := range names {
		if n != active {
			return active, n
		}
	}
	return active, active
}

func describe(st slot.Status) string {
	var parts []string
	for _, s := range st.Slots {
		if s.Name.ReadOnly() {
			parts = append(parts, string(s.Name))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s (%d left)", s.Name, s.State, s.TriesLeft))
	}
	return strings.Join(parts, ", ")
}

// openState mounts the data partition, unlocking it first if it is
// encrypted, and returns the trusted state directory, provisioned from the
// ramdisk's root.json the first time.
func (f *flow) openState(ctx context.Context) (string, error) {
	data, ok := f.layout.Role(board.RoleData)
	if !ok {
		return "", fmt.Errorf("layout %s has no data partition for the trusted state", f.p.layout)
	}
	dev, err := f.sys.Partition(ctx, data.Label)
	if err != nil {
		return "", err
	}
	if data.Encrypted {
		if dev, err = f.unlock(ctx, data.Label, dev); err != nil {
			return "", &phaseError{"unlock", err}
		}
	}
	dir, err := f.mount(dev, "ext4", false)
	if err != nil {
		return "", err
	}
	f.data = dir
	state := filepath.Join(dir, "lifeboat", "state")
	if _, err := os.Stat(filepath.Join(state, "root.json")); err == nil {
		return state, nil
	}
	root, err := os.ReadFile(filepath.Join(f.etc, "root.json"))
	if err != nil {
		return "", fmt.Errorf("no trusted state in %s, and the ramdisk carries no root.json to provision it: %w", data.Label, err)
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return "", err
	}
	if err := release.Provision(durable.OS(state), root); err != nil {
		return "", err
	}
	f.say("provisioned the trusted state from the ramdisk's root.json")
	return state, nil
}

// DataMapper is the device-mapper name of the unlocked data partition:
// /dev/mapper/lifeboat-data.
const DataMapper = "lifeboat-data"

// unlock opens the encrypted (LUKS2) data partition on dev with its
// passphrase, sealed to the TPM and kept on the partition holding the
// bootloader environment (board.SealedKeyPath), and returns the unlocked
// device.
func (f *flow) unlock(ctx context.Context, label, dev string) (string, error) {
	keyName := board.SealedKeyPath(label)
	if f.envDir == "" {
		return "", fmt.Errorf("data partition %s is encrypted, but board %s has no partition for the bootloader environment to keep its sealed key (%s) on", label, f.board.Name, keyName)
	}
	where := f.board.Bootloader.EnvPartition + ":" + keyName
	blob, err := os.ReadFile(filepath.Join(f.envDir, filepath.FromSlash(keyName)))
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("sealed key not found at %s: the data partition %s cannot be unlocked", where, label)
	}
	if err != nil {
		return "", fmt.Errorf("read the sealed key at %s: %w", where, err)
	}
	sealer, c, err := f.sys.TPM(ctx)
	if err != nil {
		return "", fmt.Errorf("no TPM to unseal the key of %s: %w", label, err)
	}
	pass, err := sealer.Unseal(ctx, blob, nil)
	c.Close()
	if err != nil {
		// pkg/tpm's errors start with "unseal: ".
		return "", fmt.Errorf("%w (the key at %s was sealed to another TPM, or to other PCR values)", err, where)
	}
	defer clear(pass)
	ctl, c, err := f.sys.DeviceMapper()
	if err != nil {
		return "", fmt.Errorf("device mapper: %w", err)
	}
	defer c.Close()
	mapped, err := dmcrypt.Open(ctx, ctl, DataMapper, dev, pass)
	if errors.Is(err, dmcrypt.ErrWrongPassphrase) {
		return "", fmt.Errorf("LUKS2: wrong key: the key unsealed from %s does not open %s: %w", where, label, err)
	}
	if err != nil {
		return "", fmt.Errorf("LUKS2: %w", err)
	}
	f.say("unlocked the encrypted data partition %s with the key sealed to the TPM: %s", label, mapped)
	return mapped, nil
}

// openLayout reads the layout the command line names from the board.
func (f *flow) openLayout() error {
	l, err := f.board.Layout(f.p.layout)
	if err != nil {
		return &phaseError{"layout", err}
	}
	f.layout = l
	return nil
}

// openEnv mounts the partition holding the bootloader environment, if it
// has one, and opens the environment as f.env. It stays open until the
// machine leaves Linux.
func (f *flow) openEnv(ctx context.Context) error {
	root := ""
	if label := f.board.Bootloader.EnvPartition; label != "" {
		p, _ := f.layout.Partition(label)
		dev, err := f.sys.Partition(ctx, label)
		if err != nil {
			return &phaseError{"bootloader", err}
		}
		fstype := p.FS
		if fstype == "" {
			fstype = "vfat"
		}
		if root, err = f.mount(dev, fstype, false); err != nil {
			return &phaseError{"bootloader", err}
		}
		f.envDir = root
	}
	env, _, err := f.board.OpenEnv(root)
	if err != nil {
		return &phaseError{"bootloader", err}
	}
	f.env = env
	return nil
}

// openSource finds the release: a bundle on removable media, or the
// repository on the network.
//
// With a fleet server (fleet.go), the network's repository and release
// are those its poll assigns; resume says an update in place is under
// way, which the server's "nothing" must not stop. When the poll assigns
// nothing, openSource opens no repository and sets f.idle.
func (f *flow) openSource(ctx context.Context, resume bool) (release.Fetcher, []store.Store, func(), error) {
	if f.p.source == "usb" || f.p.source == "auto" {
		dir, done, err := f.src.Bundle(ctx)
		if err == nil {
			f.say("bundle found in %s", dir)
			f.res.Source = "usb"
			st, err := store.NewLocal(filepath.Join(dir, release.StoreDir))
			if err != nil {
				done()
				return nil, nil, nil, &phaseError{"usb", err}
			}
			f.phase("source")
			return release.DirFetcher{Dir: dir}, []store.Store{st}, done, nil
		}
		if f.p.source == "usb" {
			return nil, nil, nil, &phaseError{"usb", err}
		}
		f.say("no bundle on removable media (%v); trying the network", err)
	}
	offered, err := f.src.Network(ctx)
	if err != nil {
		return nil, nil, nil, &phaseError{"network", err}
	}
	f.phase("network")
	repo := f.pollFleet(ctx, resume)
	if f.idle {
		return nil, nil, func() {}, nil
	}
	switch {
	case repo != "":
	case f.p.repo != "":
		repo = f.p.repo
	case offered != "":
		repo = offered
	default:
		repo = f.board.Repo
	}
	if repo == "" {
		return nil, nil, nil, &phaseError{"network", errors.New("no repository: give lifeboat.repo= on the kernel command line, offer one by DHCP, or set the board's repo")}
	}
	f.say("repository %s", repo)
	f.res.Source = repo
	fetch, err := release.NewHTTPFetcher(repo, nil)
	if err != nil {
		return nil, nil, nil, &phaseError{"network", err}
	}
	st, err := store.Open(strings.TrimSuffix(repo, "/") + "/" + release.StoreDir)
	if err != nil {
		return nil, nil, nil, &phaseError{"network", err}
	}
	return fetch, []store.Store{st}, func() {}, nil
}

// check names the check an error failed: the release attack class, or
// the phase.
func check(err error) string {
	var ae *release.AttackError
	if errors.As(err, &ae) {
		return ae.Class.Error()
	}
	var pe *phaseError
	if errors.As(err, &pe) {
		return pe.phase
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return "timeout"
	}
	return "install"
}

func (f *flow) fail(err error) {
	f.res.OK = false
	f.res.Check = check(err)
	f.res.Error = err.Error()
	f.say("FAILED (%s): %v", f.res.Check, err)
	if f.rep == nil && f.fleet != nil {
		f.rep = fleet.NewReporter(context.Background(), f.fleet, "", f.say)
	}
	if f.rep != nil {
		f.rep.Failed(f.res.Check, err)
	}
	if f.recoveryFirst && f.p.mode == FactoryResetMode {
		f.say("a factory reset is under way: the bootloader boots recovery, which resumes it")
	} else if f.recoveryFirst {
		f.say("the slot is being updated in place: the bootloader boots recovery, which resumes the update")
	} else {
		f.say("nothing was switched: the bootloader boots what it booted before")
	}
	f.report()
}

func (f *flow) report() {
	if f.stats != nil {
		_, f.res.PeakRSSBytes = f.stats()
	}
	b, _ := json.Marshal(f.res)
	fmt.Fprintf(f.console, "%s %s\n", ResultMarker, b)
}

func (f *flow) afterFailure() error {
	switch f.p.onfail {
	case "poweroff":
		return f.sys.PowerOff()
	case "reboot":
		return f.sys.Reboot()
	default:
		f.say("starting the rescue shell")
		return f.sys.Shell()
	}
}

// after starts the slot written, as lifeboat.after= says.
func (f *flow) after(s, verity string) error {
	switch f.p.after {
	case "poweroff":
		f.unmountAll()
		return f.sys.PowerOff()
	case "reboot":
		f.unmountAll()
		f.say("rebooting through the bootloader")
		return f.sys.Reboot()
	}
	err := f.kexec(s, verity)
	f.unmountAll()
	if err != nil {
		f.say("kexec %s: %v; rebooting through the bootloader instead", s, err)
		return f.sys.Reboot()
	}
	return f.sys.KexecBoot()
}

// kexec loads slot s's kernel, then does what the bootloader would before
// booting it: takes one try off the slot's counter, so that a system that
// hangs after kexec still runs out of tries. The caller unmounts
// everything and jumps.
func (f *flow) kexec(s, verity string) error {
	label := partitionOf(f.layout, rootClass(f.layout), slot.Name(s))
	dev, err := f.sys.Partition(context.Background(), label)
	if err != nil {
		return err
	}
	root, err := f.mount(dev, "ext4", true)
	if err != nil {
		return err
	}
	cmdline := strings.Join([]string{
		f.board.BaseCmdline(),
		"lifeboat.slot=" + s, "lifeboat.layout=" + f.p.layout, "lifeboat.verity=" + verity,
	}, " ")
	f.say("kexec into %s: %s", s, cmdline)
	if err := f.sys.KexecLoad(filepath.Join(root, "boot", "vmlinuz"), filepath.Join(root, "boot", "initrd.img"), cmdline); err != nil {
		return err
	}
	booted, err := slot.SimulateBoot(context.Background(), f.env, append(slotNames(f.layout), slot.Recovery), slot.DefaultTries)
	if err != nil {
		return err
	}
	if string(booted) != s {
		return fmt.Errorf("the bootloader would boot %q, not %s", booted, s)
	}
	f.phase("kexec-load")
	return nil
}

// slotNames are the layout's slots, as pkg/slot names them.
func slotNames(l *board.Layout) []slot.Name {
	var out []slot.Name
	for _, n := range l.SlotNames() {
		out = append(out, slot.Name(n))
	}
	return out
}
