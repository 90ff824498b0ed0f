package inplace

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/assemble"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

const journalName = "inplace.journal"

// rig is a device holding the old release, a spill area and a data
// partition for the journal, all on one power supply.
type rig struct {
	pw    *power
	dev   *crashDisk
	spill *crashDisk
	fs    *durable.Crash
}

func newRig(sc *scenario, spillSize int64) *rig {
	fs := durable.NewCrash()
	pw := &power{left: -1, fs: fs}
	data := make([]byte, sc.devSize())
	copy(data, sc.oldImg)
	return &rig{pw: pw, dev: &crashDisk{pw: pw, data: data}, spill: &crashDisk{pw: pw, data: make([]byte, spillSize)}, fs: fs}
}

func (r *rig) journal() Journal { return Journal{FS: powerFS{r.fs, r.pw}, Name: journalName} }

func (r *rig) apply(p *Plan, st store.Store) (*Stats, error) {
	return Apply(context.Background(), p, r.dev, Sources{Stores: []store.Store{st}}, r.journal(), r.spill, Options{})
}

// reboot cuts the power (if it is on) and returns the rig as it is at
// power-on; with rng, unflushed device writes survive at random.
func (r *rig) reboot(rng *rand.Rand) *rig {
	fs := r.fs.Reboot()
	pw := &power{left: -1, fs: fs}
	return &rig{pw: pw, dev: r.dev.reboot(pw, rng), spill: r.spill.reboot(pw, rng), fs: fs}
}

func TestSwap(t *testing.T) {
	sc := &scenario{content: make(map[chunk.ID][]byte)}
	a, b, c := sc.add(bytes.Repeat([]byte{'a'}, 100)), sc.add(bytes.Repeat([]byte{'b'}, 100)), sc.add(bytes.Repeat([]byte{'c'}, 100))
	sc.old, sc.oldImg = sc.index([]chunk.ID{a, b, c})
	sc.new, sc.newImg = sc.index([]chunk.ID{b, a, c})
	for _, tt := range []struct {
		budget              int64
		stashed, spilled    int
		peakRAM, spillBytes int64
	}{
		{budget: 0, spilled: 1, spillBytes: 100},
		{budget: 99, spilled: 1, spillBytes: 100},
		{budget: 100, stashed: 1, peakRAM: 100},
	} {
		p, err := NewPlan(sc.old, sc.new, PlanOptions{RAMBudget: tt.budget})
		if err != nil {
			t.Fatal(err)
		}
		if p.Stashed != tt.stashed || p.Spilled != tt.spilled || p.PeakRAM != tt.peakRAM || p.SpillSize != tt.spillBytes || p.InPlace != 1 || p.Moved != 2 {
			t.Errorf("NewPlan(budget %d) = %+v, want %d stashed, %d spilled, peak %d, spill %d, 1 in place, 2 moved",
				tt.budget, p, tt.stashed, tt.spilled, tt.peakRAM, tt.spillBytes)
		}
		r := newRig(sc, p.SpillSize)
		st := sc.store()
		s, err := r.apply(p, st)
		if err != nil {
			t.Fatalf("Apply(budget %d) = %v", tt.budget, err)
		}
		if got := r.dev.data; !bytes.Equal(got, sc.newImg) {
			t.Errorf("Apply(budget %d) wrote %q, want %q", tt.budget, got, sc.newImg)
		}
		if st.total() != 0 || s.Fallbacks != 0 || s.PeakRAM != tt.peakRAM {
			t.Errorf("Apply(budget %d) = %+v with %d fetches, want no fetch, no fallback, peak RAM %d", tt.budget, s, st.total(), tt.peakRAM)
		}
	}
}

