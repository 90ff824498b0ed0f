package boot

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/ebg"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

// The EFI Boot Guard disk: an ESP with EBG as the default boot loader, and
// one config partition per slot (FAT labels BOOT0 and BOOT1), each holding
// BGENV.DAT, vmlinuz and initrd.img. EBG 0.13 is built for exactly two
// config partitions and finds them by their BGENV.DAT.
const (
	ebgESP   = 1
	ebgSlotA = 2
	ebgSlotB = 3

	ebgBinary = "/usr/lib/x86_64-linux-gnu/efibootguard/efibootguardx64.efi"
)

type ebgDisk struct {
	*disk
	init []byte
}

// newEBGDisk builds the disk: A with revision 1, B with revision 0, both
// OK, both holding the good release, the watchdog off (the cloud kernel
// cannot pet it, and the resets here are the guest's own).
func newEBGDisk(t *testing.T, dir, kernelImage string) *ebgDisk {
	t.Helper()
	d := &ebgDisk{
		disk: newDisk(t, filepath.Join(dir, "disk.img"),
			partition{"ESP", "ef00", 16},
			partition{"BOOT0", "0700", 32},
			partition{"BOOT1", "0700", 32}),
		init: slotInit(t),
	}
	d.formatFAT(t, ebgESP, "ESP", 16, "EFI", "EFI/BOOT")
	d.put(t, ebgESP, ebgBinary, "EFI/BOOT/BOOTX64.EFI")
	for _, s := range []struct {
		n        int
		name     string
		label    string
		revision int
	}{{ebgSlotA, "A", "BOOT0", 1}, {ebgSlotB, "B", "BOOT1", 0}} {
		env := filepath.Join(dir, "BGENV-"+s.name+".DAT")
		run(t, "bg_setenv", "-f", env, "-r", fmt.Sprint(s.revision), "-k", "L:"+s.label+":vmlinuz",
			"-a", "initrd=initrd.img console=ttyS0,115200 panic=-1 quiet lifeboat.slot="+s.name, "-w", "0", "-s", "OK")
		d.formatFAT(t, s.n, s.label, 32)
		d.put(t, s.n, env, "BGENV.DAT")
		d.put(t, s.n, kernelImage, "vmlinuz")
		d.install(t, s.n, goodRelease)
	}
	return d
}

// ebgWatchdog is the watchdog timeout of the trial that hangs, in seconds.
// EBG arms the watchdog just before it starts B's kernel, which reaches
// its init about 2.5 s later under TCG on an idle machine (5-10 s, once
// 25 s, on a heavily loaded one): long enough that the console usually
// shows B ran and hung, short enough to keep the run short.
const ebgWatchdog = 10

// ebgWatchdogDevice is the machine's watchdog: an Intel 6300ESB on the
// PCI bus, resetting the machine when it expires (-action watchdog=reset,
// QEMU's default, written out). EBG 0.13 probes the PCI devices in order
// and arms the first watchdog it knows, so it arms this one rather than
// the iTCO of the q35 LPC bridge (00:1f.0), which would reset only with
// -global ICH9-LPC.noreboot=false on QEMU 7.2. The console shows which.
var ebgWatchdogDevice = []string{"-device", "i6300esb", "-action", "watchdog=reset"}

// setWatchdog sets slot n's watchdog timeout with our backend, as an
// update writes the slot's config (Env.Save) before it tries the slot.
func setWatchdog(t *testing.T, s *ebg.Slots, n slot.Name, seconds int) error {
	t.Helper()
	env, err := s.Env(n)
	if err != nil {
		return err
	}
	vars, err := env.Load(t.Context())
	if err != nil {
		return err
	}
	vars[ebg.VarWatchdog] = fmt.Sprint(seconds)
	return env.Save(t.Context(), vars)
}

func (d *ebgDisk) install(t *testing.T, n int, release string) {
	t.Helper()
	d.disk.install(t, n, "initrd.img", d.init, release)
}

