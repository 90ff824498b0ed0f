package uboot

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

// errPowerCut is the error of every call to a crashDev after its power
// went off.
var errPowerCut = errors.New("power cut")

// crashDev is a device that can lose power between any two sector writes.
// As a block device it has a volatile cache: sector writes since the last
// Flush are pending, and a cut keeps any subset of them (reboot). As
// flash (crashFlash) it has no cache: each page write and each block
// erase is durable at once, a write ANDs into what is there, and a cut
// stops the sequence.
type crashDev struct {
	sector    int64
	flash     bool
	nor       bool
	eraseSize int64

	durable []byte
	pending []pendingWrite
	steps   int // steps taken
	cutAt   int // steps allowed, or -1
	off     bool
}

type pendingWrite struct {
	off  int64
	data []byte // one whole sector
}

func newCrashDev(image []byte, sector int64) *crashDev {
	return &crashDev{sector: sector, durable: append([]byte(nil), image...), cutAt: -1}
}

// crashFlash is a crashDev that is a Flash.
type crashFlash struct{ *crashDev }

var _ Flash = crashFlash{}

func newCrashFlash(image []byte, page, eraseSize int64, nor bool) crashFlash {
	d := newCrashDev(image, page)
	d.flash, d.nor, d.eraseSize = true, nor, eraseSize
	return crashFlash{d}
}

func (c *crashDev) step() error {
	if c.off {
		return errPowerCut
	}
	if c.cutAt >= 0 && c.steps >= c.cutAt {
		c.off = true
		return errPowerCut
	}
	c.steps++
	return nil
}

// current returns what reads see: the durable bytes with the pending
// writes applied.
func (c *crashDev) current() []byte {
	b := append([]byte(nil), c.durable...)
	for _, w := range c.pending {
		copy(b[w.off:], w.data)
	}
	return b
}

func (c *crashDev) Size() int64 { return int64(len(c.durable)) }

func (c *crashDev) ReadAt(p []byte, off int64) (int, error) {
	if c.off {
		return 0, errPowerCut
	}
	cur := c.current()
	if off < 0 || off > int64(len(cur)) {
		return 0, fmt.Errorf("read at %d: out of range", off)
	}
	n := copy(p, cur[off:])
	if n < len(p) {
		return n, fmt.Errorf("read at %d: short", off)
	}
	return n, nil
}

func (c *crashDev) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(c.durable)) {
		return 0, fmt.Errorf("write [%d, +%d): out of range", off, len(p))
	}
	done := 0
	for done < len(p) {
		at := off + int64(done)
		sec := at / c.sector * c.sector
		n := min(int64(len(p)-done), sec+c.sector-at)
		if err := c.step(); err != nil {
			return done, err
		}
		if c.flash {
			for i := range n {
				c.durable[at+i] &= p[done+int(i)]
			}
		} else {
			s := c.current()[sec : sec+c.sector]
			copy(s[at-sec:], p[done:done+int(n)])
			c.pending = append(c.pending, pendingWrite{sec, s})
		}
		done += int(n)
	}
	return done, nil
}

func (c *crashDev) Flush() error {
	if err := c.step(); err != nil {
		return err
	}
	c.durable = c.current()
	c.pending = nil
	return nil
}

func (c crashFlash) Info() FlashInfo {
	return FlashInfo{NOR: c.nor, EraseSize: c.eraseSize, Size: int64(len(c.durable))}
}

func (c crashFlash) Erase(off, n int64) error {
	if off%c.eraseSize != 0 || n%c.eraseSize != 0 {
		return fmt.Errorf("erase [%d, +%d): unaligned", off, n)
	}
	for b := off; b < off+n; b += c.eraseSize {
		if err := c.step(); err != nil {
			return err
		}
		for i := b; i < b+c.eraseSize; i++ {
			c.durable[i] = 0xff
		}
	}
	return nil
}

// reboot returns the bytes that survive the cut when the pending writes
// whose bits are set in keep reach the disk, in order, and the others are
// lost.
func (c *crashDev) reboot(keep uint64) []byte {
	b := append([]byte(nil), c.durable...)
	for i, w := range c.pending {
		if keep&(1<<i) != 0 {
			copy(b[w.off:], w.data)
		}
	}
	return b
}