func TestApply(t *testing.T) {
	for _, tt := range []struct {
		name   string
		seed   uint64
		n      int
		fixed  bool
		budget int64
	}{
		{"fixed-size/no-ram", 1, 200, true, 0},
		{"fixed-size/small-ram", 2, 200, true, 4 << 10},
		{"fixed-size/big-ram", 3, 200, true, 1 << 20},
		{"varied/no-ram", 4, 300, false, 0},
		{"varied/small-ram", 5, 300, false, 3 << 10},
		{"varied/big-ram", 6, 300, false, 1 << 20},
		{"tiny", 7, 3, false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(tt.seed, 0))
			sc := genScenario(rng, tt.n, tt.fixed)
			p, err := NewPlan(sc.old, sc.new, PlanOptions{RAMBudget: tt.budget, CommitBytes: 16 << 10})
			if err != nil {
				t.Fatal(err)
			}
			content := func(id chunk.ID) []byte { return sc.content[id] }
			if err := simulate(p, sc.old, sc.new, sc.oldImg, sc.newImg, content, tt.budget); err != nil {
				t.Fatalf("simulate(NewPlan) = %v", err)
			}
			st := sc.store()
			r := newRig(sc, p.SpillSize)
			s, err := r.apply(p, st)
			if err != nil {
				t.Fatalf("Apply = %v", err)
			}
			if !bytes.Equal(r.dev.data[:len(sc.newImg)], sc.newImg) {
				t.Fatalf("Apply: the device does not hold the new release")
			}
			need, needBytes := sc.needed()
			if s.Fetched.Bytes != needBytes || s.Fetched.Chunks != len(need) {
				t.Errorf("Apply fetched %d chunks, %d bytes, want %d, %d", s.Fetched.Chunks, s.Fetched.Bytes, len(need), needBytes)
			}
			for id, n := range st.gets {
				if n != 1 || !need[id] {
					t.Errorf("chunk %s fetched %d times (needed: %v), want once if needed", id, n, need[id])
				}
			}
			if s.PeakRAM > tt.budget || s.PeakRAM != p.PeakRAM {
				t.Errorf("Apply peak RAM %d, plan %d, budget %d", s.PeakRAM, p.PeakRAM, tt.budget)
			}
			if s.Fallbacks != 0 || s.Repaired != 0 {
				t.Errorf("Apply = %d fallbacks, %d repaired, want 0", s.Fallbacks, s.Repaired)
			}
			if tt.budget == 0 && p.Stashed+p.Spilled > 0 && s.Spilled.Chunks == 0 {
				t.Errorf("Apply with no RAM spilled nothing")
			}
			if tt.n < 50 {
				return
			}
			if p.Stashed+p.Spilled == 0 {
				t.Errorf("the scenario made no cycle: not a test of stashing")
			}
			if s.Moved.Chunks < len(sc.new.Chunks)/2 {
				t.Errorf("Apply moved %d of %d chunks: not a test of moving", s.Moved.Chunks, len(sc.new.Chunks))
			}
			t.Logf("%d chunks: %d in place, %d moved (%d stashed in RAM, %d spilled), %d fetched; peak RAM %d of %d; %d commits",
				len(sc.new.Chunks), s.InPlace.Chunks, s.Moved.Chunks, s.Stashed.Chunks, s.Spilled.Chunks, s.Fetched.Chunks, s.PeakRAM, tt.budget, s.Commits)

			// Applying again finds the journal done and only checks.
			st2 := sc.store()
			s2, err := r.apply(p, st2)
			if err != nil || s2.Skipped != len(p.Ops) || st2.total() != 0 || s2.Repaired != 0 {
				t.Errorf("Apply again = %+v, %v, want every op skipped and no fetch", s2, err)
			}
		})
	}
}

