package boot

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/grub"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

// The GRUB disk: an ESP with GRUB, grub.cfg, grubenv and the recovery
// kernel and ramdisk, and one FAT partition per slot, labelled SLOT_A and
// SLOT_B, each holding /boot/vmlinuz and /boot/initrd.img.
const (
	grubESP   = 1
	grubSlotA = 2
	grubSlotB = 3

	grubDir = "EFI/BOOT" // GRUB's prefix on the ESP
	grubEnv = grubDir + "/grubenv"

	recoveryDir = "EFI/lifeboat" // the recovery entry's kernel and ramdisk
)

// grubModules are built into the GRUB image: there is no module directory
// on the ESP.
var grubModules = []string{
	"part_gpt", "fat", "normal", "configfile", "linux", "loadenv", "test",
	"echo", "search", "search_label", "reboot", "halt", "true",
}

// docGRUBCfg is the grub.cfg that docs/bootloader-grub.md documents (the
// copy TestDocGrubCfg keeps in sync with it).
var docGRUBCfg = filepath.Join("..", "..", "pkg", "bootenv", "grub", "testdata", "grub.cfg")

// grubTestEntries are the menu entries the documented rules choose from,
// for this disk: slots A and B from their partitions, and recovery from
// the ESP (the root the rules kept in lifeboat_esp), as in the document.
// Each tells slotinit its name with lifeboat.slot=.
const grubTestEntries = `menuentry "Slot A" --id A {
  search --no-floppy --label --set=root SLOT_A
  linux /boot/vmlinuz console=ttyS0,115200 panic=-1 quiet lifeboat.slot=A
  initrd /boot/initrd.img
}
menuentry "Slot B" --id B {
  search --no-floppy --label --set=root SLOT_B
  linux /boot/vmlinuz console=ttyS0,115200 panic=-1 quiet lifeboat.slot=B
  initrd /boot/initrd.img
}
menuentry "Lifeboat recovery" --id recovery {
  set root="${lifeboat_esp}"
  linux /` + recoveryDir + `/vmlinuz console=ttyS0,115200 panic=-1 quiet lifeboat.slot=recovery
  initrd /` + recoveryDir + `/ramdisk.img
}
`

// grubCfg writes to path the documented grub.cfg's rules, everything
// before its first menuentry, followed by grubTestEntries.
func grubCfg(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(docGRUBCfg)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("\nmenuentry "))
	if i < 0 {
		t.Fatalf("%s: no menuentry", docGRUBCfg)
	}
	cfg := append(b[:i+1:i+1], grubTestEntries...)
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
}

// grubDisk is the disk of a GRUB machine.
type grubDisk struct {
	*disk
	init []byte // the slots' /init
}

// newGRUBDisk builds the disk with release good on both slots and on
// recovery, and the grubenv vars.
func newGRUBDisk(t *testing.T, dir, kernelImage string, vars bootenv.Vars) *grubDisk {
	t.Helper()
	efi := filepath.Join(dir, "BOOTX64.EFI")
	run(t, "grub-mkimage", append([]string{"-O", "x86_64-efi", "-p", "/" + grubDir, "-o", efi}, grubModules...)...)
	cfg := filepath.Join(dir, "grub.cfg")
	grubCfg(t, cfg)
	env := filepath.Join(dir, "grubenv")
	run(t, "grub-editenv", env, "create")
	run(t, "grub-editenv", append([]string{env, "set"}, assignments(vars)...)...)

	d := &grubDisk{
		disk: newDisk(t, filepath.Join(dir, "disk.img"),
			partition{"ESP", "ef00", 32},
			partition{"slotA", "8300", 32},
			partition{"slotB", "8300", 32}),
		init: slotInit(t),
	}
	d.formatFAT(t, grubESP, "ESP", 32, "EFI", grubDir, recoveryDir)
	d.put(t, grubESP, efi, grubDir+"/BOOTX64.EFI")
	d.put(t, grubESP, cfg, grubDir+"/grub.cfg")
	d.put(t, grubESP, env, grubEnv)
	d.put(t, grubESP, kernelImage, recoveryDir+"/vmlinuz")
	d.disk.install(t, grubESP, recoveryDir+"/ramdisk.img", d.init, goodRelease)
	for n, label := range map[int]string{grubSlotA: "SLOT_A", grubSlotB: "SLOT_B"} {
		d.formatFAT(t, n, label, 32, "boot")
		d.put(t, n, kernelImage, "boot/vmlinuz")
		d.install(t, n, goodRelease)
	}
	return d
}