// cutLayout is an environment layout under test, on a device made from an
// image.
type cutLayout struct {
	name   string
	cfg    Config
	size   int64
	blank  byte
	dev    func(image []byte) Dev
	opts   []Option
	scheme FlagScheme
}

func cutLayouts() []cutLayout {
	const envSize = 0x1000
	redund := Config{Copies: []Location{
		{Device: "dev", Offset: 0, Size: envSize},
		{Device: "dev", Offset: 0x2000, Size: envSize},
	}}
	return []cutLayout{
		{
			name: "block-512", cfg: redund, size: 0x3000, blank: 0,
			dev:    func(b []byte) Dev { return newCrashDev(b, 512) },
			scheme: Incremental,
		},
		{
			name: "block-4096", cfg: redund, size: 0x3000, blank: 0,
			dev:    func(b []byte) Dev { return newCrashDev(b, 4096) },
			scheme: Incremental,
		},
		{
			name: "nor-boolean", cfg: redund, size: 0x3000, blank: 0xff,
			dev:    func(b []byte) Dev { return newCrashFlash(b, 256, 0x1000, true) },
			scheme: Boolean,
		},
		{
			name: "nand-incremental", cfg: redund, size: 0x3000, blank: 0xff,
			dev:    func(b []byte) Dev { return newCrashFlash(b, 512, 0x1000, false) },
			scheme: Incremental,
		},
		{
			name: "nor-incremental", cfg: redund, size: 0x3000, blank: 0xff,
			dev:    func(b []byte) Dev { return newCrashFlash(b, 256, 0x1000, true) },
			opts:   []Option{WithFlagScheme(Incremental)},
			scheme: Incremental,
		},
	}
}

// cutVars returns the i-th set of variables of a sequence of saves: big
// enough to span several sectors, different at each step, in size too.
func cutVars(i int) bootenv.Vars {
	v := bootenv.Vars{
		"BOOT_ORDER":  []string{"A B", "B A"}[i%2],
		"BOOT_A_LEFT": fmt.Sprint(3 - i%4),
		"BOOT_B_LEFT": fmt.Sprint(i % 4),
	}
	for k := range 30 + 7*(i%3) {
		v[fmt.Sprintf("var%02d", k)] = fmt.Sprintf("save %d value %d: %0*d", i, k, 20+i%5, k)
	}
	return v
}

// initialImage returns the layout's device holding vars in copy 1 with
// flags, and nothing valid in copy 2.
func (l cutLayout) initialImage(t *testing.T, v bootenv.Vars, flags byte) []byte {
	t.Helper()
	b := make([]byte, l.size)
	for i := range b {
		b[i] = l.blank
	}
	img, err := Image{Redundant: true, Flags: flags, Vars: v}.Encode(l.cfg.Copies[0].Size)
	if err != nil {
		t.Fatal(err)
	}
	copy(b[l.cfg.Copies[0].Offset:], img)
	return b
}

func (l cutLayout) env(t *testing.T, d Dev) *Env {
	t.Helper()
	e, err := New(l.cfg, []Dev{d, d}, l.opts...)
	if err != nil {
		t.Fatalf("New(%v) = %v", l.cfg, err)
	}
	return e
}

// crashOf returns the crashDev under d.
func crashOf(d Dev) *crashDev {
	switch d := d.(type) {
	case *crashDev:
		return d
	case crashFlash:
		return d.crashDev
	}
	panic("not a crash device")
}

