package ebg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

const sector = 512

// sectorWrite is one sector reaching the disk.
type sectorWrite struct {
	off  int64
	data []byte
}

// recPart is a Part on a disk with a volatile write cache: it records
// every write split into sectors (BGENV.DAT starts on a cluster, so file
// and disk sectors line up) and every Sync, for the cut test to replay any
// prefix of them.
type recPart struct {
	*Mem
	log    []sectorWrite
	synced []int // len(log) at each Sync
}

func (p *recPart) WriteAt(b []byte, off int64) (int, error) {
	n, err := p.Mem.WriteAt(b, off)
	if err != nil {
		return n, err
	}
	for s := off - off%sector; s < off+int64(len(b)); s += sector {
		end := min(s+sector, p.Mem.Size())
		d := make([]byte, end-s)
		p.Mem.ReadAt(d, s)
		p.log = append(p.log, sectorWrite{s, d})
	}
	return n, nil
}

func (p *recPart) Sync() error {
	p.synced = append(p.synced, len(p.log))
	return p.Mem.Sync()
}

// cutStates returns every content a power cut can leave the part with,
// starting from before: each prefix of the sectors written, in order and
// in reverse order within each interval between syncs (the cache may
// write back in any order; these are the two extremes), with the writes
// not yet synced dropped or not.
func cutStates(before []byte, log []sectorWrite, synced []int) [][]byte {
	var out [][]byte
	seen := make(map[[sha256.Size]byte]bool)
	add := func(b []byte) {
		if h := sha256.Sum256(b); !seen[h] {
			seen[h] = true
			out = append(out, bytes.Clone(b))
		}
	}
	// apply writes w to b, adding the state after each one that changes b.
	apply := func(b []byte, ws []sectorWrite, each bool) {
		for _, w := range ws {
			if bytes.Equal(b[w.off:w.off+int64(len(w.data))], w.data) {
				continue
			}
			copy(b[w.off:], w.data)
			if each {
				add(b)
			}
		}
	}
	bounds := append([]int{0}, synced...)
	if bounds[len(bounds)-1] != len(log) {
		bounds = append(bounds, len(log)) // unsynced tail
	}
	add(before)
	for g := 0; g+1 < len(bounds); g++ {
		lo, hi := bounds[g], bounds[g+1]
		synced := bytes.Clone(before)
		apply(synced, log[:lo], false) // the state at the last sync: later writes dropped
		add(synced)
		apply(bytes.Clone(synced), log[lo:hi], true) // cut after each sector, in order
		rev := bytes.Clone(synced)
		for k := hi - 1; k >= lo; k-- { // and in reverse order
			apply(rev, log[k:k+1], true)
		}
	}
	return out
}

// cutConfigs are the states each config partition starts in.
func cutConfigs() []*Config {
	inProgress := cfg(2, OK, "")
	inProgress.InProgress = 1
	var cs []*Config
	cs = append(cs, nil, inProgress)
	for _, rev := range []uint32{0, 1, 2} {
		for _, u := range []UState{OK, Installed, Testing, Failed} {
			if rev == 0 && (u == Installed || u == Testing) {
				continue
			}
			c := cfg(rev, u, "")
			if err := c.SetUserVars([]UserVar{StringVar("lifeboat_note", fmt.Sprint("rev ", rev))}); err != nil {
				panic(err)
			}
			cs = append(cs, c)
		}
	}
	return cs
}

// TestPowerCut runs every operation on every pair of starting configs,
// cuts power at every sector boundary of every write (in order, in reverse
// order, with unsynced writes dropped), and checks that EBG's rule then
// boots what it booted before the operation or what it boots after it:
// never nothing, never a slot that is neither (such as one on trial that
// was not to be tried).
func TestPowerCut(t *testing.T) {
	ctx := context.Background()
	type op struct {
		name string
		do   func(s *Slots) error
	}
	var ops []op
	for _, n := range []slot.Name{"A", "B"} {
		ops = append(ops,
			op{"Try(" + string(n) + ")", func(s *Slots) error { return s.Try(ctx, n, 1) }},
			op{"MarkGood(" + string(n) + ")", func(s *Slots) error { return s.MarkGood(ctx, n) }},
			op{"MarkBad(" + string(n) + ")", func(s *Slots) error { return s.MarkBad(ctx, n) }},
			op{"Env(" + string(n) + ").Save", func(s *Slots) error {
				e, err := s.Env(n)
				if err != nil {
					return err
				}
				v, err := e.Load(ctx)
				if errors.Is(err, bootenv.ErrNoEnv) {
					v = bootenv.Vars{}
				} else if err != nil {
					return err
				}
				v[VarKernelFile] = "L:BOOT1:vmlinuz-new"
				v["lifeboat_version"] = "2"
				return e.Save(ctx, v)
			}},
		)
	}
	var runs, writes, states, refused int
	cs := cutConfigs()
	for _, a := range cs {
		for _, b := range cs {
			for _, op := range ops {
				runs++
				start := []*Config{a, b}
				name := fmt.Sprintf("%s on %s", op.name, descr(start))
				parts := []*recPart{{Mem: NewMem("BOOT0", a)}, {Mem: NewMem("BOOT1", b)}}
				before := [][]byte{parts[0].Bytes(), parts[1].Bytes()}
				s, err := NewSlots([]SlotPart{{"A", parts[0]}, {"B", parts[1]}})
				if err != nil {
					t.Fatal(err)
				}
				old := Select(start)
				err = op.do(s)
				if errors.Is(err, ErrUnsafe) {
					refused++
				}
				if err != nil && (len(parts[0].log) > 0 || len(parts[1].log) > 0) {
					t.Errorf("%s = %v, and it wrote", name, err)
				}
				after := []*Config{parseOrNil(parts[0].Bytes()), parseOrNil(parts[1].Bytes())}
				nw := Select(after)
				if old.Boot >= 0 && nw.Boot < 0 {
					t.Errorf("%s: EBG boots nothing after it", name)
				}
				for i, p := range parts {
					if len(p.log) == 0 {
						continue
					}
					writes++
					for _, st := range cutStates(before[i], p.log, p.synced) {
						states++
						cut := append([]*Config(nil), after...)
						cut[1-i] = parseOrNil(before[1-i]) // one write per operation
						cut[i] = parseOrNil(st)
						d := Select(cut)
						if !d.Same(old) && !d.Same(nw) {
							t.Errorf("%s: a cut leaves %s: EBG boots %d (trial %v), before %d (trial %v), after %d (trial %v)",
								name, descr(cut), d.Boot, d.Trial, old.Boot, old.Trial, nw.Boot, nw.Trial)
						}
					}
				}
			}
		}
	}
	t.Logf("%d operations, %d wrote, %d refused as unsafe, %d cut states checked", runs, writes, refused, states)
	if writes == 0 || states == 0 {
		t.Fatal("the cut test wrote nothing")
	}
}

func parseOrNil(b []byte) *Config {
	c, err := ParseEnv(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	return c
}