// install writes a release to slot partition n.
func (d *grubDisk) install(t *testing.T, n int, release string) {
	t.Helper()
	d.disk.install(t, n, "boot/initrd.img", d.init, release)
}

// env reads grubenv from the ESP with our backend (pkg/bootenv/grub) and
// checks that the real grub-editenv lists the same variables.
func (d *grubDisk) env(t *testing.T) bootenv.Vars {
	t.Helper()
	f := filepath.Join(t.TempDir(), "grubenv")
	d.get(t, grubESP, grubEnv, f)
	vars, err := grub.Open(f).Load(t.Context())
	if err != nil {
		t.Fatalf("grubenv on the ESP: %v", err)
	}
	listed := bootenv.Vars{}
	for _, l := range strings.Split(run(t, "grub-editenv", f, "list"), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			listed[k] = v
		}
	}
	if d := cmp.Diff(listed, vars); d != "" {
		t.Errorf("grubenv on the ESP: grub.Load and grub-editenv list differ (-grub-editenv +grub.Load):\n%s", d)
	}
	return vars
}

// setEnv sets the variables set and deletes the variables unset in
// grubenv on the ESP, as Lifeboat does from Linux: Load, change, Save with
// our backend (pkg/bootenv/grub). The host works on a copy that mtools
// takes out and puts back, where Linux would have the ESP mounted.
func (d *grubDisk) setEnv(t *testing.T, set bootenv.Vars, unset ...string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "grubenv")
	d.get(t, grubESP, grubEnv, f)
	env := grub.Open(f, grub.GRUBWrites())
	vars, err := env.Load(t.Context())
	if err != nil {
		t.Fatalf("grubenv on the ESP: %v", err)
	}
	maps.Copy(vars, set)
	for _, k := range unset {
		delete(vars, k)
	}
	if err := env.Save(t.Context(), vars); err != nil {
		t.Fatalf("grubenv on the ESP: %v", err)
	}
	d.put(t, grubESP, f, grubEnv)
}

// createEnv replaces grubenv on the ESP with an empty one made by
// grub-editenv create.
func (d *grubDisk) createEnv(t *testing.T) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "grubenv")
	run(t, "grub-editenv", f, "create")
	d.put(t, grubESP, f, grubEnv)
}

// removeEnv deletes grubenv from the ESP, as a lost or never created file.
func (d *grubDisk) removeEnv(t *testing.T) {
	t.Helper()
	run(t, "mdel", "-i", d.image(grubESP), "::"+grubEnv)
}

// hasEnv reports whether the ESP holds grubenv.
func (d *grubDisk) hasEnv(t *testing.T) bool {
	t.Helper()
	for _, l := range strings.Split(run(t, "mdir", "-b", "-i", d.image(grubESP), "::"+grubDir), "\n") {
		if strings.EqualFold(path.Base(strings.TrimSpace(l)), "grubenv") {
			return true
		}
	}
	return false
}

