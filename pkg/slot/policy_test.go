package slot

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

// factoryEnv is a device as it leaves the factory: A and B good, A first.
func factoryEnv() bootenv.Vars {
	return bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3", "bootcmd": "run distro_bootcmd"}
}

func TestLifecycleTryThenGood(t *testing.T) {
	r := newRig(t, factoryEnv(), "A", "B", Recovery)
	if s := r.bootOnce(); s != "A" {
		t.Fatalf("first boot = %s, want A", s)
	}
	r.step("mark-good A", func(ctx context.Context) error { _, err := r.p.MarkGood(ctx, "", false); return err })
	// The installer gives up B before writing it, writes it, then tries it.
	r.step("mark-bad B", func(ctx context.Context) error { return r.p.MarkBad(ctx, "B") })
	r.want("B being written", "booted=A next=A A:good:3 B:failed:0 recovery:good:0")
	r.step("try B", func(ctx context.Context) error { return r.p.Try(ctx, "B", 3) })
	r.want("after try", "booted=A next=B B:trying:3 A:good:3 recovery:good:0")
	// A mark-good of A on every boot does not cancel the pending trial.
	r.step("mark-good A again", func(ctx context.Context) error { _, err := r.p.MarkGood(ctx, "", false); return err })
	r.want("after A's mark-good", "booted=A next=B B:trying:3 A:good:3 recovery:good:0")

	if s := r.bootOnce(); s != "B" {
		t.Fatalf("boot after try = %s, want B", s)
	}
	r.want("B on trial", "booted=B next=B B:trying:2 A:good:3 recovery:good:0")
	r.step("mark-good B", func(ctx context.Context) error { _, err := r.p.MarkGood(ctx, "", false); return err })
	r.want("B good", "booted=B next=B B:good:3 A:good:3 recovery:good:0")
	for i := range 5 {
		if s := r.bootOnce(); s != "B" {
			t.Fatalf("boot %d of a good B = %s, want B", i, s)
		}
		r.step("mark-good B", func(ctx context.Context) error { _, err := r.p.MarkGood(ctx, "", false); return err })
	}
	if v := r.env.Vars(); v["bootcmd"] != "run distro_bootcmd" {
		t.Errorf("the board's own variables were lost: %v", v)
	}
}

func TestLifecycleFallback(t *testing.T) {
	r := newRig(t, factoryEnv(), "A", "B", Recovery)
	r.bootOnce()
	r.step("mark-good A", func(ctx context.Context) error { _, err := r.p.MarkGood(ctx, "", false); return err })
	r.step("try B", func(ctx context.Context) error { return r.p.Try(ctx, "B", 3) })
	// B resets before it can vouch for itself, three times.
	for i := range 3 {
		if s := r.bootOnce(); s != "B" {
			t.Fatalf("boot %d = %s, want B", i, s)
		}
	}
	r.want("B on its last try", "booted=B next=A B:trying:0 A:good:3 recovery:good:0")
	if s := r.bootOnce(); s != "A" {
		t.Fatalf("boot after three resets = %s, want A", s)
	}
	r.want("fell back", "booted=A next=A B:failed:0 A:good:2 recovery:good:0")
	// B may not vouch for itself from A.
	if _, err := r.p.MarkGood(context.Background(), "B", false); !errors.Is(err, ErrNotBooted) {
		t.Errorf("MarkGood(B) from A = %v, want %v", err, ErrNotBooted)
	}
	r.step("mark-good A", func(ctx context.Context) error { _, err := r.p.MarkGood(ctx, "", false); return err })
	r.want("A good again", "booted=A next=A A:good:3 B:failed:0 recovery:good:0")
	if v := r.env.Vars(); v[TryVar] != "" {
		t.Errorf("%s = %q after the failed trial was forgotten, want unset", TryVar, v[TryVar])
	}
}

func TestLifecycleLastTryMarksGood(t *testing.T) {
	r := newRig(t, factoryEnv(), "A", "B", Recovery)
	r.bootOnce()
	r.step("try B once", func(ctx context.Context) error { return r.p.Try(ctx, "B", 1) })
	if s := r.bootOnce(); s != "B" {
		t.Fatalf("boot = %s, want B", s)
	}
	r.want("B on its only try", "booted=B next=A B:trying:0 A:good:2 recovery:good:0")
	r.step("mark-good B", func(ctx context.Context) error { _, err := r.p.MarkGood(ctx, "", false); return err })
	if s := r.bootOnce(); s != "B" {
		t.Errorf("boot after B vouched for itself = %s, want B", s)
	}
}

