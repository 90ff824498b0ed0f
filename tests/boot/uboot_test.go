package boot

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/uboot"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/qemu"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

// The U-Boot disk, as the boot script of docs/bootloader-uboot.md expects
// it: p1, FAT labelled BOOT, holds boot.scr (found by U-Boot's
// distro_bootcmd, which scans partition 1) and the recovery entry's kernel
// and ramdisk; the slots' FATs, labelled SLOT_A and SLOT_B, each hold
// /boot/Image and /boot/initrd.img.
const (
	ubootBoot  = 1
	ubootSlotA = 2
	ubootSlotB = 3

	ubootRecoveryDir = "lifeboat" // the recovery entry's Image and initrd.img on p1
)

// docBootCmd is the boot script that docs/bootloader-uboot.md documents
// (the copy TestDocBootCmd keeps in sync with it); the test runs it as it
// is.
var docBootCmd = filepath.Join("..", "..", "pkg", "bootenv", "uboot", "testdata", "boot.cmd")

// ubootBoard is what the test adds to U-Boot's default environment when it
// provisions the flash: no autoboot delay, and the disk as the only boot
// target (the default list starts with qfw, which only prints errors
// here, and USB, SCSI and network scans).
var ubootBoard = bootenv.Vars{"bootdelay": "0", "boot_targets": "virtio0"}

// ubootSlots are the board's entries, as the boot script knows them.
var ubootSlots = []slot.Name{"A", "B", slot.Recovery}

// ubootDefaultEnv returns the default environment built into the U-Boot
// binary at path: the NUL-separated name=value strings of its
// default_environment, which starts with bootcmd in Debian's qemu_arm64
// build and ends with an empty string. U-Boot uses it when the flash holds
// no valid environment; a valid one replaces it completely, so the
// provisioned flash must hold all of it. Empty values are left out (U-Boot
// deletes a variable set to nothing).
func ubootDefaultEnv(t *testing.T, path string) bootenv.Vars {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(b, []byte("\x00bootcmd="))
	if start < 0 {
		t.Fatalf("%s: no default environment (\"bootcmd=\" after a NUL)", path)
	}
	area := b[start+1:]
	if end := bytes.Index(area, []byte("\x00\x00")); end >= 0 {
		area = area[:end]
	}
	vars := bootenv.Vars{}
	for _, e := range strings.Split(string(area), "\x00") {
		k, v, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			t.Fatalf("%s: default environment entry %q is not name=value", path, e)
		}
		if v != "" {
			vars[k] = v
		}
	}
	for _, k := range []string{"bootcmd", "distro_bootcmd", "boot_targets", "kernel_addr_r", "ramdisk_addr_r", "scriptaddr"} {
		if vars[k] == "" {
			t.Fatalf("%s: default environment has no %s: %v", path, k, slices.Sorted(maps.Keys(vars)))
		}
	}
	return vars
}

// ubootMachine is one arm64 virt board: U-Boot, its flash (the second
// pflash bank, with the environment at offset 0) and its disk. The flash
// file keeps what U-Boot's saveenv writes across runs, as a board's flash
// does.
type ubootMachine struct {
	*disk
	init      []byte // the slots' /init, for arm64
	q         qemu.Aarch64
	flash     string
	envConfig string // fw_env.config naming the environment in flash
	cmdline   string // the last booted kernel's command line, for Status
}

