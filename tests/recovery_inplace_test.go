package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/demo"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/inplace"
	lbrelease "github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
	"github.com/lifeboat-update/lifeboat/qemu"
	qdevice "github.com/lifeboat-update/lifeboat/qemu/device"
)

// The in-place update (docs/recovery.md, "In place") on a real machine:
// the board's small layout, one rootfs slot (A) holding release 1 with
// its index kept on the data partition, rewritten in place with release 2
// by the recovery ramdisk.

// newSmallDevice builds a disk of the small layout with v1 in A, good,
// its index kept, and env over scenario.Spec's defaults.
func (f *recoveryFixture) newSmallDevice(t *testing.T, env bootenv.Vars) *qdevice.Disk {
	t.Helper()
	d, err := qdevice.Build(t.Context(), f.Spec("small", filepath.Join(t.TempDir(), "disk.img"), env))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// directSmall boots the recovery ramdisk of a small-layout device straight
// from the kernel, with the command line GRUB's recovery entry gives it
// and the entry's extra arguments.
func (f *recoveryFixture) directSmall(d *qdevice.Disk, net *qemu.NetUser, extra string) qdevice.RunSpec {
	return qdevice.RunSpec{
		Board: f.Board, Disk: d.Path, Kernel: f.Kernel, Initrd: f.Ramdisk, Net: net,
		Append: f.Board.BaseCmdline() + " lifeboat.mode=update lifeboat.layout=small " + extra,
	}
}

// inplacePlan is the ramdisk's plan line of an in-place update.
type inplacePlan struct {
	inPlace, moved, zero, fetched int
	fetchBytes                    int64
	stashed                       int
	peakRAM                       int64
	spilled                       int
	spillBytes                    int64
}

var planRE = regexp.MustCompile(`lifeboat: plan \S+ \S+: (\d+) in place, (\d+) moved, (\d+) zero, (\d+) fetched \((\d+) bytes\); (\d+) stashed \(peak (\d+) bytes of RAM\), (\d+) spilled \((\d+) bytes\)`)

// planOf returns the last plan line on the console.
func planOf(t *testing.T, lines []string) inplacePlan {
	t.Helper()
	for i := len(lines) - 1; i >= 0; i-- {
		m := planRE.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		var n [9]int64
		for j := range n {
			v, err := strconv.ParseInt(m[j+1], 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", lines[i], err)
			}
			n[j] = v
		}
		return inplacePlan{int(n[0]), int(n[1]), int(n[2]), int(n[3]), n[4], int(n[5]), n[6], int(n[7]), n[8]}
	}
	t.Fatalf("no plan line on the console:\n%s", strings.Join(lines, "\n"))
	return inplacePlan{}
}

// checkInPlaceDone checks that the console shows the update to v2 in A
// and v2 verifying itself after it, and that the environment tries A with
// v2's verity argument.
func (f *recoveryFixture) checkInPlaceDone(t *testing.T, d *qdevice.Disk, lines []string) ramdiskResult {
	t.Helper()
	res := resultOf[ramdiskResult](t, lines)
	if !res.OK || res.Version != "2" || res.Slot != "A" || res.Seed != "A" {
		t.Fatalf("result %+v; console:\n%s", res, strings.Join(lines, "\n"))
	}
	if got := strings.Join(demoLines(lines), "; "); !strings.Contains(got, "version=2 slot=A verity=ok") || !strings.Contains(got, "marked-good slot=A") {
		t.Errorf("v2 did not boot from A and mark itself good: %s", got)
	}
	env := envOf(t, d)
	if env[slot.LeftVar("A")] != "3" || !strings.HasPrefix(env[slot.OrderVar], "A") || env["LIFEBOAT_A_VERITY"] != f.VerityArg("2") {
		t.Errorf("environment after the update: %v", env)
	}
	return res
}

// TestRecoveryInPlace is issue 7's acceptance 1: the recovery entry,
// chosen by OVMF and GRUB, updates the small layout's only slot in place
// from v1 to v2 over the network, seeded by v1: only the chunks v2 has
// beyond v1 cross the network, and after kexec v2 verifies itself with
// dm-verity and marks A good.
func TestRecoveryInPlace(t *testing.T) {
	f := needRecovery(t)
	t.Parallel()
	srv := serveRepo(t, f.Repo)
	d := f.newSmallDevice(t, bootenv.Vars{
		slot.OrderVar:            "recovery A",
		"lifeboat_recovery_args": "lifeboat.source=net lifeboat.onfail=poweroff",
	})
	lines := f.boot(t, qdevice.RunSpec{Disk: d.Path, Net: &qemu.NetUser{Bootfile: srv.url}})
	res := f.checkInPlaceDone(t, d, lines)
	need := f.needBytes(t, "2", "1")
	if res.FetchedBytes != need || srv.chunkBytes.Load() != need {
		t.Errorf("fetched %d bytes (the server sent %d), want %d: the chunks v2 has beyond v1", res.FetchedBytes, srv.chunkBytes.Load(), need)
	}
	t.Logf("plan %+v; fetched %d bytes for a %d-byte image; kernel uptime %.1f s when the flow started; peak RSS %d bytes; phases %+v",
		planOf(t, lines), res.FetchedBytes, res.ImageBytes, res.UptimeAtStart, res.PeakRSSBytes, res.Phases)
}

// The power-cut test's knobs, from the environment: `make soak CUTS=N`
// sets the first.
const (
	cutsVar    = "LIFEBOAT_CUTS"     // how many cuts [12]
	cutSeedVar = "LIFEBOAT_CUT_SEED" // the seed of the cut times [from the clock, logged]
)

// The power-cut test's RAM budget and commit interval for the ramdisk
// (lifeboat.inplace_ram, lifeboat.inplace_commit): the commit interval
// small, so that what a cut loses is small against what the update
// fetches.
const (
	cutRAM    = 32 << 20
	cutCommit = 256 << 10
)

// cutArgs are the recovery entry's arguments in the power-cut test.
var cutArgs = fmt.Sprintf("lifeboat.source=net lifeboat.onfail=poweroff lifeboat.inplace_ram=%dM lifeboat.inplace_commit=%dK", cutRAM>>20, cutCommit>>10)

func envInt(t *testing.T, name string, def uint64) uint64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

// storedSize is the size of chunk id's file in the repository.
func (f *recoveryFixture) storedSize(t *testing.T, id chunk.ID) int64 {
	t.Helper()
	s := id.String()
	fi, err := os.Stat(filepath.Join(f.Repo, lbrelease.StoreDir, s[:4], s+".cacnk"))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// cutLoss is the most chunk bytes, as stored, that one power cut can make
// the in-place update from seed to v fetch again (pkg/inplace's doc,
// "Journal"): the fetches of one commit window, since a resumed run redoes
// the ops after the last commit recorded and fetches again those whose
// write the cut lost; every chunk the plan stashes in RAM, lost with the
// power, whose moves fall back to the store when the old copy is gone; and
// one moved chunk, a move over its own source torn by the cut.
func (f *recoveryFixture) cutLoss(t *testing.T, v, seed string, opt inplace.PlanOptions) (int64, *inplace.Plan) {
	t.Helper()
	read := func(v string) *chunk.Index {
		idx, err := chunk.ReadIndexFile(f.IndexPath(v))
		if err != nil {
			t.Fatal(err)
		}
		return idx
	}
	p, err := inplace.NewPlan(read(seed), read(v), opt)
	if err != nil {
		t.Fatal(err)
	}
	var window, worst, stashed, move int64
	for _, op := range p.Ops {
		if op.Commit {
			window = 0
		}
		switch op.Kind {
		case inplace.OpFetch:
			window += f.storedSize(t, op.ID)
			worst = max(worst, window)
		case inplace.OpStash:
			stashed += f.storedSize(t, op.ID)
		case inplace.OpMove:
			move = max(move, f.storedSize(t, op.ID))
		}
	}
	return worst + stashed + move, p
}

// grubChoice is the entry boards/qemu-x86_64/grub.cfg boots with env: the
// first of BOOT_ORDER that is recovery or a slot with tries left, else
// recovery.
func grubChoice(env bootenv.Vars) slot.Name {
	for _, s := range strings.Fields(env[slot.OrderVar]) {
		if n := slot.Name(s); n.ReadOnly() {
			return n
		}
		if n, err := strconv.Atoi(env[slot.LeftVar(slot.Name(s))]); err == nil && n > 0 {
			return slot.Name(s)
		}
	}
	return slot.Recovery
}

var (
	// A boot that went wrong: a panic, a GRUB error, a failed update, a
	// system that did not verify itself, or GRUB booting a slot it should
	// not have.
	badBootRE = regexp.MustCompile(`Kernel panic|^error: |lifeboat: FAILED|LIFEBOAT-DEMO FAILED|has no kernel: falling back`)
	// GRUB's usual complaint on a serial console, not a failure.
	grubVideo = "error: no suitable video mode found."
	// The lines a cut is timed from: the phases, and the in-place
	// update's progress (a percentage of its ops, "done" after its check).
	cutAnchorRE   = regexp.MustCompile(`LIFEBOAT-PHASE name=(network|install|kexec-load) |in-place update: +(\d+)%|in-place update: (done)`)
	demoVersionRE = regexp.MustCompile(`LIFEBOAT-DEMO version=`)
)

// TestRecoveryInPlacePowerCut is issue 7's acceptance 2: the in-place
// update of TestRecoveryInPlace, with the power cut LIFEBOAT_CUTS times
// (20 by default; `make soak CUTS=N`), on two devices at once (cutLane),
// one per core. The seed of the cut times is logged; LIFEBOAT_CUT_SEED
// replays them.
func TestRecoveryInPlacePowerCut(t *testing.T) {
	f := needRecovery(t)
	t.Parallel()
	cuts := int(envInt(t, cutsVar, 12))
	if cuts == 0 {
		t.Fatalf("%s=0: want at least one cut", cutsVar)
	}
	seed := envInt(t, cutSeedVar, uint64(time.Now().UnixNano()))
	t.Logf("%d cuts, %s=%d", cuts, cutSeedVar, seed)
	need := f.needBytes(t, "2", "1")
	loss, plan := f.cutLoss(t, "2", "1", inplace.PlanOptions{RAMBudget: cutRAM, CommitBytes: cutCommit})
	if loss >= need/2 {
		t.Fatalf("one cut may lose %d bytes of fetches, against %d to fetch: the commit interval is too large for the test to tell", loss, need)
	}
	t.Logf("plan: %d ops; a cut may make the update fetch again up to %d bytes, of %d it needs", len(plan.Ops), loss, need)
	// The direct boots start the same ramdisk uncompressed: under TCG the
	// kernel takes seconds to unpack the xz, at every cut.
	cpio := filepath.Join(t.TempDir(), "ramdisk.cpio")
	out, err := exec.Command("sh", "-c", `xz -dc "$1" > "$2"`, "xz", f.Ramdisk, cpio).CombinedOutput()
	if err != nil {
		t.Fatalf("xz -dc %s: %v\n%s", f.Ramdisk, err, out)
	}
	const lanes = 2
	for lane := range lanes {
		n := cuts / lanes
		if lane < cuts%lanes {
			n++
		}
		if n == 0 {
			continue
		}
		t.Run(fmt.Sprintf("lane%d", lane), func(t *testing.T) {
			t.Parallel()
			f.cutLane(t, n, seed, uint64(lane), need, loss, cpio)
		})
	}
}

// cutLane cuts the power of a small-layout device n times while it
// updates in place, at the points nextCut chooses: most while the slot is
// rewritten, timed from the update's progress lines.
//
// After every cut the next boot must start the recovery ramdisk or a
// system that verified itself, and never panic, fail in GRUB or boot an
// unverified slot. That boot goes through OVMF and GRUB when the
// environment says GRUB boots a slot, and every fourth time; otherwise
// (recovery first, while the slot is rewritten) it starts the ramdisk
// directly, with the recovery entry's command line, from cpio, the same
// ramdisk uncompressed, to keep the cycles short. When an update
// completes (v2 boots), the next cuts go to a new device with v1; each
// device must end with v2 in A, verified, byte for byte.
//
// Fetches: each run may fetch again, of the chunks the device's earlier
// runs fetched, at most loss bytes, what one cut can lose (cutLoss: one
// commit window, with the commit interval set small by
// lifeboat.inplace_commit), and a device's runs together at most need
// plus loss per cut. A resumed run that fetched again what an earlier run
// had verified and recorded in its journal would exceed it.
func (f *recoveryFixture) cutLane(t *testing.T, n int, seed, lane uint64, need, loss int64, cpio string) {
	rng := rand.New(rand.NewPCG(seed, lane))
	srv := serveRepo(t, f.Repo)
	env := bootenv.Vars{slot.OrderVar: "recovery A", "lifeboat_recovery_args": cutArgs}
	net := &qemu.NetUser{Bootfile: srv.url}
	start := time.Now()
	var (
		d                           *qdevice.Disk
		cuts, devCuts, boots        int
		firmware, direct, completed int
		devRun0                     int64 // the server's first run of this device
	)
	newDevice := func() {
		d = f.newSmallDevice(t, env)
		devCuts, devRun0 = 0, int64(boots+1)
	}
	newDevice()
	for {
		boots++
		srv.run.Store(int64(boots))
		choice := grubChoice(envOf(t, d))
		spec := qdevice.RunSpec{Board: f.Board, Disk: d.Path, Net: net}
		how := "OVMF and GRUB"
		if choice == slot.Recovery && boots%4 != 0 && cuts < n {
			spec = f.directSmall(d, net, cutArgs)
			spec.Initrd = cpio
			how = "the ramdisk directly"
			direct++
		} else {
			firmware++
		}
		c := nextCut(rng, cuts, n, lane == 0)
		ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
		bootStart := time.Now()
		m, err := qdevice.Run(ctx, spec)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		cut := c.what != "" && c.wait(ctx, t, m)
		err = m.Wait()
		cancel()
		lines := m.Lines()
		if err != nil {
			t.Fatalf("boot %d: machine: %v; console:\n%s", boots, err, strings.Join(lines, "\n"))
		}
		// What this boot started.
		ramdisk := containsLine(lines, "lifeboat: recovery ramdisk for board")
		verified := containsLine(lines, "LIFEBOAT-DEMO version=2 slot=A verity=ok")
		var bad []string
		for _, l := range lines {
			if badBootRE.MatchString(l) && strings.TrimSpace(l) != grubVideo || demoVersionRE.MatchString(l) && !strings.Contains(l, "verity=ok") {
				bad = append(bad, l)
			}
		}
		if len(bad) > 0 || !ramdisk && !verified {
			t.Fatalf("boot %d (%s, after %d cuts, %s=%d): %q; want the ramdisk or v2 verified; console:\n%s", boots, how, cuts, cutSeedVar, seed, bad, strings.Join(lines, "\n"))
		}
		took := time.Since(bootStart).Round(100 * time.Millisecond)
		if cut {
			cuts++
			devCuts++
			t.Logf("boot %d (%s, %s, %s): cut %d %s", boots, how, choice, took, cuts, c)
			continue
		}
		// Not cut: the update ran to its end, or it had before.
		if !verified {
			t.Fatalf("boot %d (%s) was not cut and v2 did not verify itself; console:\n%s", boots, how, strings.Join(lines, "\n"))
		}
		if ramdisk {
			if res := resultOf[ramdiskResult](t, lines); !res.OK || res.Version != "2" || res.Slot != "A" {
				t.Fatalf("boot %d: result %+v", boots, res)
			}
		}
		t.Logf("boot %d (%s, %s, %s): not cut; v2 verified itself", boots, how, choice, took)
		if e := envOf(t, d); e[slot.LeftVar("A")] != "3" || !strings.HasPrefix(e[slot.OrderVar], "A") || e["LIFEBOAT_A_VERITY"] != f.VerityArg("2") {
			t.Errorf("environment after the update: %v", e)
		}
		f.checkSlot(t, d, "rootfs", "2")
		checkFetches(t, srv.chunksSent(), devRun0, devCuts, need, loss)
		completed++
		if cuts >= n {
			break
		}
		newDevice()
	}
	t.Logf("%d cuts survived in %d boots (%d through OVMF and GRUB, %d of the ramdisk directly), %d updates completed, in %s",
		cuts, boots, firmware, direct, completed, time.Since(start).Round(time.Second))
}

func randDuration(rng *rand.Rand, upTo time.Duration) time.Duration {
	return time.Duration(rng.Int64N(int64(upTo)))
}

// checkFetches checks the chunk requests of one device's runs, those
// from run first on, after cuts cuts.
func checkFetches(t *testing.T, sent []chunkSent, first int64, cuts int, need, loss int64) {
	t.Helper()
	seen := map[string]bool{}
	var total, again int64
	perRun := map[int64]int64{}
	for _, c := range sent {
		if c.run < first {
			continue
		}
		total += c.bytes
		if seen[c.path] {
			perRun[c.run] += c.bytes
			again += c.bytes
		}
		seen[c.path] = true
	}
	for run, n := range perRun {
		if n > loss {
			t.Errorf("run %d fetched again %d bytes of chunks earlier runs fetched, more than one cut can lose (%d)", run, n, loss)
		}
	}
	if limit := need + int64(cuts)*loss; total > limit {
		t.Errorf("the server sent %d chunk bytes over %d cuts, more than the %d needed plus %d per cut", total, cuts, need, loss)
	}
	t.Logf("device updated after %d cuts: the server sent %d chunk bytes, %d needed; %d fetched again", cuts, total, need, again)
}

// cutPoint is when to cut the power during a boot: delay after the
// console line that matches cutAnchorRE and at.
type cutPoint struct {
	what  string // "" for no cut
	at    func(phase, pct string) bool
	delay time.Duration
}

func (c cutPoint) String() string {
	return fmt.Sprintf("%s, %s after its line", c.what, c.delay.Round(time.Millisecond))
}

// nextCut chooses the cut of a boot after done of n cuts: none once all
// are done; the last, if after, after the update, while v2 boots (kexec),
// which costs a boot through GRUB after it; else one
// in ten before the slot is written (as the ramdisk plans), and the rest
// while it is: two in three after the 75% line or the first progress line
// of a resumed run (the chunks fetched and zeroed come last in a plan),
// the others after a random progress line, as it verifies what is in
// place, or its final check.
func nextCut(rng *rand.Rand, done, n int, after bool) cutPoint {
	switch r := rng.IntN(30); {
	case done >= n:
		return cutPoint{}
	case after && done == n-1 && n >= 3:
		return cutPoint{"after the update, while v2 boots", func(phase, _ string) bool { return phase == "kexec-load" }, randDuration(rng, 8*time.Second)}
	case r < 3:
		return cutPoint{"before the slot is written", func(phase, _ string) bool { return phase == "network" }, randDuration(rng, 500*time.Millisecond)}
	case r < 21:
		return cutPoint{"while chunks are fetched and written", func(phase, pct string) bool {
			n, err := strconv.Atoi(pct)
			return err == nil && n >= 75 || pct == "done" || phase == "install"
		}, randDuration(rng, 2*time.Second)}
	default:
		k := rng.IntN(6)
		return cutPoint{fmt.Sprintf("while the slot is verified (progress line %d)", k+1), func(phase, pct string) bool {
			if pct != "" {
				k--
			}
			return k < 0 || phase == "install"
		}, randDuration(rng, 1500*time.Millisecond)}
	}
}

// wait waits for c's line on m's console, then c.delay, and cuts the
// power. It reports whether it cut: not when the machine stopped first.
func (c cutPoint) wait(ctx context.Context, t *testing.T, m *qdevice.Machine) bool {
	t.Helper()
	for {
		l, err := m.WaitFor(ctx, cutAnchorRE)
		if errors.Is(err, qdevice.ErrExited) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		g := cutAnchorRE.FindStringSubmatch(l)
		if c.at(g[1], g[2]+g[3]) {
			break
		}
	}
	select {
	case <-time.After(c.delay):
	case <-m.Done():
		return false
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if err := m.PowerCut(); err != nil {
		t.Fatal(err)
	}
	return true
}

// checkSlot checks that the partition label of d holds release v's image.
func (f *recoveryFixture) checkSlot(t *testing.T, d *qdevice.Disk, label, v string) {
	t.Helper()
	want, err := os.ReadFile(f.Images[v])
	if err != nil {
		t.Fatal(err)
	}
	off, _, err := d.Partition(label)
	if err != nil {
		t.Fatal(err)
	}
	disk, err := os.Open(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	got := make([]byte, len(want))
	if _, err := disk.ReadAt(got, off); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s does not hold release %s's image", label, v)
	}
}

// TestRecoveryInPlaceMoved is issue 7's acceptance 3: release 3 holds
// v1's files laid out in another order (demo.Options.Reordered), so that
// most of v1's chunks must move, in cycles, and the recovery entry gives
// the ramdisk a RAM budget (lifeboat.inplace_ram) too small to stash them
// all: the plan on the console moves most chunks and spills, keeps at
// most the budget in RAM, and is the plan pkg/inplace makes on the host
// for the same indexes and budget; only the chunks release 3 has beyond
// v1 are fetched; the slot then holds release 3 byte for byte, and after
// kexec release 3 verifies itself with dm-verity.
func TestRecoveryInPlaceMoved(t *testing.T) {
	f := needRecovery(t)
	t.Parallel()
	dir := t.TempDir()
	sc, err := f.WithRelease(t.Context(), dir, "3", demo.Options{Reordered: true})
	if err != nil {
		t.Fatal(err)
	}
	g := &recoveryFixture{sc}
	const budget = 128 << 10
	read := func(v string) *chunk.Index {
		idx, err := chunk.ReadIndexFile(g.IndexPath(v))
		if err != nil {
			t.Fatal(err)
		}
		return idx
	}
	want, err := inplace.NewPlan(read("1"), read("3"), inplace.PlanOptions{RAMBudget: budget, CommitBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if want.Moved <= want.InPlace || want.Spilled == 0 {
		t.Fatalf("pkg/inplace's plan for release 3 moves %d chunks, leaves %d in place and spills %d: the test needs most moved and some spilled", want.Moved, want.InPlace, want.Spilled)
	}
	srv := serveRepo(t, g.Repo)
	d := g.newSmallDevice(t, nil)
	lines := g.boot(t, g.directSmall(d, &qemu.NetUser{Bootfile: srv.url}, fmt.Sprintf("lifeboat.source=net lifeboat.onfail=poweroff lifeboat.inplace_ram=%dK", budget>>10)))
	res := resultOf[ramdiskResult](t, lines)
	if !res.OK || res.Version != "3" || res.Slot != "A" {
		t.Fatalf("result %+v; console:\n%s", res, strings.Join(lines, "\n"))
	}
	p := planOf(t, lines)
	t.Logf("plan %+v; phases %+v", p, res.Phases)
	if p.moved <= p.inPlace || p.spilled == 0 || p.peakRAM > budget {
		t.Errorf("plan %+v: want more chunks moved than in place, some spilled, and at most %d bytes of RAM", p, budget)
	}
	if p.inPlace != want.InPlace || p.moved != want.Moved || p.stashed != want.Stashed || p.spilled != want.Spilled || p.peakRAM != want.PeakRAM {
		t.Errorf("the ramdisk's plan %+v is not pkg/inplace's for a %d-byte budget: %d in place, %d moved, %d stashed, %d spilled, peak %d",
			p, budget, want.InPlace, want.Moved, want.Stashed, want.Spilled, want.PeakRAM)
	}
	need := g.needBytes(t, "3", "1")
	if res.FetchedBytes != need || srv.chunkBytes.Load() != need {
		t.Errorf("fetched %d bytes (the server sent %d), want %d: the chunks release 3 has beyond v1", res.FetchedBytes, srv.chunkBytes.Load(), need)
	}
	if got := strings.Join(demoLines(lines), "; "); !strings.Contains(got, "version=3 slot=A verity=ok") || !strings.Contains(got, "marked-good slot=A") {
		t.Errorf("release 3 did not boot from A and mark itself good: %s", got)
	}
	g.checkSlot(t, d, "rootfs", "3")
	for _, l := range lines {
		if strings.Contains(l, "lifeboat: wrote 3") || strings.Contains(l, "LIFEBOAT-PHASE name=install") {
			t.Log(strings.TrimSpace(l))
		}
	}
}
