package durable

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// update is a way of replacing a file's content: WriteFile, or a buggy one.
type update func(fsys FS, name string, data []byte) error

// write is one update in a scenario.
type write struct{ name, data string }

// scenario is a durable starting state and the updates run on it.
type scenario struct {
	name   string
	dir    string            // made durable with MkdirAll before seeding, unless "."
	seed   map[string]string // durable content before the updates
	writes []write
}

var scenarios = []scenario{
	{
		name: "one name",
		dir:  ".",
		seed: map[string]string{"state": "A0 original"},
		writes: []write{
			{"state", "A1 first update, longer than the original"},
			{"state", "A2 short"},
			{"state", ""},
			{"state", "A4 the last update"},
		},
	},
	{
		name: "two names, one new",
		dir:  ".",
		seed: map[string]string{"a": "A0 original"},
		writes: []write{
			{"a", "A1 first"},
			{"b", "B1 first, b did not exist"},
			{"a", "A2 second, longer than the first"},
			{"b", "B2 second"},
			{"b", "B3 third"},
		},
	},
	{
		name: "subdirectory",
		dir:  "var/lib/lifeboat",
		seed: map[string]string{"var/lib/lifeboat/slot": "S0 slot A"},
		writes: []write{
			{"var/lib/lifeboat/slot", "S1 slot B"},
			{"var/lib/lifeboat/boot-count", "C1 one"},
			{"var/lib/lifeboat/slot", "S2 slot A again"},
		},
	},
}

// start returns a fresh Crash with the scenario's durable starting state.
func (sc scenario) start(t *testing.T) *Crash {
	t.Helper()
	c := NewCrash()
	if err := MkdirAll(c, sc.dir, 0o755); err != nil {
		t.Fatalf("MkdirAll(%q) = %v, want nil", sc.dir, err)
	}
	for _, name := range slices.Sorted(maps.Keys(sc.seed)) {
		if err := WriteFile(c, name, []byte(sc.seed[name]), 0o644); err != nil {
			t.Fatalf("WriteFile(%q) = %v, want nil", name, err)
		}
	}
	return c.Reboot()
}

// run applies the scenario's writes with u until one fails, and returns the
// index of the last write to each name that returned nil.
func (sc scenario) run(t *testing.T, fsys FS, u update) map[string]int {
	t.Helper()
	done := make(map[string]int)
	for i, w := range sc.writes {
		if err := u(fsys, w.name, []byte(w.data)); err != nil {
			if !errors.Is(err, ErrPowerCut) {
				t.Fatalf("update(%q) = %v, want nil or ErrPowerCut", w.name, err)
			}
			break
		}
		done[w.name] = i
	}
	return done
}

// names returns the names the scenario touches, sorted.
func (sc scenario) names() []string {
	set := maps.Clone(sc.seed)
	if set == nil {
		set = make(map[string]string)
	}
	for _, w := range sc.writes {
		set[w.name] = ""
	}
	return slices.Sorted(maps.Keys(set))
}

// violation is a state after reboot that breaks WriteFile's guarantee.
type violation struct {
	mode string // reboot mode
	cut  int
	name string
	kind string // "missing", "torn" (no complete version, e.g. empty) or "stale"
	got  string
}

func (v violation) String() string {
	return fmt.Sprintf("cut %d, %s: %s is %s: %q", v.cut, v.mode, v.name, v.kind, v.got)
}

// check compares what survived in fsys with what the scenario allows, given
// the writes that completed.
func (sc scenario) check(fsys FS, done map[string]int) []violation {
	var vs []violation
	for _, name := range sc.names() {
		last, completed := done[name]
		if !completed {
			last = -1 // the seed
		}
		b, err := fsys.ReadFile(name)
		if err != nil {
			if _, seeded := sc.seed[name]; seeded || completed {
				vs = append(vs, violation{name: name, kind: "missing", got: err.Error()})
			}
			continue
		}
		got := string(b)
		version, ok := -2, false
		if s, seeded := sc.seed[name]; seeded && s == got {
			version, ok = -1, true
		}
		for i, w := range sc.writes {
			if w.name == name && w.data == got {
				version, ok = i, true
			}
		}
		switch {
		case !ok:
			vs = append(vs, violation{name: name, kind: "torn", got: got})
		case version < last:
			vs = append(vs, violation{name: name, kind: "stale", got: got})
		}
	}
	return vs
}