func TestLifecycleRollback(t *testing.T) {
	ctx := context.Background()
	t.Run("booted trial", func(t *testing.T) {
		r := newRig(t, factoryEnv(), "A", "B", Recovery)
		r.bootOnce()
		r.step("try B", func(ctx context.Context) error { return r.p.Try(ctx, "B", 3) })
		r.bootOnce()
		r.step("rollback", func(ctx context.Context) error {
			from, next, err := r.p.Rollback(ctx)
			if from != "B" || next != "A" {
				t.Errorf("Rollback() = %s, %s; want B, A", from, next)
			}
			return err
		})
		if s := r.bootOnce(); s != "A" {
			t.Errorf("boot after rollback = %s, want A", s)
		}
		r.want("rolled back", "booted=A next=A A:good:1 B:failed:0 recovery:good:0")
	})
	t.Run("pending trial", func(t *testing.T) {
		r := newRig(t, factoryEnv(), "A", "B", Recovery)
		r.bootOnce()
		r.step("try B", func(ctx context.Context) error { return r.p.Try(ctx, "B", 3) })
		r.step("rollback", func(ctx context.Context) error {
			from, next, err := r.p.Rollback(ctx)
			if from != "B" || next != "A" {
				t.Errorf("Rollback() = %s, %s; want B, A", from, next)
			}
			return err
		})
		if s := r.bootOnce(); s != "A" {
			t.Errorf("boot after rollback = %s, want A", s)
		}
	})
	t.Run("good to the other good slot", func(t *testing.T) {
		r := newRig(t, factoryEnv(), "A", "B", Recovery)
		r.bootOnce()
		r.step("rollback", func(ctx context.Context) error {
			from, next, err := r.p.Rollback(ctx)
			if from != "A" || next != "B" {
				t.Errorf("Rollback() = %s, %s; want A, B", from, next)
			}
			return err
		})
		if s := r.bootOnce(); s != "B" {
			t.Errorf("boot after rollback = %s, want B", s)
		}
	})
	t.Run("to the factory slot", func(t *testing.T) {
		r := newRig(t, bootenv.Vars{"BOOT_ORDER": "A B factory recovery", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"}, "A", "B", Factory, Recovery)
		r.bootOnce()
		r.step("rollback", func(ctx context.Context) error {
			_, next, err := r.p.Rollback(ctx)
			if next != Factory {
				t.Errorf("Rollback() next = %s, want %s", next, Factory)
			}
			return err
		})
		if s := r.bootOnce(); s != Factory {
			t.Errorf("boot after rollback = %s, want %s", s, Factory)
		}
	})
	t.Run("nothing to fall back to", func(t *testing.T) {
		r := newRig(t, bootenv.Vars{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"}, "A", "B")
		r.bootOnce()
		if _, _, err := r.p.Rollback(ctx); !errors.Is(err, ErrNoFallback) || r.env.Saves() != 1 {
			t.Errorf("Rollback() = %v after %d saves, want %v and only the boot's save", err, r.env.Saves(), ErrNoFallback)
		}
	})
	t.Run("in the ramdisk", func(t *testing.T) {
		r := newRig(t, bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"}, "A", "B", Recovery)
		if s := r.bootOnce(); s != Recovery {
			t.Fatalf("boot with every slot failed = %s, want recovery", s)
		}
		if _, _, err := r.p.Rollback(ctx); !errors.Is(err, ErrReadOnly) {
			t.Errorf("Rollback() in recovery = %v, want %v", err, ErrReadOnly)
		}
		// Recovery installs and tries A; A is then on trial with recovery behind it.
		r.step("try A", func(ctx context.Context) error { return r.p.Try(ctx, "A", 3) })
		if s := r.bootOnce(); s != "A" {
			t.Errorf("boot = %s, want A", s)
		}
	})
}

func TestPolicyRefusals(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		vars   bootenv.Vars
		booted Name
		op     func(p *Policy) error
		err    error
	}{
		{"try the booted slot", factoryEnv(), "A", func(p *Policy) error { return p.Try(ctx, "A", 3) }, ErrBooted},
		{"try an unknown slot", factoryEnv(), "A", func(p *Policy) error { return p.Try(ctx, "C", 3) }, ErrUnknownSlot},
		{"try recovery", factoryEnv(), "A", func(p *Policy) error { return p.Try(ctx, Recovery, 3) }, ErrReadOnly},
		{"try 10 times", factoryEnv(), "A", func(p *Policy) error { return p.Try(ctx, "B", 10) }, ErrTries},
		{"try from a slot on trial", bootenv.Vars{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "2", "LIFEBOAT_TRY": "B"}, "B", func(p *Policy) error { return p.Try(ctx, "A", 3) }, ErrOnTrial},
		{"try with nothing good behind", bootenv.Vars{"BOOT_ORDER": "A B C", "BOOT_A_LEFT": "0", "BOOT_C_LEFT": "0"}, "A", func(p *Policy) error { return p.Try(ctx, "B", 3) }, ErrNoFallback},
		{"mark good another slot", factoryEnv(), "A", func(p *Policy) error { _, err := p.MarkGood(ctx, "B", false); return err }, ErrNotBooted},
		{"mark good with no booted slot", factoryEnv(), "", func(p *Policy) error { _, err := p.MarkGood(ctx, "", false); return err }, ErrNotBooted},
		{"mark good recovery", factoryEnv(), Recovery, func(p *Policy) error { _, err := p.MarkGood(ctx, "", false); return err }, ErrReadOnly},
		{"mark bad recovery", factoryEnv(), "A", func(p *Policy) error { return p.MarkBad(ctx, Recovery) }, ErrReadOnly},
		{"mark bad unknown", factoryEnv(), "A", func(p *Policy) error { return p.MarkBad(ctx, "Z") }, ErrUnknownSlot},
		{"no env", nil, "A", func(p *Policy) error { return p.MarkBad(ctx, "A") }, bootenv.ErrNoEnv},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slots := []Name{"A", "B", Recovery}
			if tc.name == "try with nothing good behind" {
				slots = []Name{"A", "B", "C"} // and no recovery
			}
			r := newRig(t, tc.vars, slots...)
			r.setBooted(tc.booted)
			if err := tc.op(r.p); !errors.Is(err, tc.err) {
				t.Errorf("%s = %v, want %v", tc.name, err, tc.err)
			}
			if r.env.Saves() != 0 {
				t.Errorf("%s saved the environment after a refusal", tc.name)
			}
		})
	}
	// Forced, another slot may be marked good (a host-side repair).
	r := newRig(t, factoryEnv(), "A", "B", Recovery)
	r.setBooted("A")
	if s, err := r.p.MarkGood(ctx, "B", true); err != nil || s != "B" {
		t.Errorf("MarkGood(B, force) = %s, %v; want B, nil", s, err)
	}
}

// TestCutSave cuts the power during each transition's one Save, before the
// switch: the environment is the old one and the boot script boots the
// slot it booted before. With MemEnv's atomic Save, a transition of one
// Save can only leave the old state or the new.
func TestCutSave(t *testing.T) {
	cut := errors.New("power cut")
	for _, tc := range []struct {
		name string
		op   func(ctx context.Context, p *Policy) error
	}{
		{"try", func(ctx context.Context, p *Policy) error { return p.Try(ctx, "B", 3) }},
		{"mark good", func(ctx context.Context, p *Policy) error { _, err := p.MarkGood(ctx, "", false); return err }},
		{"mark bad", func(ctx context.Context, p *Policy) error { return p.MarkBad(ctx, "B") }},
		{"rollback", func(ctx context.Context, p *Policy) error { _, _, err := p.Rollback(ctx); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, factoryEnv(), "A", "B", Recovery)
			r.bootOnce()
			before := r.env.Vars()
			r.env.FailSaves(cut)
			if err := tc.op(context.Background(), r.p); !errors.Is(err, cut) {
				t.Fatalf("%s with the power cut = %v, want %v", tc.name, err, cut)
			}
			r.env.FailSaves(nil)
			if got := r.env.Vars(); got["BOOT_ORDER"] != before["BOOT_ORDER"] || got["BOOT_A_LEFT"] != before["BOOT_A_LEFT"] || got["BOOT_B_LEFT"] != before["BOOT_B_LEFT"] {
				t.Errorf("env after a cut %s = %v, want %v", tc.name, got, before)
			}
			if s := r.bootOnce(); s != "A" {
				t.Errorf("boot after a cut %s = %s, want A", tc.name, s)
			}
		})
	}
}

func TestFake(t *testing.T) {
	ctx := context.Background()
	f := NewFake("A", "B", Recovery)
	p := &Policy{Bootloader: f}
	if err := p.Try(ctx, "B", 2); err != nil {
		t.Fatal(err)
	}
	if s, _ := f.Reboot(ctx); s != "B" {
		t.Fatalf("Reboot() = %s, want B", s)
	}
	if _, err := p.MarkGood(ctx, "", false); err != nil {
		t.Fatal(err)
	}
	st, _ := f.Status(ctx)
	if got := brief(st); got != "booted=B next=B B:good:3 A:good:3 recovery:good:0" {
		t.Errorf("Fake status = %s", got)
	}
	boom := errors.New("boom")
	f.Fail(boom)
	if err := p.MarkBad(ctx, "A"); !errors.Is(err, boom) {
		t.Errorf("MarkBad with Fail = %v, want %v", err, boom)
	}
	want := []string{"status", "try B 2", "reboot", "status", "good B", "status", "status"}
	if got := f.Calls(); !cmp.Equal(got, want) {
		t.Errorf("Calls() = %q, want %q", got, want)
	}
}
