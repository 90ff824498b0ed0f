package slot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

// rig is a device: an environment, the kernel command line the last boot
// left, and the policy over Vars.
type rig struct {
	t       *testing.T
	env     *MemEnv
	v       *Vars
	p       *Policy
	slots   []Name
	cmdline string
}

func newRig(t *testing.T, vars bootenv.Vars, slots ...Name) *rig {
	t.Helper()
	r := &rig{t: t, env: NewMemEnv(vars), slots: slots, cmdline: filepath.Join(t.TempDir(), "cmdline")}
	r.setBooted("")
	var err error
	r.v, err = NewVars(r.env, WithSlots(slots...), WithCmdline(r.cmdline))
	if err != nil {
		t.Fatal(err)
	}
	r.p = &Policy{Bootloader: r.v}
	return r
}

func (r *rig) setBooted(s Name) {
	r.t.Helper()
	line := "console=ttyS0"
	if s != "" {
		line += " lifeboat.slot=" + string(s)
	}
	if err := os.WriteFile(r.cmdline, []byte(line+"\n"), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// bootOnce powers the device on: the boot script as documented on Vars
// picks an entry, spends one of its tries and boots it with its name on
// the kernel command line.
func (r *rig) bootOnce() Name {
	r.t.Helper()
	s, err := SimulateBoot(context.Background(), r.env, r.slots, DefaultTries)
	if err != nil {
		r.t.Fatalf("boot: %v", err)
	}
	r.setBooted(s)
	return s
}

func (r *rig) status() Status {
	r.t.Helper()
	st, err := r.v.Status(context.Background())
	if err != nil {
		r.t.Fatalf("Status() = %v", err)
	}
	return st
}

// step runs a transition and checks it wrote the environment exactly once
// (or not at all when it failed): each transition is one atomic Save.
func (r *rig) step(what string, f func(ctx context.Context) error) {
	r.t.Helper()
	before := r.env.Saves()
	err := f(context.Background())
	want := 1
	if err != nil {
		want = 0
	}
	if n := r.env.Saves() - before; n != want {
		r.t.Errorf("%s: %d saves, want %d", what, n, want)
	}
	if err != nil {
		r.t.Fatalf("%s: %v", what, err)
	}
}

// brief is a status in one line: booted, next and each slot's state and
// tries: "booted=A next=B A:good:3 B:trying:3".
func brief(st Status) string {
	s := []string{"booted=" + string(st.Booted), "next=" + string(st.Next)}
	for _, ss := range st.Slots {
		s = append(s, string(ss.Name)+":"+string(ss.State)+":"+itoa(ss.TriesLeft))
	}
	return strings.Join(s, " ")
}

func itoa(n int) string { return string(rune('0' + n)) }

func (r *rig) want(when, want string) {
	r.t.Helper()
	if got := brief(r.status()); got != want {
		r.t.Errorf("%s: Status() = %s, want %s", when, got, want)
	}
}

func TestSimulateBootMatchesRealRuns(t *testing.T) {
	// The U-Boot flash-mode runs recorded under QEMU: BOOT_ORDER=B A, 3/3.
	r := newRig(t, bootenv.Vars{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}, "A", "B")
	var got []string
	for range 5 {
		s := r.bootOnce()
		got = append(got, string(s)+r.env.Vars()[LeftVar(s)])
	}
	if want := []string{"B2", "B1", "B0", "A2", "A1"}; !cmp.Equal(got, want) {
		t.Errorf("five boots = %v, want %v", got, want)
	}
	// Both counters at 0: the script sets them back and resets.
	r.env.Save(context.Background(), bootenv.Vars{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"})
	if s := r.bootOnce(); s != "" || r.env.Vars()["BOOT_A_LEFT"] != "3" || r.env.Vars()["BOOT_B_LEFT"] != "3" {
		t.Errorf("boot with no tries = %q, %v; want none and counters back to 3", s, r.env.Vars())
	}
	// docs/bootloader-grub.md's grub.cfg: without BOOT_ORDER or counters
	// nothing boots but recovery, and nothing is written.
	for _, vars := range []bootenv.Vars{nil, {}, {"BOOT_ORDER": "B A"}, {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "", "BOOT_B_LEFT": "0"}} {
		r = newRig(t, vars, "A", "B", Recovery)
		if s := r.bootOnce(); s != Recovery || r.env.Saves() != 0 {
			t.Errorf("boot of %v = %q after %d saves, want recovery and none", vars, s, r.env.Saves())
		}
	}
}

func TestVarsStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		vars   bootenv.Vars
		slots  []Name
		booted Name
		want   string
	}{
		{"empty env: nothing boots", bootenv.Vars{}, []Name{"A", "B"}, "A", "booted=A next= A:inactive:0 B:inactive:0"},
		{"empty env: recovery boots", bootenv.Vars{}, []Name{"A", "B", "recovery"}, "recovery", "booted=recovery next=recovery A:inactive:0 B:inactive:0 recovery:good:0"},
		{"unset counters", bootenv.Vars{"BOOT_ORDER": "A B recovery"}, []Name{"A", "B", "recovery"}, "A", "booted=A next=recovery A:failed:0 B:failed:0 recovery:good:0"},
		{"trying", bootenv.Vars{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3", "LIFEBOAT_TRY": "B"}, []Name{"A", "B"}, "A", "booted=A next=B B:trying:3 A:good:3"},
		{"trial booted on its last try", bootenv.Vars{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0", "LIFEBOAT_TRY": "B"}, []Name{"A", "B"}, "B", "booted=B next=A B:trying:0 A:good:3"},
		{"trial failed, fell back", bootenv.Vars{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "0", "LIFEBOAT_TRY": "B"}, []Name{"A", "B"}, "A", "booted=A next=A B:failed:0 A:good:2"},
		{"good slot ran out without mark-good", bootenv.Vars{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "3"}, []Name{"A", "B"}, "A", "booted=A next=B A:failed:0 B:good:3"},
		{"inactive slot", bootenv.Vars{"BOOT_ORDER": "A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}, []Name{"A", "B"}, "A", "booted=A next=A A:good:3 B:inactive:3"},
		{"recovery when all failed", bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"}, []Name{"A", "B", "recovery"}, "recovery", "booted=recovery next=recovery A:failed:0 B:failed:0 recovery:good:0"},
		{"factory before recovery", bootenv.Vars{"BOOT_ORDER": "A B factory recovery", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"}, []Name{"A", "B", "factory", "recovery"}, "", "booted= next=factory A:failed:0 B:failed:0 factory:good:0 recovery:good:0"},
		{"slots from the env", bootenv.Vars{"BOOT_ORDER": "B A recovery", "BOOT_A_LEFT": "1", "BOOT_B_LEFT": "2", "BOOT_C_LEFT": "3"}, nil, "B", "booted=B next=B B:good:2 A:good:1 recovery:good:0 C:inactive:3"},
		{"names not configured are ignored", bootenv.Vars{"BOOT_ORDER": "X B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3", "BOOT_X_LEFT": "3"}, []Name{"A", "B"}, "B", "booted=B next=B B:good:3 A:good:3"},
		{"setexpr's hex and garbage", bootenv.Vars{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "x", "BOOT_B_LEFT": "0x2"}, []Name{"A", "B"}, "B", "booted=B next=B A:failed:0 B:good:2"},
		{"recovery listed first still comes last", bootenv.Vars{"BOOT_ORDER": "recovery A", "BOOT_A_LEFT": "1"}, []Name{"A", "recovery"}, "A", "booted=A next=A recovery:good:0 A:good:1"},
		{"nothing bootable", bootenv.Vars{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"}, []Name{"A", "B"}, "A", "booted=A next= A:failed:0 B:failed:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.vars, tc.slots...)
			r.setBooted(tc.booted)
			r.want("Status", tc.want)
			if r.env.Saves() != 0 {
				t.Errorf("Status saved the environment")
			}
		})
	}
}

func TestVarsTransitions(t *testing.T) {
	ab := bootenv.Vars{"BOOT_ORDER": "A B recovery", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "3"}
	with := func(v bootenv.Vars, kv ...string) bootenv.Vars {
		out := bootenv.Vars{}
		for k, x := range v {
			out[k] = x
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "-" {
				delete(out, kv[i])
			} else {
				out[kv[i]] = kv[i+1]
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		vars bootenv.Vars
		op   func(ctx context.Context, v *Vars) error
		want bootenv.Vars
		err  error
	}{
		{"try", ab, func(ctx context.Context, v *Vars) error { return v.Try(ctx, "B", 2) },
			with(ab, "BOOT_ORDER", "B A recovery", "BOOT_B_LEFT", "2", "LIFEBOAT_TRY", "B"), nil},
		{"try abandons another pending trial", with(ab, "LIFEBOAT_TRY", "B"), func(ctx context.Context, v *Vars) error { return v.Try(ctx, "A", 3) },
			with(ab, "BOOT_ORDER", "A B recovery", "BOOT_A_LEFT", "3", "BOOT_B_LEFT", "0", "LIFEBOAT_TRY", "A"), nil},
		{"try an inactive slot", with(ab, "BOOT_ORDER", "A"), func(ctx context.Context, v *Vars) error { return v.Try(ctx, "B", 1) },
			with(ab, "BOOT_ORDER", "B A recovery", "BOOT_B_LEFT", "1", "LIFEBOAT_TRY", "B"), nil},
		{"mark good", with(ab, "BOOT_ORDER", "B A recovery", "BOOT_B_LEFT", "1", "LIFEBOAT_TRY", "B"), func(ctx context.Context, v *Vars) error { return v.MarkGood(ctx, "B") },
			with(ab, "BOOT_ORDER", "B A recovery", "BOOT_B_LEFT", "3"), nil},
		{"mark good keeps a pending trial ahead", with(ab, "BOOT_ORDER", "B A recovery", "LIFEBOAT_TRY", "B"), func(ctx context.Context, v *Vars) error { return v.MarkGood(ctx, "A") },
			with(ab, "BOOT_ORDER", "B A recovery", "BOOT_A_LEFT", "3", "LIFEBOAT_TRY", "B"), nil},
		{"mark good forgets a failed trial", with(ab, "BOOT_ORDER", "B A recovery", "BOOT_B_LEFT", "0", "LIFEBOAT_TRY", "B"), func(ctx context.Context, v *Vars) error { return v.MarkGood(ctx, "A") },
			with(ab, "BOOT_ORDER", "A B recovery", "BOOT_A_LEFT", "3", "BOOT_B_LEFT", "0"), nil},
		{"mark bad", ab, func(ctx context.Context, v *Vars) error { return v.MarkBad(ctx, "A") },
			with(ab, "BOOT_ORDER", "B A recovery", "BOOT_A_LEFT", "0"), nil},
		{"mark bad the trial", with(ab, "BOOT_ORDER", "B A recovery", "LIFEBOAT_TRY", "B"), func(ctx context.Context, v *Vars) error { return v.MarkBad(ctx, "B") },
			with(ab, "BOOT_ORDER", "A B recovery", "BOOT_B_LEFT", "0"), nil},
		{"recovery moved back last", with(ab, "BOOT_ORDER", "recovery A B"), func(ctx context.Context, v *Vars) error { return v.MarkGood(ctx, "A") },
			with(ab, "BOOT_A_LEFT", "3"), nil},
		{"try recovery", ab, func(ctx context.Context, v *Vars) error { return v.Try(ctx, Recovery, 1) }, ab, ErrReadOnly},
		{"mark bad recovery", ab, func(ctx context.Context, v *Vars) error { return v.MarkBad(ctx, Recovery) }, ab, ErrReadOnly},
		{"mark good unknown", ab, func(ctx context.Context, v *Vars) error { return v.MarkGood(ctx, "C") }, ab, ErrUnknownSlot},
		{"try 0 times", ab, func(ctx context.Context, v *Vars) error { return v.Try(ctx, "B", 0) }, ab, ErrTries},
		{"try 10 times", ab, func(ctx context.Context, v *Vars) error { return v.Try(ctx, "B", 10) }, ab, ErrTries},
		{"no env", nil, func(ctx context.Context, v *Vars) error { return v.MarkGood(ctx, "A") }, nil, bootenv.ErrNoEnv},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := NewMemEnv(tc.vars)
			v, err := NewVars(env, WithSlots("A", "B", Recovery))
			if err != nil {
				t.Fatal(err)
			}
			err = tc.op(context.Background(), v)
			if !errors.Is(err, tc.err) {
				t.Fatalf("op = %v, want %v", err, tc.err)
			}
			if diff := cmp.Diff(tc.want, env.Vars()); diff != "" {
				t.Errorf("env after op (-want +got):\n%s", diff)
			}
			wantSaves := 1
			if tc.err != nil {
				wantSaves = 0
			}
			if env.Saves() != wantSaves {
				t.Errorf("op saved %d times, want %d", env.Saves(), wantSaves)
			}
		})
	}
}

func TestNewVars(t *testing.T) {
	env := NewMemEnv(bootenv.Vars{})
	for _, tc := range []struct {
		name string
		opts []VarsOption
		ok   bool
	}{
		{"defaults", nil, true},
		{"good count 9", []VarsOption{WithGoodTries(9)}, true},
		{"good count 0", []VarsOption{WithGoodTries(0)}, false},
		{"good count 10", []VarsOption{WithGoodTries(10)}, false},
		{"bad name", []VarsOption{WithSlots("A", "B C")}, false},
		{"twice", []VarsOption{WithSlots("A", "A")}, false},
	} {
		if _, err := NewVars(env, tc.opts...); (err == nil) != tc.ok {
			t.Errorf("NewVars(%s) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
