package tests

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/factory"
	"github.com/lifeboat-update/lifeboat/pkg/install"
	lbrelease "github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/pkg/store"
	"github.com/lifeboat-update/lifeboat/qemu"
	qdevice "github.com/lifeboat-update/lifeboat/qemu/device"
)

// The factory reset (issue 7's acceptance 4, and 7 for qemu-arm64): a
// device on the small layout runs release 2 in its only slot, its factory
// partition holds release 1 with the record of it, and its user left a
// file on the data partition. The reset, asked for by the board's reset
// trigger (a key held on the console at power-on) or by the command line,
// must bring release 1 back, verified, leave the data partition a clean
// ext4 holding only the trusted state with release 1 installed, and boot
// release 1; a power cut during it must resume it.

// userFile is the user's file on the data partition.
const userFile = "home/user/notes.txt"

var (
	slotV2Mu sync.Mutex
	slotV2   = map[string]string{} // board -> slot content with release 2
)

// slotV2Of installs release 2 into a file, as an update leaves a slot: the
// image, its padding and its verity tree.
func (f *recoveryFixture) slotV2Of(t *testing.T) string {
	t.Helper()
	slotV2Mu.Lock()
	defer slotV2Mu.Unlock()
	if p := slotV2[f.Board.Name]; p != "" {
		return p
	}
	dir := filepath.Join(workDir, "slot-v2-"+f.Board.Name)
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := lbrelease.Provision(durable.OS(state), f.Root); err != nil {
		t.Fatal(err)
	}
	st, err := store.NewLocal(filepath.Join(f.Repo, lbrelease.StoreDir))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "slot.img")
	c := &lbrelease.Client{State: durable.OS(state), Fetch: lbrelease.DirFetcher{Dir: f.Repo}, Board: f.Board.Name}
	res, err := install.Install(t.Context(), c, map[string]string{"rootfs": p}, install.Options{Stores: []store.Store{st}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != "2" {
		t.Fatalf("installed %s, want 2", res.Version)
	}
	slotV2[f.Board.Name] = p
	return p
}

// newFactoryDevice builds the small layout's disk: release 2 in slot A,
// good, with its index and the state recording it; release 1 in the
// factory partition with its record; the user's file on the data
// partition.
func (f *recoveryFixture) newFactoryDevice(t *testing.T) *qdevice.Disk {
	t.Helper()
	user := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(user, []byte("the user's notes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := f.Spec("small", filepath.Join(t.TempDir(), "disk.img"), bootenv.Vars{
		"LIFEBOAT_A_VERITY":      f.VerityArg("2"),
		"lifeboat_recovery_args": "lifeboat.onfail=poweroff",
	})
	s.Slots = map[string]string{"rootfs": f.slotV2Of(t)}
	s.Installed = "2"
	s.DataFiles = map[string]string{install.SlotIndexName("A", "rootfs"): f.IndexPath("2"), userFile: user}
	s.Factory = &qdevice.Factory{
		Record: factory.Record{Board: f.Board.Name, Version: "1", Image: f.Releases["1"].Images[0]},
		Image:  f.SlotV1,
		Index:  f.IndexPath("1"),
	}
	d, err := qdevice.Build(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var (
	// firstSaveRE is the line after the reset's first save: from then on
	// every boot comes back to the reset.
	firstSaveRE = regexp.MustCompile(`lifeboat: bootloader: recovery in mode factory-reset first`)
	resumingRE  = regexp.MustCompile(`lifeboat: factory reset: resuming`)
	// triggeredRE is the first line that shows the bootloader took the
	// reset key: U-Boot's script says so; GRUB says nothing, but the
	// kernel prints the command line of the entry it booted.
	triggeredRE = regexp.MustCompile(`LIFEBOAT reset trigger|Kernel command line: .*lifeboat\.mode=factory-reset`)
	// resetStepRE are the lines a reset prints between its first save and
	// its end: where a power cut may land.
	resetStepRE = regexp.MustCompile(`lifeboat: |LIFEBOAT-PHASE `)
	resetDoneRE = regexp.MustCompile(`lifeboat: factory reset done`)
)

// checkFactoryReset checks a device after a completed reset and the boot
// after it: the reset's result, release 1 booted from A, verified and
// marked good, the bootloader's environment, and the data partition.
func (f *recoveryFixture) checkFactoryReset(t *testing.T, d *qdevice.Disk, lines []string) {
	t.Helper()
	res := resultOf[factoryResult](t, lines)
	if !res.OK || res.Mode != "factory-reset" || res.Version != "1" || res.Slot != "A" {
		t.Fatalf("result %+v; console:\n%s", res, strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if strings.Contains(l, "LIFEBOAT-PHASE ") {
			t.Log(strings.TrimSpace(l))
		}
	}
	if got := strings.Join(demoLines(lines), "; "); !strings.Contains(got, "version=1 slot=A verity=ok") || !strings.Contains(got, "marked-good slot=A") {
		t.Errorf("A did not boot v1 and mark itself good after the reset: %s", got)
	}
	env := envOf(t, d)
	// The demo system marks A good with pkg/slot, which lists the factory
	// entry too: "A factory recovery".
	if !strings.HasPrefix(env[slot.OrderVar], "A ") || env[slot.LeftVar("A")] != "3" || env["LIFEBOAT_A_VERITY"] != f.VerityArg("1") || env["lifeboat_mode"] != "" {
		t.Errorf("environment after the reset: %v", env)
	}
	f.checkData(t, d)
}

// checkData checks the data partition: a clean ext4 without the user's
// file, holding the trusted state with release 1 installed and release
// 1's index kept for slot A.
func (f *recoveryFixture) checkData(t *testing.T, d *qdevice.Disk) {
	t.Helper()
	img := partitionFile(t, d, "data")
	if r := command(t, nil, "e2fsck", "-fn", img); r.code != 0 {
		t.Errorf("e2fsck -fn of the data partition: exit status %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if out, err := debugfsCat(img, userFile); err == nil {
		t.Errorf("the user's file survived the reset: %q", out)
	}
	var st struct{ Installed string }
	out, err := debugfsCat(img, qdevice.StateDir+"/state.json")
	if err == nil {
		err = json.Unmarshal([]byte(out), &st)
	}
	if err != nil || st.Installed != "1" {
		t.Errorf("state.json on the data partition: installed %q (%v), want 1", st.Installed, err)
	}
	if _, err := debugfsCat(img, qdevice.StateDir+"/root.json"); err != nil {
		t.Errorf("no trusted root: %v", err)
	}
	idx, err := debugfsCat(img, install.SlotIndexName("A", "rootfs"))
	want, _ := os.ReadFile(f.IndexPath("1"))
	if err != nil || idx != string(want) {
		t.Errorf("slot A's kept index is not release 1's (%d bytes, %v)", len(idx), err)
	}
}

// factoryResult is the reset's LIFEBOAT-RESULT line.
type factoryResult struct {
	OK      bool   `json:"ok"`
	Mode    string `json:"mode"`
	Check   string `json:"check"`
	Error   string `json:"error"`
	Version string `json:"version"`
	Slot    string `json:"slot"`
	Resumed bool   `json:"resumed"`
}

// start starts the machine spec describes, logging its console.
func (f *recoveryFixture) start(t *testing.T, ctx context.Context, spec qdevice.RunSpec) *qdevice.Machine {
	t.Helper()
	spec.Board = f.Board
	spec.Log = filepath.Join(t.TempDir(), "console.log")
	m, err := qdevice.Run(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.PowerCut() })
	return m
}

// bootWithResetKey boots the device through its firmware with the board's
// reset key held until the bootloader has taken it, and on through the
// reset, the reboot and release 1's boot, to the power-off. The key is let
// go at once: the keys typed meanwhile wait in QEMU's console input until
// something reads them, and U-Boot, after the reboot, would take one more
// Ctrl-C for a new reset.
func (f *recoveryFixture) bootWithResetKey(t *testing.T, d *qdevice.Disk, q qemu.Aarch64) []string {
	t.Helper()
	key, err := qdevice.HoldResetKey(f.Board)
	if err != nil {
		t.Fatal(err)
	}
	defer key.Release()
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	m := f.start(t, ctx, qdevice.RunSpec{Disk: d.Path, QEMU: q, Resets: true, Stdin: key})
	if _, err := m.WaitFor(ctx, triggeredRE); err != nil {
		t.Fatalf("%v; console:\n%s", err, strings.Join(m.Lines(), "\n"))
	}
	key.Release()
	err = m.Wait()
	lines := m.Lines()
	t.Logf("machine ran %s", time.Since(start).Round(100*time.Millisecond))
	if err != nil {
		t.Fatalf("machine: %v; console:\n%s", err, strings.Join(lines, "\n"))
	}
	// Nothing else asks for a reset: the environment names no mode.
	if res := resultOf[factoryResult](t, lines); res.Mode != "factory-reset" || res.Resumed {
		t.Errorf("result %+v: the reset key did not start a factory reset; console:\n%s", res, strings.Join(lines, "\n"))
	}
	n := 0
	for _, l := range lines {
		if resetDoneRE.MatchString(l) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the reset ran %d times, want once: the reboot after it booted the reset again; console:\n%s", n, strings.Join(lines, "\n"))
	}
	return lines
}

// resetSteps counts the lines a reset printed from its first save to its
// end: where the power cuts of factoryResetPowerCuts may land.
func resetSteps(lines []string) int {
	steps := 0
	in := false
	for _, l := range lines {
		switch {
		case firstSaveRE.MatchString(l):
			in = true
		case resetDoneRE.MatchString(l):
			in = false
		case in && resetStepRE.MatchString(l):
			steps++
		}
	}
	return steps
}

// factoryResetPowerCuts is a reset from the command line (the recovery
// kernel booted directly, on the board's console) cut 5 times at random
// points among its steps console lines (resetSteps; the seed is logged):
// every boot after a cut goes through the board's firmware and
// bootloader, whose environment must bring it back into the reset, which
// resumes; the last one runs to the end and the device is checked as
// after any reset. q is the QEMU of an arm64 board (zero on x86_64).
func (f *recoveryFixture) factoryResetPowerCuts(t *testing.T, q qemu.Aarch64, steps int) {
	t.Helper()
	d := f.newFactoryDevice(t)
	seed := time.Now().UnixNano()
	t.Logf("power-cut seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	direct := f.direct(d, "lifeboat.mode=factory-reset lifeboat.layout=small")
	direct.Net, direct.QEMU = nil, q
	spec := direct
	for cuts, tries := 0, 0; cuts < 5; tries++ {
		if tries == 8 {
			t.Fatalf("only %d of 8 power cuts landed during the reset", cuts)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		m := f.start(t, ctx, spec)
		re := firstSaveRE
		if spec.Kernel == "" {
			re = resumingRE // through the firmware: the bootloader's choice
		}
		if _, err := m.WaitFor(ctx, re); err != nil {
			cancel()
			t.Fatalf("cut %d: %v; console:\n%s", cuts+1, err, strings.Join(m.Lines(), "\n"))
		}
		// The reset's last lines come within a second of its end.
		k := rng.IntN(max(steps-4, 1))
		for range k {
			if _, err := m.WaitFor(ctx, resetStepRE); err != nil {
				cancel()
				t.Fatalf("cut %d: %v; console:\n%s", cuts+1, err, strings.Join(m.Lines(), "\n"))
			}
		}
		// And a random moment within the step that line began.
		wait := time.Duration(rng.Int64N(int64(1500 * time.Millisecond)))
		select {
		case <-time.After(wait):
		case <-m.Done():
		}
		m.PowerCut()
		cancel()
		lines := m.Lines()
		if containsLine(lines, "lifeboat: factory reset done") {
			t.Logf("the cut %v after line %d came after the reset's end: it does not count; a new reset from the command line", wait.Round(time.Millisecond), k)
			spec = direct
			continue
		}
		cuts++
		t.Logf("cut %d: %v after line %d: %s", cuts, wait.Round(time.Millisecond), k, strings.TrimSpace(lines[len(lines)-1]))
		// Every later boot goes through the firmware and the bootloader.
		spec = qdevice.RunSpec{Disk: d.Path, QEMU: q}
	}
	spec.Resets = true
	lines := f.boot(t, spec)
	if !containsLine(lines, "lifeboat: factory reset: resuming") {
		t.Errorf("the last boot did not resume the reset; console:\n%s", strings.Join(lines, "\n"))
	}
	if res := resultOf[factoryResult](t, lines); !res.Resumed {
		t.Errorf("result %+v, want resumed", res)
	}
	f.checkFactoryReset(t, d, lines)
}

// TestRecoveryFactoryReset is acceptance 4 on qemu-x86_64: the reset from
// the button (r held on the console: GRUB's hotkey), from the command
// line, and 5 power cuts at random points of a reset, each resumed.
func TestRecoveryFactoryReset(t *testing.T) {
	f := needRecovery(t)
	requireTools(t, "e2fsck", "debugfs")

	// The lines a reset prints from its first save to its end: where the
	// power cuts below may land.
	steps := 0
	t.Run("button", func(t *testing.T) {
		d := f.newFactoryDevice(t)
		lines := f.bootWithResetKey(t, d, qemu.Aarch64{})
		f.checkFactoryReset(t, d, lines)
		steps = resetSteps(lines)
		t.Logf("%d console lines from the first save to the end of the reset", steps)
	})
	if t.Failed() {
		return
	}
	t.Run("command line, power cuts", func(t *testing.T) {
		f.factoryResetPowerCuts(t, qemu.Aarch64{}, steps)
	})
}
