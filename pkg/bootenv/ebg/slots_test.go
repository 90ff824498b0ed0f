package ebg

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

// ebgBoot plays EBG at power-on over the parts: it selects, writes back
// what EBG writes, and returns the slot it starts ("" for none).
func ebgBoot(t *testing.T, s *Slots) slot.Name {
	t.Helper()
	cs, err := s.Configs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d := Select(cs)
	for _, i := range []int{d.Failed, d.Boot} {
		if i >= 0 && !d.After[i].Equal(cs[i]) {
			if err := writeConfig(s.parts[i].Part, d.After[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d.Boot < 0 {
		return ""
	}
	return s.parts[d.Boot].Name
}

func newAB(t *testing.T, a, b *Config) (*Slots, *Mem, *Mem) {
	t.Helper()
	ma, mb := NewMem("BOOT0", a), NewMem("BOOT1", b)
	s, err := NewSlots([]SlotPart{{"A", ma}, {"B", mb}})
	if err != nil {
		t.Fatal(err)
	}
	return s, ma, mb
}

func status(t *testing.T, s *Slots) slot.Status {
	t.Helper()
	st, err := s.Status(context.Background())
	if err != nil {
		t.Fatalf("Status() = %v", err)
	}
	return st
}

func states(a, b slot.State, ta, tb int, next slot.Name) slot.Status {
	return slot.Status{Next: next, Slots: []slot.SlotStatus{{Name: "A", State: a, TriesLeft: ta}, {Name: "B", State: b, TriesLeft: tb}}}
}

// TestScenarioFallback is the x86_64 QEMU scenario of issue 5 on Mem
// parts, with EBG played by Select: try B, EBG boots B, B does not confirm
// and the machine resets, EBG boots A, and Status reports B failed.
func TestScenarioFallback(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newAB(t, cfg(1, OK, "L:BOOT0:vmlinuz"), cfg(0, OK, "L:BOOT1:vmlinuz"))
	if got := ebgBoot(t, s); got != "A" {
		t.Fatalf("boot = %s, want A", got)
	}
	if err := s.Try(ctx, "B", 3); err != nil {
		t.Fatalf("Try(B) = %v", err)
	}
	if d := cmp.Diff(states(slot.Good, slot.Trying, 0, 1, "B"), status(t, s)); d != "" {
		t.Errorf("Status() after Try(B): -want +got\n%s", d)
	}
	if got := ebgBoot(t, s); got != "B" {
		t.Fatalf("boot after Try(B) = %s, want B", got)
	}
	if d := cmp.Diff(states(slot.Good, slot.Trying, 0, 0, "A"), status(t, s)); d != "" {
		t.Errorf("Status() while B is on trial: -want +got\n%s", d)
	}
	if got := ebgBoot(t, s); got != "A" {
		t.Fatalf("boot after a reset without confirm = %s, want A", got)
	}
	if d := cmp.Diff(states(slot.Good, slot.Failed, 0, 0, "A"), status(t, s)); d != "" {
		t.Errorf("Status() after fallback: -want +got\n%s", d)
	}
	if err := s.MarkGood(ctx, "B"); !errors.Is(err, ErrSlotFailed) {
		t.Errorf("MarkGood(B) after fallback = %v, want %v", err, ErrSlotFailed)
	}
}

// TestScenarioConfirm: try B, EBG boots B, B marks itself good (bg_setenv
// -c), B stays; then back to A the same way and B is marked bad.
func TestScenarioConfirm(t *testing.T) {
	ctx := context.Background()
	s, _, mb := newAB(t, cfg(1, OK, "L:BOOT0:vmlinuz"), cfg(0, OK, "L:BOOT1:vmlinuz"))
	if err := s.Try(ctx, "B", 1); err != nil {
		t.Fatalf("Try(B) = %v", err)
	}
	ebgBoot(t, s)
	if err := s.MarkGood(ctx, "B"); err != nil {
		t.Fatalf("MarkGood(B) = %v", err)
	}
	if c, _ := readConfig(mb); !c.Equal(cfg(2, OK, "L:BOOT1:vmlinuz")) {
		t.Errorf("B after MarkGood = %s, want rev 2 OK", descr([]*Config{c}))
	}
	for i := 0; i < 2; i++ {
		if got := ebgBoot(t, s); got != "B" {
			t.Fatalf("boot %d after MarkGood(B) = %s, want B", i, got)
		}
	}
	if err := s.MarkGood(ctx, "B"); err != nil {
		t.Errorf("MarkGood(B) again = %v, want nil", err)
	}
	// Back to A, on trial, confirmed; then B marked bad.
	if err := s.Try(ctx, "A", 1); err != nil {
		t.Fatalf("Try(A) = %v", err)
	}
	if got := ebgBoot(t, s); got != "A" {
		t.Fatalf("boot after Try(A) = %s, want A", got)
	}
	if err := s.MarkGood(ctx, "A"); err != nil {
		t.Fatalf("MarkGood(A) = %v", err)
	}
	if err := s.MarkBad(ctx, "B"); err != nil {
		t.Fatalf("MarkBad(B) = %v", err)
	}
	if d := cmp.Diff(states(slot.Good, slot.Failed, 0, 0, "A"), status(t, s)); d != "" {
		t.Errorf("Status() after MarkBad(B): -want +got\n%s", d)
	}
}

func TestSlotsErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		a, b *Config
		op   func(s *Slots) error
		want error
	}{
		{name: "unknown slot", a: cfg(1, OK, "A"), b: cfg(0, OK, "B"),
			op: func(s *Slots) error { return s.Try(ctx, "C", 1) }, want: slot.ErrUnknownSlot},
		{name: "try the slot that boots next", a: cfg(1, OK, "A"), b: cfg(0, OK, "B"),
			op: func(s *Slots) error { return s.Try(ctx, "A", 1) }, want: ErrUnsafe},
		{name: "try a slot without a valid config", a: cfg(1, OK, "A"), b: nil,
			op: func(s *Slots) error { return s.Try(ctx, "B", 1) }, want: bootenv.ErrCorrupt},
		{name: "mark good before the trial boot", a: cfg(1, OK, "A"), b: cfg(2, Installed, "B"),
			op: func(s *Slots) error { return s.MarkGood(ctx, "B") }, want: ErrUnsafe},
		{name: "mark bad the only fallback", a: cfg(0, Failed, "A"), b: cfg(2, OK, "B"),
			op: func(s *Slots) error { return s.MarkBad(ctx, "B") }, want: ErrUnsafe},
		{name: "mark bad with nothing else valid, config 0", a: cfg(2, OK, "A"), b: nil,
			op: func(s *Slots) error { return s.MarkBad(ctx, "A") }, want: ErrUnsafe},
		{name: "zero tries", a: cfg(1, OK, "A"), b: cfg(0, OK, "B"),
			op: func(s *Slots) error { return s.Try(ctx, "B", 0) }, want: errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := newAB(t, tc.a, tc.b)
			err := tc.op(s)
			if tc.want == errAny && err != nil {
				return
			}
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("%s on %s = %v, want %v", tc.name, descr([]*Config{tc.a, tc.b}), err, tc.want)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestSlotsEnv(t *testing.T) {
	ctx := context.Background()
	s, _, mb := newAB(t, cfg(1, OK, "L:BOOT0:vmlinuz"), nil)
	e, err := s.Env("B")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Load(ctx); !errors.Is(err, bootenv.ErrNoEnv) {
		t.Errorf("Load(B with a bad CRC) = %v, want %v", err, bootenv.ErrNoEnv)
	}
	v := bootenv.Vars{VarKernelFile: "L:BOOT1:vmlinuz", VarKernelParams: "console=ttyS0 lifeboat.slot=B", VarUState: "0", "lifeboat_version": "2"}
	if err := e.Save(ctx, v); err != nil {
		t.Fatalf("Save(B) = %v", err)
	}
	if err := s.Try(ctx, "B", 1); err != nil {
		t.Fatalf("Try(B) = %v", err)
	}
	got, err := e.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := bootenv.Vars{VarKernelFile: "L:BOOT1:vmlinuz", VarKernelParams: "console=ttyS0 lifeboat.slot=B", VarUState: "1",
		VarRevision: "2", VarWatchdog: "0", VarInProgress: "0", "lifeboat_version": "2"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Load(B) after Save and Try: -want +got\n%s", d)
	}
	// B boots next now: rewriting it is refused.
	if err := e.Save(ctx, got); err != nil {
		t.Errorf("Save(B unchanged) = %v, want nil", err)
	}
	got[VarUState] = "0"
	if err := e.Save(ctx, got); !errors.Is(err, ErrUnsafe) {
		t.Errorf("Save(B INSTALLED -> OK) = %v, want %v", err, ErrUnsafe)
	}
	_ = mb
}