// TestPowerCut cuts the power after every step (device and spill writes and
// flushes, journal file operations) of an update, or a few hundred random
// steps, then runs it again from the journal.
func TestPowerCut(t *testing.T) {
	survived := 0
	for _, tt := range []struct {
		name   string
		seed   uint64
		n      int
		fixed  bool
		budget int64
		worse  bool
	}{
		{"fixed-size/no-ram", 11, 60, true, 0, false},
		{"fixed-size/ram", 12, 60, true, 2 << 10, true},
		{"varied/no-ram", 13, 120, false, 0, true},
		{"varied/ram", 14, 120, false, 4 << 10, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(tt.seed, 1))
			sc := genScenario(rng, tt.n, tt.fixed)
			p, err := NewPlan(sc.old, sc.new, PlanOptions{RAMBudget: tt.budget, CommitBytes: 8 << 10})
			if err != nil {
				t.Fatal(err)
			}
			fetchOp := make(map[chunk.ID]int)
			for i, op := range p.Ops {
				if op.Kind == OpFetch {
					fetchOp[op.ID] = i
				}
			}
			r := newRig(sc, p.SpillSize)
			if _, err := r.apply(p, sc.store()); err != nil {
				t.Fatal(err)
			}
			steps := r.pw.steps
			cuts := make([]int, 0, steps)
			for n := 1; n < steps; n++ {
				cuts = append(cuts, n)
			}
			if testing.Short() || len(cuts) > 300 {
				rng.Shuffle(len(cuts), func(i, j int) { cuts[i], cuts[j] = cuts[j], cuts[i] })
				cuts = cuts[:min(len(cuts), map[bool]int{true: 30, false: 300}[testing.Short()])]
			}
			for _, n := range cuts {
				r := newRig(sc, p.SpillSize)
				r.pw.left = n
				st1 := sc.store()
				if _, err := r.apply(p, st1); !errors.Is(err, durable.ErrPowerCut) {
					t.Fatalf("cut after %d of %d steps: Apply = %v, want a power cut", n, steps, err)
				}
				var wrng *rand.Rand
				if tt.worse {
					wrng = rng
				}
				r = r.reboot(wrng)
				js, _, err := r.journal().Load()
				if err != nil {
					t.Fatalf("cut after %d: %v", n, err)
				}
				st2 := sc.store()
				s, err := r.apply(p, st2)
				if err != nil {
					t.Fatalf("cut after %d, resumed at op %d: Apply = %v", n, js.Done, err)
				}
				if !bytes.Equal(r.dev.data[:len(sc.newImg)], sc.newImg) {
					t.Fatalf("cut after %d, resumed at op %d: the device does not hold the new release", n, js.Done)
				}
				for id := range st1.gets {
					if i, ok := fetchOp[id]; ok && i < int(js.Done) && st2.gets[id] > 0 {
						t.Errorf("cut after %d, resumed at op %d: chunk %s of op %d, fetched and recorded, fetched again", n, js.Done, id, i)
					}
				}
				if s.PeakRAM > tt.budget || s.Repaired != 0 {
					t.Errorf("cut after %d: resumed Apply = peak RAM %d (budget %d), %d repaired", n, s.PeakRAM, tt.budget, s.Repaired)
				}
				survived++
			}
			t.Logf("%d steps, %d cuts survived", steps, len(cuts))
		})
	}
	t.Logf("%d power cuts survived", survived)
}