// freshEnv does what recovery must do when grubenv is missing: slot.Vars
// refuses to write an environment it could not read (checked here), so
// recovery writes a whole fresh grubenv with grub.File.Save, which creates
// the file. The host writes it to a new file and mtools puts it on the
// ESP, where Linux would have the ESP mounted.
func (d *grubDisk) freshEnv(t *testing.T, vars bootenv.Vars) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "grubenv")
	policy, err := slot.NewVars(grub.Open(f, grub.GRUBWrites()), slot.WithSlots("A", "B", slot.Recovery))
	if err != nil {
		t.Fatal(err)
	}
	if err := policy.Try(t.Context(), "A", slot.DefaultTries); !errors.Is(err, bootenv.ErrNoEnv) {
		t.Fatalf("slot.Vars.Try(A) over a missing grubenv = %v, want an error wrapping bootenv.ErrNoEnv", err)
	}
	if err := grub.Open(f, grub.GRUBWrites()).Save(t.Context(), vars); err != nil {
		t.Fatalf("grub.File.Save of a fresh grubenv: %v", err)
	}
	d.put(t, grubESP, f, grubEnv)
}

// assignments returns vars as sorted NAME=VALUE arguments.
func assignments(vars bootenv.Vars) []string {
	var a []string
	for k, v := range vars {
		a = append(a, k+"="+v)
	}
	sort.Strings(a)
	return a
}

