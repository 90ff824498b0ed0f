package grub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
)

func TestFileSaveLoad(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p := filepath.Join(dir, "grubenv")
	f := Open(p, GRUBWrites())
	if got, want := f.String(), "grubenv "+p; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if _, err := f.Load(ctx); !errors.Is(err, bootenv.ErrNoEnv) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want an error wrapping ErrNoEnv and ErrNotExist", err)
	}
	for _, v := range []bootenv.Vars{
		{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
		{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0", "note": "two\nlines \\ and = signs"},
		{},
	} {
		if err := f.Save(ctx, v); err != nil {
			t.Fatalf("Save(%q) = %v, want nil", v, err)
		}
		got, err := f.Load(ctx)
		if err != nil {
			t.Fatalf("Load() after Save(%q) = %v, want nil", v, err)
		}
		if diff := cmp.Diff(v, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Load() after Save(%q) differs (-want +got):\n%s", v, diff)
		}
		fi, err := os.Stat(p)
		if err != nil || fi.Size() != BlockSize {
			t.Errorf("after Save(%q): stat %s = %v, %v; want %d bytes", v, p, fi, err, BlockSize)
		}
	}
	if err := f.Clean(); err != nil {
		t.Errorf("Clean() = %v, want nil", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("after Save and Clean, %s holds %d entries, want 1 (grubenv)", dir, len(ents))
	}
}

func TestFileLoadCorrupt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"zeros", make([]byte, BlockSize)},
		{"truncated", block("a=1\n")[:600]},
		{"overlong", append(block("a=1\n"), "b=2\n"...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, tc.name), tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			f := NewFile(durable.OS(dir), tc.name)
			_, err := f.Load(ctx)
			if !errors.Is(err, bootenv.ErrNoEnv) || !errors.Is(err, bootenv.ErrCorrupt) {
				t.Errorf("Load(%s) = %v, want an error wrapping ErrNoEnv and ErrCorrupt", tc.name, err)
			}
		})
	}
}

func TestFileSaveErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// Fits the block but not the first sector less the reserve.
	big := bootenv.Vars{"a": strings.Repeat("x", SectorSize-SectorReserve-len(Signature)-len(Warning)-2)}
	fits := bootenv.Vars{"a": strings.Repeat("x", SectorSize-SectorReserve-len(Signature)-len(Warning)-3)}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		opts    []Option
		v       bootenv.Vars
		wantErr error
	}{
		{"first sector, GRUB writes", ctx, []Option{GRUBWrites()}, fits, nil},
		{"beyond first sector, GRUB writes", ctx, []Option{GRUBWrites()}, big, ErrTooLarge},
		{"beyond first sector, only Lifeboat writes", ctx, nil, big, nil},
		{"beyond the block", ctx, nil, bootenv.Vars{"a": strings.Repeat("x", BlockSize)}, ErrTooLarge},
		{"bad name", ctx, nil, bootenv.Vars{"a=b": ""}, ErrBadName},
		{"canceled", canceled, nil, fits, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFile(durable.OS(dir), "grubenv", tc.opts...)
			if err := f.Save(tc.ctx, tc.v); !errors.Is(err, tc.wantErr) {
				t.Errorf("Save(%d bytes of variables) = %v, want %v", len(tc.v["a"]), err, tc.wantErr)
			}
		})
	}
	if _, err := NewFile(durable.OS(dir), "grubenv").Load(canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("Load(canceled) = %v, want %v", err, context.Canceled)
	}
}

// The cut test: a sequence of Saves, as pkg/slot makes them, cut at every
// step of every Save and rebooted in every way pkg/durable models. After the
// reboot the grubenv parses and holds the variables before the cut Save or
// after it, never anything else.

const envDir = "EFI/BOOT"

var envName = envDir + "/grubenv"