// slots opens the disk and returns our EBG backend over its two config
// partitions, read and written in place inside the image, as Lifeboat
// does on a device; the disk is closed when t ends.
func (d *ebgDisk) slots(t *testing.T) *ebg.Slots {
	t.Helper()
	dev, err := blockdev.Open(d.path, os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	var parts []ebg.SlotPart
	for _, s := range []struct {
		n    int
		name slot.Name
	}{{ebgSlotA, "A"}, {ebgSlotB, "B"}} {
		f, err := ebg.OpenFAT(d.partition(t, dev, s.n), "BGENV.DAT")
		if err != nil {
			t.Fatalf("slot %s: %v", s.name, err)
		}
		parts = append(parts, ebg.SlotPart{Name: s.name, Part: f})
	}
	sl, err := ebg.NewSlots(parts)
	if err != nil {
		t.Fatal(err)
	}
	return sl
}

// TestEBG boots OVMF and EFI Boot Guard 0.13 (Debian's efibootguardx64.efi)
// through an update's life, with our EBG backend (pkg/bootenv/ebg) doing
// Lifeboat's part on the image: A runs; B is tried and never marks itself
// good, the machine resets, EBG boots A again and our status reports B
// failed; B is tried with EBG's watchdog armed and hangs, the watchdog
// resets the machine, EBG boots A and our status reports B failed; B is
// rewritten and tried again, marked good, and keeps booting. The machine
// has an i6300ESB watchdog throughout. Every boot is checked on the serial
// console, and the configs are read back from the disk after each run.
func TestEBG(t *testing.T) {
	t.Parallel()
	ovmf := requireVM(t)
	requireTools(t, ebgBinary, "bg_setenv", "sgdisk", "mkfs.fat", "mcopy", "mmd", "go")
	k := getKernel(t)

	start := time.Now()
	d := newEBGDisk(t, t.TempDir(), k.Image())
	m := newMachine(t, ovmf, d.path)
	t.Logf("EBG disk built in %v", time.Since(start).Round(time.Millisecond))

	good := func(n slot.Name) slot.SlotStatus { return slot.SlotStatus{Name: n, State: slot.Good} }
	steps := []struct {
		name    string
		release string                                 // installed on slot B first, if not ""
		host    func(t *testing.T, s *ebg.Slots) error // what Lifeboat does first
		resets  bool                                   // a reset restarts the machine in the same run
		slots   []string                               // slots booted, in order (LIFEBOAT-SLOT)
		// hung is the slot on trial that hangs until the watchdog resets
		// the machine. Under a heavy load its kernel may not reach init
		// (and print LIFEBOAT-SLOT) before the watchdog expires; the
		// watchdog covers the whole trial boot, so that is the same
		// failed trial, and slots may then lack it.
		hung    string
		actions []string    // LIFEBOAT-ACTION lines, in order, if not nil
		console []string    // what else the console must show (EBG's log)
		configs []string    // A's and B's config afterwards
		status  slot.Status // our status afterwards
	}{
		{
			name:    "A boots",
			slots:   []string{"A"},
			configs: []string{"rev 1 OK", "rev 0 OK"},
			status:  slot.Status{Next: "A", Slots: []slot.SlotStatus{good("A"), good("B")}},
		},
		{
			// The release on B resets the machine without marking itself
			// good; QEMU (-no-reboot) ends the run at that reset, so the
			// disk can be read as the reset left it.
			name:    "B tried, resets without marking good",
			release: badRelease,
			host:    func(t *testing.T, s *ebg.Slots) error { return s.Try(t.Context(), "B", 1) },
			slots:   []string{"B"},
			configs: []string{"rev 1 OK", "rev 2 TESTING"},
			status: slot.Status{Next: "A", Slots: []slot.SlotStatus{
				good("A"), {Name: "B", State: slot.Trying, TriesLeft: 0}}},
		},
		{
			name:    "after the reset EBG boots A, B failed",
			slots:   []string{"A"},
			configs: []string{"rev 1 OK", "rev 0 FAILED"},
			status: slot.Status{Next: "A", Slots: []slot.SlotStatus{
				good("A"), {Name: "B", State: slot.Failed}}},
		},
		{
			// A release of B that hangs before it confirms, tried with
			// the watchdog armed. Nothing in the guest pets it (see
			// hangRelease), it expires, and the reset restarts the
			// machine in the same run: EBG finds B still TESTING, fails
			// it, and boots A, whose config has the watchdog off.
			name:    "B tried with the watchdog, hangs, the watchdog resets, EBG boots A",
			release: hangRelease,
			host: func(t *testing.T, s *ebg.Slots) error {
				if err := setWatchdog(t, s, "B", ebgWatchdog); err != nil {
					return err
				}
				return s.Try(t.Context(), "B", 1)
			},
			resets:  true,
			slots:   []string{"B", "A"},
			hung:    "B",
			actions: []string{"poweroff"}, // A's: B neither confirmed nor reset itself
			console: []string{
				"Detected i6300ESB watchdog",
				fmt.Sprintf("Starting L:BOOT1:vmlinuz with watchdog set to %d seconds", ebgWatchdog),
				"Starting L:BOOT0:vmlinuz with watchdog set to 0 seconds",
			},
			configs: []string{"rev 1 OK", "rev 0 FAILED"},
			status: slot.Status{Next: "A", Slots: []slot.SlotStatus{
				good("A"), {Name: "B", State: slot.Failed}}},
		},
		{
			// The watchdog back to 0: the cloud kernel cannot pet it.
			name:    "B rewritten and tried again",
			release: goodRelease,
			host: func(t *testing.T, s *ebg.Slots) error {
				if err := setWatchdog(t, s, "B", 0); err != nil {
					return err
				}
				return s.Try(t.Context(), "B", 1)
			},
			slots:   []string{"B"},
			configs: []string{"rev 1 OK", "rev 2 TESTING"},
			status: slot.Status{Next: "A", Slots: []slot.SlotStatus{
				good("A"), {Name: "B", State: slot.Trying, TriesLeft: 0}}},
		},
		{
			// Marked good from the host: the guest has no tools to write
			// BGENV.DAT.
			name:    "B marked good keeps booting",
			host:    func(t *testing.T, s *ebg.Slots) error { return s.MarkGood(t.Context(), "B") },
			slots:   []string{"B"},
			configs: []string{"rev 1 OK", "rev 2 OK"},
			status:  slot.Status{Next: "B", Slots: []slot.SlotStatus{good("A"), good("B")}},
		},
	}
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			if st.release != "" {
				d.install(t, ebgSlotB, st.release)
			}
			if st.host != nil {
				if err := st.host(t, d.slots(t)); err != nil {
					t.Fatal(err)
				}
			}
			// About 6 s a boot on an idle machine; generous for a loaded one.
			timeout := 2 * time.Minute
			if st.resets {
				timeout = 3 * time.Minute
			}
			con := m.bootWith(t, bootOptions{resets: st.resets, args: ebgWatchdogDevice}, timeout)
			booted := con.after("LIFEBOAT-SLOT:")
			if st.hung != "" && st.slots[0] == st.hung && cmp.Equal(booted, st.slots[1:]) {
				t.Logf("the watchdog expired before slot %s's kernel reached init (a loaded machine)", st.hung)
			} else if !cmp.Equal(booted, st.slots) {
				t.Errorf("slots booted = %q, want %q", booted, st.slots)
			}
			if acts := con.after("LIFEBOAT-ACTION:"); st.actions != nil && !cmp.Equal(acts, st.actions) {
				t.Errorf("actions = %q, want %q", acts, st.actions)
			}
			if con.has("Kernel panic") {
				t.Errorf("console: a kernel panicked")
			}
			for _, want := range st.console {
				if !con.has(want) {
					t.Errorf("console: no line holds %q", want)
				}
			}
			s := d.slots(t)
			cs, err := s.Configs(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range cs {
				if c == nil {
					got = append(got, "invalid")
					continue
				}
				got = append(got, fmt.Sprintf("rev %d %s", c.Revision, c.UState))
			}
			if d := cmp.Diff(st.configs, got); d != "" {
				t.Errorf("configs after the boot (-want +got):\n%s", d)
			}
			status, err := s.Status(t.Context())
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