// rebootMode is one way the cache can fail at the cut.
type rebootMode struct {
	name string
	opts RebootOptions
}

func latestData(_ string, vs [][]byte) []byte { return vs[len(vs)-1] }
func latestDir(_ string, n int) int           { return n - 1 }

// rebootModes returns the crashes explored: the default model and worse ones
// where part of the cache reached the disk.
func rebootModes() []rebootMode {
	modes := []rebootMode{
		{"lose unsynced", RebootOptions{}},
		{"keep all", RebootOptions{File: latestData, Dir: latestDir}},
		{"entries kept, data lost", RebootOptions{Dir: latestDir}},
		{"data kept, entries lost", RebootOptions{File: latestData}},
		{"torn prefix, entries kept", RebootOptions{
			File: func(_ string, vs [][]byte) []byte {
				cur := vs[len(vs)-1]
				return cur[:len(cur)/2]
			},
			Dir: latestDir,
		}},
		{"torn mix, entries kept", RebootOptions{
			File: func(_ string, vs [][]byte) []byte {
				prev, cur := vs[len(vs)-2], vs[len(vs)-1]
				b := slices.Clone(cur[:len(cur)/2])
				if len(prev) > len(b) {
					b = append(b, prev[len(b):]...)
				}
				return b
			},
			Dir: latestDir,
		}},
	}
	for k := 1; k <= 3; k++ {
		modes = append(modes, rebootMode{fmt.Sprintf("version %d", k), RebootOptions{
			File: func(_ string, vs [][]byte) []byte { return vs[min(k, len(vs)-1)] },
			Dir:  func(_ string, n int) int { return min(k, n-1) },
		}})
	}
	return modes
}

// explore runs the scenario with u, cut at every step, and returns every
// violation found after a reboot in every mode.
func explore(t *testing.T, sc scenario, u update) []violation {
	t.Helper()
	c := sc.start(t)
	sc.run(t, c, u)
	steps := c.Steps()
	if steps == 0 {
		t.Fatalf("%s: the updates took no steps", sc.name)
	}

	var vs []violation
	for cut := 0; cut <= steps; cut++ {
		c := sc.start(t)
		c.CutAfter(cut)
		done := sc.run(t, c, u)
		for _, m := range rebootModes() {
			for _, v := range sc.check(c.RebootWith(m.opts), done) {
				v.mode, v.cut = m.name, cut
				vs = append(vs, v)
			}
		}
	}
	return vs
}

func TestWriteFileSurvivesEveryCut(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if vs := explore(t, sc, func(fsys FS, name string, data []byte) error {
				return WriteFile(fsys, name, data, 0o644)
			}); len(vs) > 0 {
				t.Errorf("WriteFile: %d violations, want none; first %v", len(vs), vs[0])
			}
		})
	}
}

// TestWriteFileThenClean checks that after a cut at any step, Clean leaves
// exactly the state files and no temporary ones.
func TestWriteFileThenClean(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			c := sc.start(t)
			sc.run(t, c, func(fsys FS, name string, data []byte) error {
				return WriteFile(fsys, name, data, 0o644)
			})
			steps := c.Steps()
			sawTemp := false
			for cut := 0; cut <= steps; cut++ {
				c := sc.start(t)
				c.CutAfter(cut)
				done := sc.run(t, c, func(fsys FS, name string, data []byte) error {
					return WriteFile(fsys, name, data, 0o644)
				})
				for _, m := range rebootModes() {
					r := c.RebootWith(m.opts)
					if temps(t, r, sc.dir) > 0 {
						sawTemp = true
					}
					if err := Clean(r, sc.dir); err != nil {
						t.Fatalf("cut %d, %s: Clean(%q) = %v, want nil", cut, m.name, sc.dir, err)
					}
					if n := temps(t, r, sc.dir); n > 0 {
						t.Errorf("cut %d, %s: after Clean(%q), %d temporary files, want 0", cut, m.name, sc.dir, n)
					}
					if vs := sc.check(r, done); len(vs) > 0 {
						t.Errorf("cut %d, %s: after Clean(%q), state %v, want no violations", cut, m.name, sc.dir, vs)
					}
				}
			}
			// Not a requirement, but if no cut leaves a temporary file
			// this test does not exercise Clean.
			if !sawTemp {
				t.Errorf("no cut left a temporary file in %q, want some", sc.dir)
			}
		})
	}
}