// TestSaveCut is the acceptance test for power cuts: for each layout, a
// sequence of saves (through the flags wrap-around 255 -> 0) is cut at
// every step of every save: every sector write, erase and flush. For a
// block device every subset of the writes not yet flushed is then
// dropped, which covers writes reaching the disk in any order. After
// each cut, Load (U-Boot's selection rule) must return exactly the
// variables before the save or after it, never ErrNoEnv and never a mix;
// and a new save from there must work.
func TestSaveCut(t *testing.T) {
	ctx := context.Background()
	const saves = 6
	for _, l := range cutLayouts() {
		t.Run(l.name, func(t *testing.T) {
			image := l.initialImage(t, cutVars(0), 253)
			checks := 0
			for j := 1; j <= saves; j++ {
				old, want := cutVars(j-1), cutVars(j)
				// Count the steps of an uncut save.
				d := l.dev(image)
				if err := l.env(t, d).Save(ctx, want); err != nil {
					t.Fatalf("save %d: Save() = %v", j, err)
				}
				steps := crashOf(d).steps
				next := crashOf(d).reboot(0)
				for cut := 0; cut <= steps; cut++ {
					d := l.dev(image)
					c := crashOf(d)
					c.cutAt = cut
					err := l.env(t, d).Save(ctx, want)
					if cut < steps && !errors.Is(err, errPowerCut) {
						t.Fatalf("save %d cut after %d of %d steps: Save() = %v, want a power cut", j, cut, steps, err)
					}
					if len(c.pending) > 12 {
						t.Fatalf("save %d: %d writes pending at once; the test enumerates subsets of at most 12", j, len(c.pending))
					}
					for keep := uint64(0); keep < 1<<len(c.pending); keep++ {
						after := c.reboot(keep)
						d := l.dev(after)
						e := l.env(t, d)
						got, err := e.Load(ctx)
						what := fmt.Sprintf("save %d cut after %d of %d steps, %d of %d pending writes kept", j, cut, steps, bits.OnesCount64(keep), len(c.pending))
						if err != nil {
							t.Fatalf("%s: Load() = %v, want the old or the new variables", what, err)
						}
						if !cmp.Equal(got, old) && !cmp.Equal(got, want) {
							t.Fatalf("%s: Load() = a mix, neither old nor new: %s", what, cmp.Diff(want, got))
						}
						if cut == steps && !cmp.Equal(got, want) {
							t.Fatalf("%s: Load() after a whole save = old variables, want the new", what)
						}
						checks++
						// Recovery: the next save from here wins.
						if keep == 0 || keep == 1<<len(c.pending)-1 {
							again := cutVars(j + 100)
							if err := e.Save(ctx, again); err != nil {
								t.Fatalf("%s: Save() after the cut = %v", what, err)
							}
							if got, err := l.env(t, d).Load(ctx); err != nil || !cmp.Equal(got, again) {
								t.Fatalf("%s: Load() after a save after the cut = %v (-want +got):\n%s", what, err, cmp.Diff(again, got))
							}
						}
					}
				}
				image = next
			}
			st, err := l.env(t, l.dev(image)).Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Scheme != l.scheme {
				t.Errorf("Status().Scheme = %v, want %v", st.Scheme, l.scheme)
			}
			t.Logf("%d cut states checked; final flags %d, %d", checks, st.Copies[0].Flags, st.Copies[1].Flags)
		})
	}
}

// TestSingleCopyCutLosesEnv shows why Save refuses a single copy: some cut
// leaves U-Boot no environment at all.
func TestSingleCopyCutLosesEnv(t *testing.T) {
	ctx := context.Background()
	cfg := Config{Copies: []Location{{Device: "dev", Size: 0x1000}}}
	img, err := Image{Vars: cutVars(0)}.Encode(0x1000)
	if err != nil {
		t.Fatal(err)
	}
	lost := 0
	for cut := 0; cut < 8; cut++ {
		d := newCrashDev(img, 512)
		d.cutAt = cut
		e, err := New(cfg, []Dev{d}, AllowSingleCopy())
		if err != nil {
			t.Fatal(err)
		}
		e.Save(ctx, cutVars(1))
		e2, _ := New(cfg, []Dev{newCrashDev(d.reboot(1<<len(d.pending)-1), 512)}, AllowSingleCopy())
		if _, err := e2.Load(ctx); errors.Is(err, bootenv.ErrNoEnv) {
			lost++
		}
	}
	if lost == 0 {
		t.Errorf("no cut of a single-copy save lost the environment; the test is wrong")
	}
}
