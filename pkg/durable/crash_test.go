package durable

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"syscall"
	"testing"
)

// tree returns every file in fsys with its content, and every directory
// with the content "/".
func tree(t *testing.T, fsys FS) map[string]string {
	t.Helper()
	m := make(map[string]string)
	var walk func(dir string)
	walk = func(dir string) {
		ents, err := fsys.ReadDir(dir)
		if err != nil {
			t.Fatalf("ReadDir(%q) = %v, want nil", dir, err)
		}
		for _, e := range ents {
			name := path.Join(dir, e.Name())
			if e.IsDir() {
				m[name] = "/"
				walk(name)
				continue
			}
			b, err := fsys.ReadFile(name)
			if err != nil {
				t.Fatalf("ReadFile(%q) = %v, want nil", name, err)
			}
			m[name] = string(b)
		}
	}
	walk(".")
	return m
}

// create writes a new file, syncing it if sync is set.
func create(t *testing.T, fsys FS, name, data string, sync bool) {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatalf("OpenFile(%q) = %v, want nil", name, err)
	}
	if _, err := f.Write([]byte(data)); err != nil {
		t.Fatalf("Write(%q) = %v, want nil", name, err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatalf("Sync(%q) = %v, want nil", name, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close(%q) = %v, want nil", name, err)
	}
}

func syncDir(t *testing.T, fsys FS, dir string) {
	t.Helper()
	if err := fsys.SyncDir(dir); err != nil {
		t.Fatalf("SyncDir(%q) = %v, want nil", dir, err)
	}
}

// durableBase returns a Crash holding a durable file "old" = "v1" and an
// empty durable directory "d".
func durableBase(t *testing.T) *Crash {
	t.Helper()
	c := NewCrash()
	create(t, c, "old", "v1", true)
	if err := c.MkdirAll("d", 0o755); err != nil {
		t.Fatalf("MkdirAll(d) = %v, want nil", err)
	}
	syncDir(t, c, ".")
	return c.Reboot()
}

// TestCrashModel pins each rule of the model documented in the package
// comment.
func TestCrashModel(t *testing.T) {
	base := map[string]string{"old": "v1", "d": "/"}
	with := func(kv ...string) map[string]string {
		m := maps.Clone(base)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	without := func(names ...string) map[string]string {
		m := maps.Clone(base)
		for _, name := range names {
			delete(m, name)
		}
		return m
	}
	for _, tt := range []struct {
		name string
		do   func(t *testing.T, c *Crash)
		want map[string]string // after Reboot
	}{
		{
			name: "nothing",
			do:   func(t *testing.T, c *Crash) {},
			want: base,
		},
		{
			name: "new file, not synced, directory not synced",
			do:   func(t *testing.T, c *Crash) { create(t, c, "new", "v", false) },
			want: base,
		},
		{
			name: "new file, synced, directory not synced: its name is lost",
			do:   func(t *testing.T, c *Crash) { create(t, c, "new", "v", true) },
			want: base,
		},
		{
			name: "new file, not synced, directory synced: empty",
			do: func(t *testing.T, c *Crash) {
				create(t, c, "new", "v", false)
				syncDir(t, c, ".")
			},
			want: with("new", ""),
		},
		{
			name: "new file, synced, directory synced",
			do: func(t *testing.T, c *Crash) {
				create(t, c, "new", "v", true)
				syncDir(t, c, ".")
			},
			want: with("new", "v"),
		},
		{
			name: "new file in subdirectory, root synced instead",
			do: func(t *testing.T, c *Crash) {
				create(t, c, "d/new", "v", true)
				syncDir(t, c, ".")
			},
			want: base,
		},
		{
			name: "new file in subdirectory, subdirectory synced",
			do: func(t *testing.T, c *Crash) {
				create(t, c, "d/new", "v", true)
				syncDir(t, c, "d")
			},
			want: with("d/new", "v"),
		},
		{
			name: "overwrite, not synced",
			do:   func(t *testing.T, c *Crash) { create(t, c, "old", "v2", false) },
			want: base,
		},
		{
			name: "overwrite, synced",
			do:   func(t *testing.T, c *Crash) { create(t, c, "old", "v2", true) },
			want: with("old", "v2"),
		},
		{
			name: "append, synced",
			do: func(t *testing.T, c *Crash) {
				f, err := c.OpenFile("old", os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatalf("OpenFile(old) = %v, want nil", err)
				}
				f.Write([]byte("+"))
				f.Sync()
				f.Write([]byte("lost"))
				f.Close()
			},
			want: with("old", "v1+"),
		},
		{
			name: "O_SYNC write",
			do: func(t *testing.T, c *Crash) {
				f, err := c.OpenFile("old", os.O_WRONLY|os.O_SYNC, 0)
				if err != nil {
					t.Fatalf("OpenFile(old) = %v, want nil", err)
				}
				f.Write([]byte("V"))
				f.Close()
			},
			want: with("old", "V1"),
		},
		{
			name: "rename, directory not synced",
			do: func(t *testing.T, c *Crash) {
				create(t, c, "new", "v2", true)
				if err := c.Rename("new", "old"); err != nil {
					t.Fatalf("Rename(new, old) = %v, want nil", err)
				}
			},
			want: base,
		},
		{
			name: "rename, directory synced",
			do: func(t *testing.T, c *Crash) {
				create(t, c, "new", "v2", true)
				if err := c.Rename("new", "old"); err != nil {
					t.Fatalf("Rename(new, old) = %v, want nil", err)
				}
				syncDir(t, c, ".")
			},
			want: with("old", "v2"),
		},
		{
			name: "rename between directories, only the target synced: two names",
			do: func(t *testing.T, c *Crash) {
				if err := c.Rename("old", "d/old"); err != nil {
					t.Fatalf("Rename(old, d/old) = %v, want nil", err)
				}
				syncDir(t, c, "d")
			},
			want: with("d/old", "v1"),
		},
		{
			name: "rename between directories, only the source synced: lost",
			do: func(t *testing.T, c *Crash) {
				if err := c.Rename("old", "d/old"); err != nil {
					t.Fatalf("Rename(old, d/old) = %v, want nil", err)
				}
				syncDir(t, c, ".")
			},
			want: without("old"),
		},
		{
			name: "remove, directory not synced",
			do: func(t *testing.T, c *Crash) {
				if err := c.Remove("old"); err != nil {
					t.Fatalf("Remove(old) = %v, want nil", err)
				}
			},
			want: base,
		},
		{
			name: "remove, directory synced",
			do: func(t *testing.T, c *Crash) {
				if err := c.Remove("old"); err != nil {
					t.Fatalf("Remove(old) = %v, want nil", err)
				}
				syncDir(t, c, ".")
			},
			want: without("old"),
		},
		{
			name: "mkdir, parent not synced",
			do: func(t *testing.T, c *Crash) {
				if err := c.MkdirAll("e/f", 0o755); err != nil {
					t.Fatalf("MkdirAll(e/f) = %v, want nil", err)
				}
				syncDir(t, c, "e")
			},
			want: base,
		},
		{
			name: "mkdir, parents synced",
			do: func(t *testing.T, c *Crash) {
				if err := c.MkdirAll("e/f", 0o755); err != nil {
					t.Fatalf("MkdirAll(e/f) = %v, want nil", err)
				}
				syncDir(t, c, "e")
				syncDir(t, c, ".")
			},
			want: with("e", "/", "e/f", "/"),
		},
		{
			name: "unlinked file synced through an open handle",
			do: func(t *testing.T, c *Crash) {
				f, err := c.OpenFile("old", os.O_WRONLY|os.O_TRUNC, 0)
				if err != nil {
					t.Fatalf("OpenFile(old) = %v, want nil", err)
				}
				if err := c.Remove("old"); err != nil {
					t.Fatalf("Remove(old) = %v, want nil", err)
				}
				f.Write([]byte("v2"))
				f.Sync() // the durable entry still points at this file
				f.Close()
			},
			want: with("old", "v2"),
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := durableBase(t)
			tt.do(t, c)
			got := tree(t, c.Reboot())
			if !maps.Equal(got, tt.want) {
				t.Errorf("after Reboot, tree = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCrashCutAfter(t *testing.T) {
	// ops takes 6 steps: open, write, sync, close, rename, syncdir.
	ops := func(c *Crash) error {
		f, err := c.OpenFile("tmp", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		if _, err := f.Write([]byte("v2")); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := c.Rename("tmp", "old"); err != nil {
			return err
		}
		return c.SyncDir(".")
	}
	c := durableBase(t)
	if err := ops(c); err != nil {
		t.Fatalf("ops() = %v, want nil", err)
	}
	if got, want := c.Steps(), 6; got != want {
		t.Fatalf("Steps() = %d, want %d", got, want)
	}

	for _, tt := range []struct {
		cut  int
		want string // content of old after reboot
	}{
		{0, "v1"}, {1, "v1"}, {4, "v1"}, {5, "v1"}, {6, "v2"},
	} {
		c := durableBase(t)
		c.CutAfter(tt.cut)
		err := ops(c)
		if tt.cut < 6 && !errors.Is(err, ErrPowerCut) {
			t.Errorf("CutAfter(%d): ops() = %v, want ErrPowerCut", tt.cut, err)
		}
		if tt.cut == 6 && err != nil {
			t.Errorf("CutAfter(%d): ops() = %v, want nil", tt.cut, err)
		}
		if got := c.Steps(); got != tt.cut {
			t.Errorf("CutAfter(%d): Steps() = %d, want %d", tt.cut, got, tt.cut)
		}
		// After the cut, reads fail too.
		if _, err := c.ReadFile("old"); !errors.Is(err, ErrPowerCut) {
			t.Errorf("CutAfter(%d): ReadFile(old) = %v, want ErrPowerCut", tt.cut, err)
		}
		r := c.Reboot()
		got, err := r.ReadFile("old")
		if err != nil || string(got) != tt.want {
			t.Errorf("CutAfter(%d): after Reboot, ReadFile(old) = %q, %v, want %q", tt.cut, got, err, tt.want)
		}
		if r.Steps() != 0 {
			t.Errorf("CutAfter(%d): after Reboot, Steps() = %d, want 0", tt.cut, r.Steps())
		}
	}
}

func TestCrashRebootKillsHandles(t *testing.T) {
	c := NewCrash()
	f, err := c.OpenFile("f", os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("OpenFile(f) = %v, want nil", err)
	}
	r := c.Reboot()
	if _, err := f.Write([]byte("x")); !errors.Is(err, ErrPowerCut) {
		t.Errorf("Write on a handle from before Reboot = %v, want ErrPowerCut", err)
	}
	if err := c.SyncDir("."); !errors.Is(err, ErrPowerCut) {
		t.Errorf("SyncDir on the Crash before Reboot = %v, want ErrPowerCut", err)
	}
	if err := r.SyncDir("."); err != nil {
		t.Errorf("SyncDir on the rebooted Crash = %v, want nil", err)
	}
}

func TestCrashRebootWith(t *testing.T) {
	c := durableBase(t)
	f, err := c.OpenFile("old", os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatalf("OpenFile(old) = %v, want nil", err)
	}
	f.Write([]byte("abc"))
	f.Write([]byte("def"))
	create(t, c, "new", "n", false)

	var gotVersions []string
	r := c.RebootWith(RebootOptions{
		File: func(name string, vs [][]byte) []byte {
			if name == "old" {
				for _, v := range vs {
					gotVersions = append(gotVersions, string(v))
				}
				return vs[1] // the truncation reached the disk
			}
			return vs[len(vs)-1]
		},
		Dir: func(name string, n int) int { return n - 1 },
	})
	wantVersions := []string{"v1", "", "abc", "abcdef"}
	if !slices.Equal(gotVersions, wantVersions) {
		t.Errorf("RebootOptions.File(old) versions = %q, want %q", gotVersions, wantVersions)
	}
	want := map[string]string{"old": "", "new": "n", "d": "/"}
	if got := tree(t, r); !maps.Equal(got, want) {
		t.Errorf("after RebootWith, tree = %v, want %v", got, want)
	}
}

func TestCrashErrors(t *testing.T) {
	c := durableBase(t)
	for _, tt := range []struct {
		name string
		err  error
		want error
	}{
		{"ReadFile(missing)", func() error { _, err := c.ReadFile("missing"); return err }(), fs.ErrNotExist},
		{"ReadFile(d)", func() error { _, err := c.ReadFile("d"); return err }(), syscall.EISDIR},
		{"ReadFile(../x)", func() error { _, err := c.ReadFile("../x"); return err }(), fs.ErrInvalid},
		{"ReadFile(old/x)", func() error { _, err := c.ReadFile("old/x"); return err }(), syscall.ENOTDIR},
		{"ReadDir(old)", func() error { _, err := c.ReadDir("old"); return err }(), syscall.ENOTDIR},
		{"OpenFile(old, O_EXCL)", func() error {
			_, err := c.OpenFile("old", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			return err
		}(), fs.ErrExist},
		{"OpenFile(missing)", func() error { _, err := c.OpenFile("missing", os.O_WRONLY, 0); return err }(), fs.ErrNotExist},
		{"OpenFile(old, O_RDONLY)", func() error { _, err := c.OpenFile("old", os.O_RDONLY, 0); return err }(), fs.ErrInvalid},
		{"OpenFile(d)", func() error { _, err := c.OpenFile("d", os.O_WRONLY, 0); return err }(), syscall.EISDIR},
		{"OpenFile(/abs)", func() error { _, err := c.OpenFile("/abs", os.O_WRONLY|os.O_CREATE, 0); return err }(), fs.ErrInvalid},
		{"Rename(missing, x)", c.Rename("missing", "x"), fs.ErrNotExist},
		{"Rename(old, d)", c.Rename("old", "d"), syscall.EISDIR},
		{"Rename(d, d/e)", c.Rename("d", "d/e"), syscall.EINVAL},
		{"Remove(missing)", c.Remove("missing"), fs.ErrNotExist},
		{"Remove(.)", c.Remove("."), fs.ErrInvalid},
		{"MkdirAll(old/x)", c.MkdirAll("old/x", 0o755), syscall.ENOTDIR},
		{"SyncDir(old)", c.SyncDir("old"), syscall.ENOTDIR},
	} {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s = %v, want %v", tt.name, tt.err, tt.want)
		}
	}

	create(t, c, "d/x", "", false)
	if err := c.Remove("d"); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("Remove(d) of a non-empty directory = %v, want ENOTEMPTY", err)
	}
	f, err := c.OpenFile("old", os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("OpenFile(old) = %v, want nil", err)
	}
	f.Close()
	if _, err := f.Write([]byte("x")); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
}