// temps counts the temporary files in dir.
func temps(t *testing.T, fsys FS, dir string) int {
	t.Helper()
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir(%q) = %v, want nil", dir, err)
	}
	n := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), TempPrefix) {
			n++
		}
	}
	return n
}

// inPlace is the naive update: truncate the file and write it, syncing both
// the file and its directory.
func inPlace(fsys FS, name string, data []byte) error {
	f, err := fsys.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return fsys.SyncDir(path.Dir(name))
}

// replace is WriteFile with its syncs optional.
func replace(syncFile, syncDir bool) update {
	return func(fsys FS, name string, data []byte) error {
		tmp := path.Join(path.Dir(name), TempPrefix+path.Base(name))
		f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return err
		}
		if syncFile {
			if err := f.Sync(); err != nil {
				f.Close()
				return err
			}
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := fsys.Rename(tmp, name); err != nil {
			return err
		}
		if syncDir {
			return fsys.SyncDir(path.Dir(name))
		}
		return nil
	}
}

// TestCrashCatchesBugs proves the model strong enough: each classic mistake
// yields a violation at some cut.
func TestCrashCatchesBugs(t *testing.T) {
	for _, tt := range []struct {
		name string
		u    update
		kind string // a violation of this kind must be found
		// strict says the default model (Reboot) finds it, without a
		// worse crash from RebootWith.
		strict bool
	}{
		{name: "write in place, synced", u: inPlace, kind: "torn"},
		{name: "rename without file fsync", u: replace(false, true), kind: "torn", strict: true},
		{name: "rename without directory fsync", u: replace(true, false), kind: "stale", strict: true},
		{name: "rename without any fsync", u: replace(false, false), kind: "stale", strict: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var all []violation
			for _, sc := range scenarios {
				all = append(all, explore(t, sc, tt.u)...)
			}
			found, foundStrict := false, false
			for _, v := range all {
				if v.kind == tt.kind {
					found = true
					foundStrict = foundStrict || v.mode == "lose unsynced"
				}
			}
			if len(all) > 0 {
				t.Logf("%s: %d violations, e.g. %v", tt.name, len(all), all[0])
			}
			if !found {
				t.Errorf("%s: %d violations (%v), want one %s", tt.name, len(all), all, tt.kind)
			}
			if tt.strict && !foundStrict {
				t.Errorf("%s: no %s violation after Reboot, want one", tt.name, tt.kind)
			}
		})
	}
}

func TestWriteFileErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		want error
	}{
		{name: ".", want: fs.ErrInvalid},
		{name: "", want: fs.ErrInvalid},
		{name: "../escape", want: fs.ErrInvalid},
		{name: "/abs", want: fs.ErrInvalid},
		{name: "missing/dir/file", want: fs.ErrNotExist},
	} {
		c := NewCrash()
		if err := WriteFile(c, tt.name, []byte("x"), 0o644); !errors.Is(err, tt.want) {
			t.Errorf("WriteFile(%q) = %v, want %v", tt.name, err, tt.want)
		}
		if n := temps(t, c, "."); n != 0 {
			t.Errorf("WriteFile(%q) left %d temporary files, want 0", tt.name, n)
		}
	}
}

// TestWriteFileCleansUpOnError checks that a failure before the rename
// removes the temporary file.
func TestWriteFileCleansUpOnError(t *testing.T) {
	c := NewCrash()
	if err := c.MkdirAll("state", 0o755); err != nil {
		t.Fatalf("MkdirAll(state) = %v, want nil", err)
	}
	// Renaming a file over a directory fails.
	if err := WriteFile(c, "state", []byte("x"), 0o644); err == nil {
		t.Fatalf("WriteFile(state) over a directory = nil, want an error")
	}
	if n := temps(t, c, "."); n != 0 {
		t.Errorf("WriteFile(state) over a directory left %d temporary files, want 0", n)
	}
}