var saves = []bootenv.Vars{
	{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},                    // installed: A good
	{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},                    // try B
	{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "2"},                    // GRUB took a try (here from Linux)
	{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3", "note": "a\\b\nc"}, // B good
	{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "3"},                    // A bad, a variable gone
	{}, // everything gone
}

// seedCrash returns a durable Crash holding saves[0] in envName.
func seedCrash(t *testing.T) *durable.Crash {
	t.Helper()
	c := durable.NewCrash()
	if err := durable.MkdirAll(c, envDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := NewFile(c, envName).Save(context.Background(), saves[0]); err != nil {
		t.Fatal(err)
	}
	return c.Reboot()
}

// runSaves saves saves[1:] in turn and returns how many completed.
func runSaves(c *durable.Crash) int {
	f := NewFile(c, envName, GRUBWrites())
	for i, v := range saves[1:] {
		if err := f.Save(context.Background(), v); err != nil {
			return i
		}
	}
	return len(saves) - 1
}

func lastData(_ string, vs [][]byte) []byte { return vs[len(vs)-1] }
func lastDir(_ string, n int) int           { return n - 1 }

// tornAt returns the current version of a file with its sectors from
// sector k on taken from the version before (a write that reached the disk
// up to that sector boundary).
func tornAt(k int) func(string, [][]byte) []byte {
	return func(_ string, vs [][]byte) []byte {
		prev, cur := vs[len(vs)-2], vs[len(vs)-1]
		b := slices.Clone(cur[:min(len(cur), k*SectorSize)])
		if len(prev) > len(b) {
			b = append(b, prev[len(b):]...)
		}
		return b
	}
}

// rebootModes are the crashes explored: durable.Crash's default (unsynced
// changes lost) and worse ones, through RebootWith, where part of the cache
// reached the disk.
func rebootModes() []struct {
	name string
	opts durable.RebootOptions
} {
	type mode = struct {
		name string
		opts durable.RebootOptions
	}
	modes := []mode{
		{"lose unsynced", durable.RebootOptions{}},
		{"keep all", durable.RebootOptions{File: lastData, Dir: lastDir}},
		{"entries kept, data lost", durable.RebootOptions{Dir: lastDir}},
		{"data kept, entries lost", durable.RebootOptions{File: lastData}},
	}
	for k := 0; k <= BlockSize/SectorSize; k++ {
		modes = append(modes,
			mode{fmt.Sprintf("torn at sector %d, entries kept", k), durable.RebootOptions{File: tornAt(k), Dir: lastDir}},
			mode{fmt.Sprintf("torn at sector %d, entries lost", k), durable.RebootOptions{File: tornAt(k)}})
	}
	for k := 1; k <= 3; k++ {
		modes = append(modes, mode{fmt.Sprintf("version %d", k), durable.RebootOptions{
			File: func(_ string, vs [][]byte) []byte { return vs[min(k, len(vs)-1)] },
			Dir:  func(_ string, n int) int { return min(k, n-1) },
		}})
	}
	return modes
}

func TestSaveSurvivesEveryCut(t *testing.T) {
	ctx := context.Background()
	c := seedCrash(t)
	if done := runSaves(c); done != len(saves)-1 {
		t.Fatalf("uncut: %d Saves completed, want %d", done, len(saves)-1)
	}
	steps := c.Steps()
	sawOld, sawNew := false, false
	for cut := 0; cut <= steps; cut++ {
		c := seedCrash(t)
		c.CutAfter(cut)
		done := runSaves(c)
		for _, m := range rebootModes() {
			r := c.RebootWith(m.opts)
			f := NewFile(r, envName)
			got, err := f.Load(ctx)
			if err != nil {
				t.Errorf("cut after step %d of %d, %s: Load() = %v, want saves[%d] or saves[%d]", cut, steps, m.name, err, done, done+1)
				continue
			}
			old := saves[done]
			switch {
			case cmp.Equal(got, old, cmpopts.EquateEmpty()):
				sawOld = true
			case done+1 < len(saves) && cmp.Equal(got, saves[done+1], cmpopts.EquateEmpty()):
				sawNew = true
			default:
				t.Errorf("cut after step %d of %d, %s: Load() = %q, want saves[%d] %q or the next", cut, steps, m.name, got, done, old)
				continue
			}
			// Clean at the next start leaves the same variables and no
			// temporary files.
			if err := f.Clean(); err != nil {
				t.Errorf("cut after step %d, %s: Clean() = %v, want nil", cut, m.name, err)
			}
			if again, err := f.Load(ctx); err != nil || !cmp.Equal(again, got, cmpopts.EquateEmpty()) {
				t.Errorf("cut after step %d, %s: Load() after Clean = %q, %v; want %q", cut, m.name, again, err, got)
			}
			if ents, err := r.ReadDir(envDir); err != nil || len(ents) != 1 {
				t.Errorf("cut after step %d, %s: after Clean, %s holds %v, %v; want only grubenv", cut, m.name, envDir, ents, err)
			}
		}
	}
	if !sawOld || !sawNew {
		t.Errorf("over all cuts: saw the old variables %v, the new %v; want both (else the test explores nothing)", sawOld, sawNew)
	}
}

// TestSaveInPlaceIsNotSafe shows what the cut test catches: the block
// written in place (truncate, write, sync), the way a naive Save would,
// leaves an empty or torn grubenv after some cuts.
func TestSaveInPlaceIsNotSafe(t *testing.T) {
	ctx := context.Background()
	inPlace := func(c *durable.Crash) int {
		for i, v := range saves[1:] {
			var b bytes.Buffer
			if err := Encode(&b, v); err != nil {
				panic(err)
			}
			f, err := c.OpenFile(envName, os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return i
			}
			_, err = f.Write(b.Bytes())
			if err == nil {
				err = f.Sync()
			}
			if err == nil {
				err = f.Close()
			}
			if err != nil {
				return i
			}
		}
		return len(saves) - 1
	}
	c := seedCrash(t)
	inPlace(c)
	bad := 0
	for cut := 0; cut <= c.Steps(); cut++ {
		c := seedCrash(t)
		c.CutAfter(cut)
		done := inPlace(c)
		for _, m := range rebootModes() {
			got, err := NewFile(c.RebootWith(m.opts), envName).Load(ctx)
			if err != nil || !cmp.Equal(got, saves[done], cmpopts.EquateEmpty()) &&
				(done+1 >= len(saves) || !cmp.Equal(got, saves[done+1], cmpopts.EquateEmpty())) {
				bad++
			}
		}
	}
	if bad == 0 {
		t.Errorf("writing in place: no cut left a bad grubenv, want some (the crash model explores too little)")
	}
}

// TestGRUBSaveEnvTear models GRUB's own save_env, which rewrites the
// block's two sectors in place, cut between them (either sector written,
// the other not). With the layout GRUBWrites keeps, every tear reads as the
// old variables or the new; with variables spread over both sectors, some
// tear reads as neither.
func TestGRUBSaveEnvTear(t *testing.T) {
	type set struct{ name, value string }
	for _, tc := range []struct {
		name     string
		vars     bootenv.Vars
		edits    []set // what grub.cfg's save_env writes
		wantSafe bool
	}{
		{
			name:     "decrement",
			vars:     bootenv.Vars{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
			edits:    []set{{"BOOT_B_LEFT", "2"}},
			wantSafe: true,
		},
		{
			name:     "decrement to zero and add a variable",
			vars:     bootenv.Vars{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "1"},
			edits:    []set{{"BOOT_B_LEFT", "0"}, {"BOOT_A_LEFT", "2"}, {"LAST_SLOT", "A"}},
			wantSafe: true,
		},
		{
			name:     "counter lengthened",
			vars:     bootenv.Vars{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "1", "BOOT_B_LEFT": "1"},
			edits:    []set{{"BOOT_A_LEFT", "10"}},
			wantSafe: true,
		},
		{
			// A shorter value moves every later line back by a byte,
			// across the boundary between the sectors.
			name: "variables in both sectors",
			vars: bootenv.Vars{
				"BOOT_A_LEFT": "10",
				"BOOT_ORDER":  "A B",
				"padding":     strings.Repeat("p", 400),
				"z":           "last",
			},
			edits:    []set{{"BOOT_A_LEFT", "9"}},
			wantSafe: false,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Encode(&b, tc.vars); err != nil {
				t.Fatal(err)
			}
			old := b.Bytes()
			_, used, _ := encode(tc.vars)
			if fits := used <= SectorSize-SectorReserve; fits != tc.wantSafe {
				t.Fatalf("%q uses %d bytes: fits GRUBWrites = %v, want %v", tc.vars, used, fits, tc.wantSafe)
			}
			cur := slices.Clone(old)
			want := bootenv.Vars{}
			for k, v := range tc.vars {
				want[k] = v
			}
			for _, e := range tc.edits {
				if !grubSet(cur, e.name, e.value) {
					t.Fatalf("GRUB save_env %s=%s: block too small", e.name, e.value)
				}
				want[e.name] = e.value
			}
			if got, err := Parse(bytes.NewReader(cur)); err != nil || !cmp.Equal(got, want) {
				t.Fatalf("Parse(after GRUB's save_env) = %q, %v; want %q", got, err, want)
			}
			safe := true
			for s := 0; s < BlockSize/SectorSize; s++ {
				// The write reached every sector but s.
				torn := slices.Clone(cur)
				copy(torn[s*SectorSize:(s+1)*SectorSize], old[s*SectorSize:])
				got, ok := grubLoad(torn)
				if !ok || !cmp.Equal(got, tc.vars) && !cmp.Equal(got, want) {
					safe = false
					t.Logf("sector %d not written: GRUB loads neither the old variables nor the new (%d variables, %v)", s, len(got), ok)
				}
			}
			if safe != tc.wantSafe {
				t.Errorf("every tear of GRUB's write reads old or new = %v, want %v", safe, tc.wantSafe)
			}
		})
	}
}