// TestRepeatedCuts cuts the power again and again, each time at a random
// step of the resumed run, until an update completes.
func TestRepeatedCuts(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 2))
	sc := genScenario(rng, 150, false)
	p, err := NewPlan(sc.old, sc.new, PlanOptions{RAMBudget: 2 << 10, CommitBytes: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(sc, p.SpillSize)
	for round := 0; ; round++ {
		if round == 500 {
			t.Fatalf("no completed update after %d cuts", round)
		}
		r.pw.left = 1 + rng.IntN(60)
		_, err := r.apply(p, sc.store())
		if err == nil {
			t.Logf("done after %d cuts", round)
			break
		}
		if !errors.Is(err, durable.ErrPowerCut) {
			t.Fatalf("round %d: Apply = %v", round, err)
		}
		r = r.reboot(rng)
	}
	if !bytes.Equal(r.dev.data[:len(sc.newImg)], sc.newImg) {
		t.Fatalf("the device does not hold the new release")
	}
}

// TestUntrusted gives Apply a device that does not hold what the old index
// says, and a journal of another plan: every chunk is verified, so the
// result is still the new release, the missing chunks fetched.
func TestUntrusted(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 3))
	sc := genScenario(rng, 100, false)
	p, err := NewPlan(sc.old, sc.new, PlanOptions{RAMBudget: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(sc, p.SpillSize)
	for i := 0; i < len(r.dev.data); i += 997 {
		r.dev.data[i] ^= 0xff
	}
	if err := r.journal().Save(JournalState{Plan: [32]byte{1}, Done: 3, Ops: uint64(len(p.Ops))}); err != nil {
		t.Fatal(err)
	}
	s, err := r.apply(p, sc.store())
	if err != nil {
		t.Fatalf("Apply = %v", err)
	}
	if !bytes.Equal(r.dev.data[:len(sc.newImg)], sc.newImg) {
		t.Fatalf("Apply: the device does not hold the new release")
	}
	if s.Skipped != 0 || s.Fallbacks == 0 {
		t.Errorf("Apply = %d skipped, %d fallbacks, want 0 skipped and some fallbacks", s.Skipped, s.Fallbacks)
	}

	// A journal that lies (all done) is caught by the final check.
	r = newRig(sc, p.SpillSize)
	if err := r.journal().Save(JournalState{Plan: p.ID, Done: uint64(len(p.Ops)), Ops: uint64(len(p.Ops))}); err != nil {
		t.Fatal(err)
	}
	s, err = r.apply(p, sc.store())
	if err != nil || !bytes.Equal(r.dev.data[:len(sc.newImg)], sc.newImg) || s.Repaired == 0 {
		t.Errorf("Apply with a lying journal = %+v, %v, want the new release, repaired", s, err)
	}
}

func TestPlanDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 4))
	sc := genScenario(rng, 300, false)
	p1, err := NewPlan(sc.old, sc.new, PlanOptions{RAMBudget: 5000})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		p2, err := NewPlan(sc.old, sc.new, PlanOptions{RAMBudget: 5000})
		if err != nil || p2.ID != p1.ID {
			t.Fatalf("NewPlan again = %x, %v, want %x", p2.ID, err, p1.ID)
		}
	}
	p3, _ := NewPlan(sc.old, sc.new, PlanOptions{RAMBudget: 5001})
	if p3.ID == p1.ID && p3.PeakRAM != p1.PeakRAM {
		t.Errorf("plans with different stashes have the same ID")
	}
}

func TestPlanErrors(t *testing.T) {
	sc := &scenario{content: make(map[chunk.ID][]byte)}
	a := sc.add([]byte("aaaa"))
	good, _ := sc.index([]chunk.ID{a})
	gap := chunk.NewIndex(testParams, chunk.SHA256)
	gap.Chunks = []chunk.Entry{{Start: 1, Size: 4, ID: a}}
	sizes := chunk.NewIndex(testParams, chunk.SHA256)
	sizes.Chunks = []chunk.Entry{{Start: 0, Size: 5, ID: a}}
	other := chunk.NewIndex(testParams, chunk.SHA512256)
	for _, tt := range []struct {
		name     string
		old, new *chunk.Index
		opt      PlanOptions
	}{
		{"gap", good, gap, PlanOptions{}},
		{"sizes", good, sizes, PlanOptions{}},
		{"digest", good, other, PlanOptions{}},
		{"budget", good, good, PlanOptions{RAMBudget: -1}},
	} {
		if _, err := NewPlan(tt.old, tt.new, tt.opt); !errors.Is(err, ErrBadPlanInput) {
			t.Errorf("NewPlan(%s) = %v, want ErrBadPlanInput", tt.name, err)
		}
	}
}

// TestSeeds takes the chunks the old release lacks from another seed, and
// fetches none.
func TestSeeds(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 5))
	sc := genScenario(rng, 100, false)
	p, err := NewPlan(sc.old, sc.new, PlanOptions{RAMBudget: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(sc, p.SpillSize)
	st := sc.store()
	seed := &assemble.Seed{Name: "new", R: bytes.NewReader(sc.newImg), Size: int64(len(sc.newImg)), Index: sc.new}
	s, err := Apply(context.Background(), p, r.dev, Sources{Seeds: []*assemble.Seed{seed}, Stores: []store.Store{st}}, r.journal(), r.spill, Options{})
	if err != nil {
		t.Fatal(err)
	}
	need, needBytes := sc.needed()
	if !bytes.Equal(r.dev.data[:len(sc.newImg)], sc.newImg) || st.total() != 0 || s.Seeds.Chunks != len(need) || s.Seeds.Bytes != needBytes {
		t.Errorf("Apply with a seed = %d from seeds (%d bytes), %d fetches, want %d (%d bytes), none", s.Seeds.Chunks, s.Seeds.Bytes, st.total(), len(need), needBytes)
	}
}