func TestMkdirAllDurable(t *testing.T) {
	c := NewCrash()
	if err := MkdirAll(c, "a/b/c", 0o755); err != nil {
		t.Fatalf("MkdirAll(a/b/c) = %v, want nil", err)
	}
	r := c.Reboot()
	if _, err := r.ReadDir("a/b/c"); err != nil {
		t.Errorf("after Reboot, ReadDir(a/b/c) = %v, want nil", err)
	}

	// Without the helper, the new directories are not durable.
	c = NewCrash()
	if err := c.MkdirAll("a/b/c", 0o755); err != nil {
		t.Fatalf("Crash.MkdirAll(a/b/c) = %v, want nil", err)
	}
	if _, err := c.Reboot().ReadDir("a"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Crash.MkdirAll and Reboot, ReadDir(a) = %v, want ErrNotExist", err)
	}
}

// FuzzWriteFile checks WriteFile's guarantee over random sequences of
// writes to two names, cut at a random step, in every reboot mode.
func FuzzWriteFile(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3}, uint16(3))
	f.Add([]byte{7, 7, 7, 40, 41}, uint16(11))
	f.Add([]byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, ops []byte, cut uint16) {
		if len(ops) > 32 {
			ops = ops[:32]
		}
		sc := scenario{dir: ".", seed: map[string]string{"a": "a-seed"}}
		for i, b := range ops {
			name := "ab"[b&1 : b&1+1]
			// Unique per write, of varied length (possibly long).
			data := fmt.Sprintf("%s%d-%s", name, i, strings.Repeat("x", int(b>>1)*4))
			sc.writes = append(sc.writes, write{name, data})
		}
		u := func(fsys FS, name string, data []byte) error { return WriteFile(fsys, name, data, 0o644) }
		c := sc.start(t)
		sc.run(t, c, u)
		steps := c.Steps()

		c = sc.start(t)
		c.CutAfter(int(cut) % (steps + 1))
		done := sc.run(t, c, u)
		for _, m := range rebootModes() {
			r := c.RebootWith(m.opts)
			if vs := sc.check(r, done); len(vs) > 0 {
				t.Fatalf("cut %d, %s: %v, want no violations", cut, m.name, vs)
			}
			if err := Clean(r, "."); err != nil {
				t.Fatalf("cut %d, %s: Clean(.) = %v, want nil", cut, m.name, err)
			}
		}
	})
}

// recorder is an FS that records the renames, file syncs and directory
// syncs made through it.
type recorder struct {
	FS
	calls []string
}

func (r *recorder) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := r.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &recordedFile{File: f, r: r}, nil
}

func (r *recorder) Rename(oldname, newname string) error {
	r.calls = append(r.calls, "rename "+newname)
	return r.FS.Rename(oldname, newname)
}

func (r *recorder) SyncDir(dir string) error {
	r.calls = append(r.calls, "syncdir "+dir)
	return r.FS.SyncDir(dir)
}

type recordedFile struct {
	File
	r *recorder
}

func (f *recordedFile) Sync() error {
	name := f.Name()
	if strings.HasPrefix(path.Base(name), TempPrefix) {
		name = "temp"
	}
	f.r.calls = append(f.r.calls, "sync "+name)
	return f.File.Sync()
}

// TestWriteFileSyncsRenamedFile checks the order of WriteFile's syncs: the
// temporary file, the rename, the file again by its new name (on FAT the
// entry a rename fills in is written back with the file's inode, and a cut
// after the directory's fsync alone left grubenv on freed clusters), and
// the directory.
func TestWriteFileSyncsRenamedFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &recorder{FS: OS(dir)}
	if err := WriteFile(r, "d/grubenv", []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := []string{"sync temp", "rename d/grubenv", "sync d/grubenv", "syncdir d"}
	if !slices.Equal(r.calls, want) {
		t.Errorf("WriteFile calls = %q, want %q", r.calls, want)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "d", "grubenv")); err != nil || string(b) != "new" {
		t.Errorf("d/grubenv = %q, %v; want %q", b, err, "new")
	}
}