// TestGRUB boots OVMF and GRUB 2.06 with the grub.cfg that
// docs/bootloader-grub.md documents: its rules (pkg/slot's, over grubenv)
// as they are, followed by menu entries A, B and recovery for this disk.
// It follows an update's life: A runs and counts down; B is tried once and
// its counter reaches 0; a B that never marks itself good resets the
// machine and GRUB falls back to A; B marked good keeps booting; with no
// tries left, or with no BOOT_ORDER or an empty grubenv, recovery boots;
// with the disk write protected, save_env fails and recovery boots rather
// than a slot whose try was not counted; with no grubenv at all recovery
// boots, and once recovery has written a fresh one with our backend, GRUB
// follows it. Every boot is checked on the serial console (which entry's
// kernel ran) and grubenv is read back from the disk after each run.
func TestGRUB(t *testing.T) {
	t.Parallel()
	ovmf := requireVM(t)
	requireTools(t, "grub-mkimage", "grub-editenv", "/usr/lib/grub/x86_64-efi/moddep.lst",
		"sgdisk", "mkfs.fat", "mcopy", "mmd", "mdel", "mdir", "go")
	k := getKernel(t)

	start := time.Now()
	d := newGRUBDisk(t, t.TempDir(), k.Image(), bootenv.Vars{
		"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3",
	})
	m := newMachine(t, ovmf, d.path)
	t.Logf("GRUB disk built in %v", time.Since(start).Round(time.Millisecond))

	steps := []struct {
		name    string
		release string       // installed on slot B first, if not ""
		set     bootenv.Vars // grubenv variables the host sets first
		unset   []string     // grubenv variables the host deletes first
		create  bool         // the host replaces grubenv with an empty one
		remove  bool         // the host deletes grubenv
		fresh   bootenv.Vars // recovery writes a fresh grubenv holding these first
		resets  bool         // a guest reset restarts the machine
		// readOnly write-protects the disk for the boot: save_env fails.
		readOnly bool
		slots    []string     // entries booted, in order (LIFEBOAT-SLOT)
		console  []string     // what else the console must show (GRUB's errors)
		env      bootenv.Vars // grubenv afterwards; nil: there is none
	}{
		{
			name:  "A boots",
			slots: []string{"A"},
			env:   bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "3"},
		},
		{
			// A marked itself good (its counter back to 3); B is installed
			// and tried once.
			name:    "B tried once",
			release: goodRelease,
			set:     bootenv.Vars{"BOOT_A_LEFT": "3", "BOOT_ORDER": "B A recovery", "BOOT_B_LEFT": "1"},
			slots:   []string{"B"},
			env:     bootenv.Vars{"BOOT_ORDER": "B A recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"},
		},
		{
			// The next release on B, tried once, never marks itself good
			// and resets the machine: GRUB finds B with no tries left and
			// boots A.
			name:    "B not marked good, reset, A boots",
			release: badRelease,
			set:     bootenv.Vars{"BOOT_B_LEFT": "1"},
			resets:  true,
			slots:   []string{"B", "A"},
			env:     bootenv.Vars{"BOOT_ORDER": "B A recovery", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "0"},
		},
		{
			// A release of B that boots well, marked good (from the host:
			// the guest has no tools to write grubenv): it keeps booting.
			name:    "B marked good keeps booting",
			release: goodRelease,
			set:     bootenv.Vars{"BOOT_ORDER": "B A recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
			slots:   []string{"B"},
			env:     bootenv.Vars{"BOOT_ORDER": "B A recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "2"},
		},
		{
			// Both slots out of tries: the walk reaches recovery, which
			// boots; no counter changes.
			name:  "no slot has tries left, recovery boots",
			set:   bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"},
			slots: []string{"recovery"},
			env:   bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"},
		},
		{
			// Counters with tries left but no BOOT_ORDER: no slot is
			// named, and the fallback (rule 2) boots recovery.
			name:  "no BOOT_ORDER, recovery boots",
			set:   bootenv.Vars{"BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
			unset: []string{"BOOT_ORDER"},
			slots: []string{"recovery"},
			env:   bootenv.Vars{"BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
		},
		{
			// A grubenv fresh from grub-editenv create: recovery boots.
			name:   "empty grubenv, recovery boots",
			create: true,
			slots:  []string{"recovery"},
			env:    bootenv.Vars{},
		},
		{
			// B would boot, but the disk is write protected: save_env
			// cannot count the try, so the script boots recovery
			// (default=recovery), not B, and the counter is as it was.
			name:     "save_env fails, recovery boots",
			set:      bootenv.Vars{"BOOT_ORDER": "B A recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
			readOnly: true,
			slots:    []string{"recovery"},
			console:  []string{"error: failure writing sector"},
			env:      bootenv.Vars{"BOOT_ORDER": "B A recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
		},
		{
			// load_env finds no file and loads nothing: no slot is
			// named, recovery boots, and GRUB cannot create the file.
			name:    "no grubenv, recovery boots",
			remove:  true,
			slots:   []string{"recovery"},
			console: []string{"grubenv' not found"},
		},
		{
			// Recovery writes a fresh grubenv (grub.File.Save creates
			// it); the next boot follows it.
			name:  "recovery writes a fresh grubenv, A boots",
			fresh: bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
			slots: []string{"A"},
			env:   bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "3"},
		},
	}
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			if st.release != "" {
				d.install(t, grubSlotB, st.release)
			}
			if st.create {
				d.createEnv(t)
			}
			if st.remove {
				d.removeEnv(t)
			}
			if st.fresh != nil {
				d.freshEnv(t, st.fresh)
			}
			if st.set != nil || st.unset != nil {
				d.setEnv(t, st.set, st.unset...)
			}
			// About 7 s a boot on an idle machine; generous for a loaded one.
			timeout := 2 * time.Minute
			if st.resets {
				timeout = 3 * time.Minute
			}
			con := m.bootWith(t, bootOptions{resets: st.resets, readOnlyDisk: st.readOnly}, timeout)
			if got := con.after("LIFEBOAT-SLOT:"); !cmp.Equal(got, st.slots) {
				t.Errorf("entries booted = %q, want %q", got, st.slots)
			}
			for _, want := range st.console {
				if !con.has(want) {
					t.Errorf("console: no line holds %q", want)
				}
			}
			for _, cmdline := range con.after("LIFEBOAT-CMDLINE:") {
				if !strings.HasPrefix(cmdline, "BOOT_IMAGE=/") {
					t.Errorf("kernel command line %q, want one GRUB made (BOOT_IMAGE=/...)", cmdline)
				}
			}
			if st.env == nil {
				if d.hasEnv(t) {
					t.Errorf("grubenv after the boot: on the ESP, want none (GRUB cannot create it)")
				}
				return
			}
			if d := cmp.Diff(st.env, d.env(t), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("grubenv after the boot (-want +got):\n%s", d)
			}
		})
		if !ok {
			return // the next steps start from this one's state
		}
	}
}