// newUBootMachine builds the disk with release good on both slots and on
// recovery, and provisions the flash with U-Boot's default environment,
// ubootBoard and vars, made by mkenvimage as a board's would be.
func newUBootMachine(t *testing.T, q qemu.Aarch64, kernelImage string, vars bootenv.Vars) *ubootMachine {
	t.Helper()
	dir := t.TempDir()
	m := &ubootMachine{
		disk: newDisk(t, filepath.Join(dir, "disk.img"),
			partition{"BOOT", "0700", 48},
			partition{"slotA", "8300", 40},
			partition{"slotB", "8300", 40}),
		init:      slotInitFor(t, "arm64"),
		q:         q,
		flash:     filepath.Join(dir, "flash1.img"),
		envConfig: filepath.Join(dir, "fw_env.config"),
		cmdline:   filepath.Join(dir, "cmdline"),
	}
	scr := filepath.Join(dir, "boot.scr")
	run(t, "mkimage", "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", "lifeboat A/B", "-d", docBootCmd, scr)
	m.formatFAT(t, ubootBoot, "BOOT", 48, ubootRecoveryDir)
	m.put(t, ubootBoot, scr, "boot.scr")
	m.put(t, ubootBoot, kernelImage, ubootRecoveryDir+"/Image")
	m.disk.install(t, ubootBoot, ubootRecoveryDir+"/initrd.img", m.init, goodRelease)
	for n, label := range map[int]string{ubootSlotA: "SLOT_A", ubootSlotB: "SLOT_B"} {
		m.formatFAT(t, n, label, 40, "boot")
		m.put(t, n, kernelImage, "boot/Image")
		m.install(t, n, goodRelease)
	}

	env := ubootDefaultEnv(t, qemu.UBootArm64)
	maps.Copy(env, ubootBoard)
	maps.Copy(env, vars)
	txt := filepath.Join(dir, "env.txt")
	if err := os.WriteFile(txt, []byte(strings.Join(assignments(env), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "env.bin")
	run(t, "mkenvimage", "-s", fmt.Sprintf("%#x", qemu.UBootArm64EnvSize), "-o", img, txt)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	flash := make([]byte, qemu.PflashSize)
	copy(flash, b)
	if err := os.WriteFile(m.flash, flash, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("# QEMU virt: U-Boot's environment at the start of the second flash bank\n%s 0x0 %#x\n", m.flash, qemu.UBootArm64EnvSize)
	if err := os.WriteFile(m.envConfig, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return m
}

// install writes a release to slot partition n.
func (m *ubootMachine) install(t *testing.T, n int, release string) {
	t.Helper()
	m.disk.install(t, n, "boot/initrd.img", m.init, release)
}

// boot powers the board on and waits until it powers itself off; with
// resets, a reset restarts it (U-Boot again) in the same run. With
// readOnlyFlash every flash erase and write fails. It keeps the last
// kernel command line for Status and returns the serial console.
func (m *ubootMachine) boot(t *testing.T, resets, readOnlyFlash bool, timeout time.Duration) *serial {
	t.Helper()
	u := qemu.UBootBoot{QEMU: m.q, Firmware: qemu.UBootArm64, Flash: m.flash, FlashReadOnly: readOnlyFlash, Disk: m.path, Resets: resets}
	con := bootVM(t, u.Config(nil), timeout)
	cmdlines := con.after("LIFEBOAT-CMDLINE:")
	last := ""
	if len(cmdlines) > 0 {
		last = cmdlines[len(cmdlines)-1]
	}
	if err := os.WriteFile(m.cmdline, []byte(last+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return con
}

// env opens the environment in the flash with our backend
// (pkg/bootenv/uboot, single copy, as on this board); it is closed when t
// ends.
func (m *ubootMachine) env(t *testing.T) *uboot.Env {
	t.Helper()
	cfg, err := uboot.ReadConfig(m.envConfig)
	if err != nil {
		t.Fatal(err)
	}
	env, err := uboot.Open(cfg, uboot.AllowSingleCopy())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Close() })
	return env
}

// vars returns Lifeboat's slot policy over the flash, as `lifeboat
// --bootloader=uboot --allow-single-copy --slots=A,B,recovery` opens it,
// with the booted slot read from the last boot's kernel command line.
func (m *ubootMachine) vars(t *testing.T) *slot.Vars {
	t.Helper()
	v, err := slot.NewVars(m.env(t), slot.WithSlots(ubootSlots...), slot.WithCmdline(m.cmdline))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// load reads the environment U-Boot left in the flash with our backend and
// checks that the real fw_printenv (libubootenv) reads the same.
func (m *ubootMachine) load(t *testing.T) bootenv.Vars {
	t.Helper()
	vars, err := m.env(t).Load(t.Context())
	if err != nil {
		t.Fatalf("U-Boot environment in the flash: %v", err)
	}
	printed := bootenv.Vars{}
	for _, l := range strings.Split(run(t, "fw_printenv", "-c", m.envConfig), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && v != "" {
			printed[k] = v
		}
	}
	if d := cmp.Diff(printed, vars); d != "" {
		t.Errorf("U-Boot environment in the flash: uboot.Load and fw_printenv differ (-fw_printenv +uboot.Load):\n%s", d)
	}
	return vars
}

// setEnv sets the variables set and deletes the variables unset in the
// flash with our backend: Load, change, Save.
func (m *ubootMachine) setEnv(t *testing.T, set bootenv.Vars, unset ...string) {
	t.Helper()
	env := m.env(t)
	vars, err := env.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(vars, set)
	for _, k := range unset {
		delete(vars, k)
	}
	if err := env.Save(t.Context(), vars); err != nil {
		t.Fatal(err)
	}
}

// requireUBoot skips under -short, and then like requireTools when the
// arm64 QEMU (>= 10) or U-Boot is missing; it returns the QEMU.
func requireUBoot(t *testing.T) qemu.Aarch64 {
	t.Helper()
	if testing.Short() {
		t.Skip("-short skips tests that boot a VM; make test runs them")
	}
	requireTools(t, qemu.UBootArm64)
	dir, err := kernel.DefaultDir()
	if err != nil {
		unavailable(t, "cache: %v", err)
	}
	q, err := qemu.FindAarch64(t.Context(), dir)
	if err != nil {
		unavailable(t, "%v", err)
	}
	return q
}

// The variables of the try-counter scheme the test follows.
var ubootSchemeVars = []string{slot.OrderVar, slot.LeftVar("A"), slot.LeftVar("B"), slot.TryVar}

// TestUBoot boots Debian's U-Boot 2023.01 for QEMU's arm64 virt board
// (under QEMU >= 10: with Debian 12's 7.2 saveenv destroys the
// environment) with the boot script docs/bootloader-uboot.md documents, as
// it is, over U-Boot's environment in flash, where our U-Boot backend
// (pkg/bootenv/uboot) and slot policy (slot.Vars) write it from the host.
// It follows an update's life: A runs and counts down; B is tried and
// U-Boot boots it; B never marks itself good and resets, its tries run out
// and U-Boot boots A, and our status reports B failed; B tried again and
// marked good keeps booting; with no tries left, or no BOOT_ORDER,
// recovery boots; a slot whose try cannot be saved (the flash write
// protected) does not boot. Every boot is checked on the serial console
// (the entry the script chose, its counters, the kernel that ran), and the
// environment is read back from the flash after each run by our backend
// and by fw_printenv, which must agree.
func TestUBoot(t *testing.T) {
	t.Parallel()
	q := requireUBoot(t)
	requireTools(t, "mkimage", "mkenvimage", "fw_printenv", "sgdisk", "mkfs.fat", "mcopy", "mmd", "go")
	k := getPinnedKernel(t, kernel.PinnedArm64(), kernel.MetaArm64)
	t.Logf("U-Boot machine: %s, kernel %s", q, k)

	start := time.Now()
	m := newUBootMachine(t, q, k.Image(), bootenv.Vars{
		"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3",
	})
	t.Logf("U-Boot disk and flash built in %v", time.Since(start).Round(time.Millisecond))

	good := func(n slot.Name, left int) slot.SlotStatus {
		return slot.SlotStatus{Name: n, State: slot.Good, TriesLeft: left}
	}
	failed := func(n slot.Name) slot.SlotStatus { return slot.SlotStatus{Name: n, State: slot.Failed} }
	trying := func(n slot.Name, left int) slot.SlotStatus {
		return slot.SlotStatus{Name: n, State: slot.Trying, TriesLeft: left}
	}
	recovery := good(slot.Recovery, 0)

	steps := []struct {
		name     string
		release  string                                 // installed on slot B first, if not ""
		host     func(t *testing.T, v *slot.Vars) error // what Lifeboat does first
		set      bootenv.Vars                           // variables the host sets first
		unset    []string                               // variables the host deletes first
		resets   bool                                   // a guest reset restarts the machine
		readOnly bool                                   // the flash is write protected
		chosen   []string                               // the script's "LIFEBOAT slot=" lines, in order
		slots    []string                               // kernels booted, in order (LIFEBOAT-SLOT)
		env      bootenv.Vars                           // the scheme's variables afterwards
		status   slot.Status                            // our status afterwards
	}{
		{
			name:   "A boots, its counter goes down",
			chosen: []string{"A A_LEFT=2 B_LEFT=3"},
			slots:  []string{"A"},
			env:    bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "3"},
			status: slot.Status{Booted: "A", Next: "A", Slots: []slot.SlotStatus{good("A", 2), good("B", 3), recovery}},
		},
		{
			// A marks itself good; an update installs a release on B that
			// never marks itself good, and tries it twice. B resets, and
			// QEMU (-no-reboot) ends the run there.
			name:    "B tried, U-Boot boots it",
			release: badRelease,
			host: func(t *testing.T, v *slot.Vars) error {
				if err := v.MarkGood(t.Context(), "A"); err != nil {
					return err
				}
				return v.Try(t.Context(), "B", 2)
			},
			chosen: []string{"B A_LEFT=3 B_LEFT=1"},
			slots:  []string{"B"},
			env:    bootenv.Vars{"BOOT_ORDER": "B A recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "1", "LIFEBOAT_TRY": "B"},
			status: slot.Status{Booted: "B", Next: "B", Slots: []slot.SlotStatus{trying("B", 1), good("A", 3), recovery}},
		},
		{
			// B resets again on its last try; U-Boot then finds it with no
			// tries left and boots A, in the same run.
			name:   "B not marked good, its tries run out, U-Boot boots A",
			resets: true,
			chosen: []string{"B A_LEFT=3 B_LEFT=0", "A A_LEFT=2 B_LEFT=0"},
			slots:  []string{"B", "A"},
			env:    bootenv.Vars{"BOOT_ORDER": "B A recovery", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "0", "LIFEBOAT_TRY": "B"},
			status: slot.Status{Booted: "A", Next: "A", Slots: []slot.SlotStatus{failed("B"), good("A", 2), recovery}},
		},
		{
			// A marks itself good (which ends B's spent trial); a release
			// of B that boots well is installed and tried.
			name:    "B tried again",
			release: goodRelease,
			host: func(t *testing.T, v *slot.Vars) error {
				if err := v.MarkGood(t.Context(), "A"); err != nil {
					return err
				}
				return v.Try(t.Context(), "B", 3)
			},
			chosen: []string{"B A_LEFT=3 B_LEFT=2"},
			slots:  []string{"B"},
			env:    bootenv.Vars{"BOOT_ORDER": "B A recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "2", "LIFEBOAT_TRY": "B"},
			status: slot.Status{Booted: "B", Next: "B", Slots: []slot.SlotStatus{trying("B", 2), good("A", 3), recovery}},
		},
		{
			// Marked good from the host: the guest has no tools to reach
			// the flash.
			name:   "B marked good keeps booting",
			host:   func(t *testing.T, v *slot.Vars) error { return v.MarkGood(t.Context(), "B") },
			chosen: []string{"B A_LEFT=3 B_LEFT=2"},
			slots:  []string{"B"},
			env:    bootenv.Vars{"BOOT_ORDER": "B A recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "2"},
			status: slot.Status{Booted: "B", Next: "B", Slots: []slot.SlotStatus{good("B", 2), good("A", 3), recovery}},
		},
		{
			// Both counters spent: recovery boots, and the script saves
			// nothing.
			name:   "no slot has tries left, recovery boots",
			set:    bootenv.Vars{"BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"},
			chosen: []string{"recovery A_LEFT=0 B_LEFT=0"},
			slots:  []string{"recovery"},
			env:    bootenv.Vars{"BOOT_ORDER": "B A recovery", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"},
			status: slot.Status{Booted: "recovery", Next: "recovery", Slots: []slot.SlotStatus{failed("B"), failed("A"), recovery}},
		},
		{
			// Tries left but no BOOT_ORDER: no slot is named, and rule 3
			// boots recovery.
			name:   "no BOOT_ORDER, recovery boots",
			set:    bootenv.Vars{"BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
			unset:  []string{"BOOT_ORDER"},
			chosen: []string{"recovery A_LEFT=3 B_LEFT=3"},
			slots:  []string{"recovery"},
			env:    bootenv.Vars{"BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
			status: slot.Status{Booted: "recovery", Next: "recovery", Slots: []slot.SlotStatus{
				{Name: "A", State: slot.Inactive, TriesLeft: 3}, {Name: "B", State: slot.Inactive, TriesLeft: 3}, recovery}},
		},
		{
			// The script picks A and counts its try down, but saveenv
			// fails on the write-protected flash: A does not boot, since
			// the try would not count, and the flash keeps A's 3 tries.
			name:     "saveenv fails, recovery boots",
			set:      bootenv.Vars{"BOOT_ORDER": "A B recovery"},
			readOnly: true,
			chosen:   []string{"recovery A_LEFT=2 B_LEFT=3"},
			slots:    []string{"recovery"},
			env:      bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
			status:   slot.Status{Booted: "recovery", Next: "A", Slots: []slot.SlotStatus{good("A", 3), good("B", 3), recovery}},
		},
	}
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			if st.release != "" {
				m.install(t, ubootSlotB, st.release)
			}
			if st.host != nil {
				if err := st.host(t, m.vars(t)); err != nil {
					t.Fatal(err)
				}
			}
			if st.set != nil || st.unset != nil {
				m.setEnv(t, st.set, st.unset...)
			}
			// About 3 s a boot on an idle machine; generous for a loaded one.
			timeout := time.Minute
			if st.resets {
				timeout = 2 * time.Minute
			}
			con := m.boot(t, st.resets, st.readOnly, timeout)
			if got := con.after("LIFEBOAT slot="); !cmp.Equal(got, st.chosen) {
				t.Errorf("boot script chose %q, want %q", got, st.chosen)
			}
			if got := con.after("LIFEBOAT-SLOT:"); !cmp.Equal(got, st.slots) {
				t.Errorf("kernels booted = %q, want %q", got, st.slots)
			}
			vars := m.load(t)
			got := bootenv.Vars{}
			for _, k := range ubootSchemeVars {
				if v, ok := vars[k]; ok {
					got[k] = v
				}
			}
			if d := cmp.Diff(st.env, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("environment after the boot (-want +got):\n%s", d)
			}
			if vars["bootcmd"] == "" {
				t.Errorf("environment after the boot has no bootcmd: U-Boot's defaults were lost")
			}
			status, err := m.vars(t).Status(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(st.status, status); d != "" {
				t.Errorf("Status() after the boot (-want +got):\n%s", d)
			}
		})
		if !ok {
			return // the next steps start from this one's state
		}
	}
}
