package boot

import (
	"maps"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv/grub"
)

// The GRUB disk: an ESP with GRUB, grub.cfg and grubenv, and one FAT
// partition per slot, labelled SLOT_A and SLOT_B, each holding
// /boot/vmlinuz and /boot/initrd.img.
const (
	grubESP   = 1
	grubSlotA = 2
	grubSlotB = 3

	grubDir = "EFI/BOOT" // GRUB's prefix on the ESP
	grubEnv = grubDir + "/grubenv"
)

// grubModules are built into the GRUB image: there is no module directory
// on the ESP.
var grubModules = []string{
	"part_gpt", "fat", "normal", "configfile", "linux", "loadenv", "test",
	"echo", "search", "search_label", "reboot", "halt", "true",
}

// grubDisk is the disk of a GRUB machine.
type grubDisk struct {
	*disk
	init []byte // the slots' /init
}

// newGRUBDisk builds the disk with release good on both slots and the
// grubenv vars.
func newGRUBDisk(t *testing.T, dir, kernelImage string, vars bootenv.Vars) *grubDisk {
	t.Helper()
	efi := filepath.Join(dir, "BOOTX64.EFI")
	run(t, "grub-mkimage", append([]string{"-O", "x86_64-efi", "-p", "/" + grubDir, "-o", efi}, grubModules...)...)
	env := filepath.Join(dir, "grubenv")
	run(t, "grub-editenv", env, "create")
	run(t, "grub-editenv", append([]string{env, "set"}, assignments(vars)...)...)

	d := &grubDisk{
		disk: newDisk(t, filepath.Join(dir, "disk.img"),
			partition{"ESP", "ef00", 16},
			partition{"slotA", "8300", 32},
			partition{"slotB", "8300", 32}),
		init: slotInit(t),
	}
	d.formatFAT(t, grubESP, "ESP", 16, "EFI", grubDir)
	d.put(t, grubESP, efi, grubDir+"/BOOTX64.EFI")
	d.put(t, grubESP, filepath.Join("testdata", "grub.cfg"), grubDir+"/grub.cfg")
	d.put(t, grubESP, env, grubEnv)
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

// setEnv sets variables in grubenv on the ESP, as Lifeboat does from
// Linux: Load, change, Save with our backend (pkg/bootenv/grub). The
// host works on a copy that mtools takes out and puts back, where Linux
// would have the ESP mounted.
func (d *grubDisk) setEnv(t *testing.T, set bootenv.Vars) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "grubenv")
	d.get(t, grubESP, grubEnv, f)
	env := grub.Open(f, grub.GRUBWrites())
	vars, err := env.Load(t.Context())
	if err != nil {
		t.Fatalf("grubenv on the ESP: %v", err)
	}
	maps.Copy(vars, set)
	if err := env.Save(t.Context(), vars); err != nil {
		t.Fatalf("grubenv on the ESP: %v", err)
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

// TestGRUB boots OVMF and GRUB 2.06 with testdata/grub.cfg, the A/B
// try-counter scheme over grubenv, through an update's life: A runs; B is
// tried once and its counter reaches 0; B is marked good and keeps
// booting; a B that never marks itself good resets the machine and GRUB
// falls back to A; with no tries left anywhere GRUB resets the counters.
// Every boot is checked on the serial console (which slot's kernel ran,
// and what GRUB read and decided) and grubenv is read back from the disk
// after each run.
func TestGRUB(t *testing.T) {
	t.Parallel()
	ovmf := requireVM(t)
	requireTools(t, "grub-mkimage", "grub-editenv", "/usr/lib/grub/x86_64-efi/moddep.lst",
		"sgdisk", "mkfs.fat", "mcopy", "mmd", "go")
	k := getKernel(t)

	start := time.Now()
	d := newGRUBDisk(t, t.TempDir(), k.Image(), bootenv.Vars{
		"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3",
	})
	m := newMachine(t, ovmf, d.path)
	t.Logf("GRUB disk built in %v", time.Since(start).Round(time.Millisecond))

	steps := []struct {
		name    string
		release string       // installed on slot B first, if not ""
		set     bootenv.Vars // grubenv variables the host sets first
		resets  bool         // a guest reset restarts the machine
		slots   []string     // slots booted, in order (LIFEBOAT-SLOT)
		grub    []string     // what GRUB read and did (LIFEBOAT-GRUB)
		env     bootenv.Vars // grubenv afterwards
	}{
		{
			name:  "A boots",
			slots: []string{"A"},
			grub: []string{
				"BOOT_ORDER=A B BOOT_A_LEFT=3 BOOT_B_LEFT=3",
				"booting A, BOOT_A_LEFT=2 BOOT_B_LEFT=3",
			},
			env: bootenv.Vars{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "3"},
		},
		{
			// A marked itself good (its counter back to 3); B is installed
			// and tried once.
			name:    "B tried once",
			release: goodRelease,
			set:     bootenv.Vars{"BOOT_A_LEFT": "3", "BOOT_ORDER": "B A", "BOOT_B_LEFT": "1"},
			slots:   []string{"B"},
			grub: []string{
				"BOOT_ORDER=B A BOOT_A_LEFT=3 BOOT_B_LEFT=1",
				"booting B, BOOT_A_LEFT=3 BOOT_B_LEFT=0",
			},
			env: bootenv.Vars{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"},
		},
		{
			// B booted well and is marked good (from the host: the guest
			// has no tools to write grubenv): it keeps booting.
			name:  "B marked good keeps booting",
			set:   bootenv.Vars{"BOOT_B_LEFT": "3"},
			slots: []string{"B"},
			grub: []string{
				"BOOT_ORDER=B A BOOT_A_LEFT=3 BOOT_B_LEFT=3",
				"booting B, BOOT_A_LEFT=3 BOOT_B_LEFT=2",
			},
			env: bootenv.Vars{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "2"},
		},
		{
			// The next release on B never marks itself good and resets the
			// machine: GRUB finds B with no tries left and boots A.
			name:    "B not marked good, reset, A boots",
			release: badRelease,
			set:     bootenv.Vars{"BOOT_B_LEFT": "1"},
			resets:  true,
			slots:   []string{"B", "A"},
			grub: []string{
				"BOOT_ORDER=B A BOOT_A_LEFT=3 BOOT_B_LEFT=1",
				"booting B, BOOT_A_LEFT=3 BOOT_B_LEFT=0",
				"BOOT_ORDER=B A BOOT_A_LEFT=3 BOOT_B_LEFT=0",
				"booting A, BOOT_A_LEFT=2 BOOT_B_LEFT=0",
			},
			env: bootenv.Vars{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "0"},
		},
		{
			// Both slots out of tries: GRUB resets both counters and
			// restarts, then boots the first slot in BOOT_ORDER.
			name:   "no slot has tries left",
			set:    bootenv.Vars{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"},
			resets: true,
			slots:  []string{"A"},
			grub: []string{
				"BOOT_ORDER=A B BOOT_A_LEFT=0 BOOT_B_LEFT=0",
				"no slot has tries left; resetting the counters and restarting",
				"BOOT_ORDER=A B BOOT_A_LEFT=3 BOOT_B_LEFT=3",
				"booting A, BOOT_A_LEFT=2 BOOT_B_LEFT=3",
			},
			env: bootenv.Vars{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "3"},
		},
	}
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			if st.release != "" {
				d.install(t, grubSlotB, st.release)
			}
			if st.set != nil {
				d.setEnv(t, st.set)
			}
			// About 7 s a boot on an idle machine; generous for a loaded one.
			timeout := 2 * time.Minute
			if st.resets {
				timeout = 3 * time.Minute
			}
			con := m.boot(t, st.resets, timeout)
			if got := con.after("LIFEBOAT-SLOT:"); !cmp.Equal(got, st.slots) {
				t.Errorf("slots booted = %q, want %q", got, st.slots)
			}
			if d := cmp.Diff(st.grub, con.after("LIFEBOAT-GRUB:")); d != "" {
				t.Errorf("GRUB's console (-want +got):\n%s", d)
			}
			for _, cmdline := range con.after("LIFEBOAT-CMDLINE:") {
				if !strings.HasPrefix(cmdline, "BOOT_IMAGE=(hd0,gpt") {
					t.Errorf("kernel command line %q, want one GRUB made (BOOT_IMAGE=...)", cmdline)
				}
			}
			if d := cmp.Diff(st.env, d.env(t)); d != "" {
				t.Errorf("grubenv after the boot (-want +got):\n%s", d)
			}
		})
		if !ok {
			return // the next steps start from this one's state
		}
	}
}
