package durable

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOSRoundTrip(t *testing.T) {
	root := t.TempDir()
	fsys := OS(root)
	if err := MkdirAll(fsys, "var/lib", 0o755); err != nil {
		t.Fatalf("MkdirAll(var/lib) = %v, want nil", err)
	}
	for _, tt := range []struct {
		name, data string
		perm       fs.FileMode
	}{
		{"state", "first", 0o644},
		{"state", "second, longer", 0o600},
		{"state", "", 0o644},
		{"var/lib/slot", "B", 0o644},
	} {
		if err := WriteFile(fsys, tt.name, []byte(tt.data), tt.perm); err != nil {
			t.Fatalf("WriteFile(%q, %q) = %v, want nil", tt.name, tt.data, err)
		}
		got, err := fsys.ReadFile(tt.name)
		if err != nil || string(got) != tt.data {
			t.Errorf("ReadFile(%q) = %q, %v, want %q", tt.name, got, err, tt.data)
		}
		// The real file, read past the FS.
		got, err = os.ReadFile(filepath.Join(root, filepath.FromSlash(tt.name)))
		if err != nil || string(got) != tt.data {
			t.Errorf("os.ReadFile(%q) = %q, %v, want %q", tt.name, got, err, tt.data)
		}
		fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(tt.name)))
		if err != nil {
			t.Fatalf("os.Stat(%q) = %v, want nil", tt.name, err)
		}
		// The umask may only clear bits.
		if got := fi.Mode().Perm(); got&^tt.perm != 0 {
			t.Errorf("WriteFile(%q, perm %v): mode %v, want within %v", tt.name, tt.perm, got, tt.perm)
		}
	}
	want := map[string]string{"state": "", "var": "/", "var/lib": "/", "var/lib/slot": "B"}
	if got := tree(t, fsys); !maps.Equal(got, want) {
		t.Errorf("tree after WriteFiles = %v, want %v (no temporary files)", got, want)
	}

	// The rest of the FS methods.
	f, err := fsys.OpenFile("log", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("OpenFile(log) = %v, want nil", err)
	}
	if f.Name() != "log" {
		t.Errorf("OpenFile(log).Name() = %q, want %q", f.Name(), "log")
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Errorf("Write(log) = %v, want nil", err)
	}
	if err := f.Sync(); err != nil {
		t.Errorf("Sync(log) = %v, want nil", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close(log) = %v, want nil", err)
	}
	if err := fsys.Rename("log", "var/log"); err != nil {
		t.Errorf("Rename(log, var/log) = %v, want nil", err)
	}
	if err := fsys.SyncDir("var"); err != nil {
		t.Errorf("SyncDir(var) = %v, want nil", err)
	}
	if err := fsys.Remove("var/log"); err != nil {
		t.Errorf("Remove(var/log) = %v, want nil", err)
	}
	if _, err := fsys.ReadFile("var/log"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile(var/log) after Remove = %v, want ErrNotExist", err)
	}
}

func TestOSErrorsNameCallAndPath(t *testing.T) {
	root := t.TempDir()
	fsys := OS(root)
	for _, tt := range []struct {
		name  string
		err   error
		want  error
		words []string
	}{
		{"ReadFile", func() error { _, err := fsys.ReadFile("missing"); return err }(), fs.ErrNotExist, []string{"read", "missing", root}},
		{"Rename", fsys.Rename("missing", "x"), fs.ErrNotExist, []string{"rename", "missing", root}},
		{"SyncDir", fsys.SyncDir("nodir"), fs.ErrNotExist, []string{"syncdir", "nodir", root}},
		{"OS(missing root)", OS(filepath.Join(root, "none")).Remove("x"), fs.ErrNotExist, []string{"remove", "x", "none"}},
		{"OpenFile(O_RDONLY)", func() error { _, err := fsys.OpenFile("x", os.O_RDONLY, 0); return err }(), fs.ErrInvalid, []string{"open", "x"}},
	} {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s = %v, want %v", tt.name, tt.err, tt.want)
			continue
		}
		for _, w := range tt.words {
			if !strings.Contains(tt.err.Error(), w) {
				t.Errorf("%s = %q, want it to name %q", tt.name, tt.err, w)
			}
		}
	}
}

func TestOSConfinedToRoot(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	outside := filepath.Join(parent, "outside")
	for _, d := range []string{root, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	fsys := OS(root)

	for _, name := range []string{"../outside/secret", "/etc/passwd", "a/../../outside/secret", "", "./x", "a//b", "link/secret"} {
		if _, err := fsys.ReadFile(name); err == nil {
			t.Errorf("ReadFile(%q) = nil error, want an error", name)
		}
		if err := WriteFile(fsys, name, []byte("pwned"), 0o644); err == nil {
			t.Errorf("WriteFile(%q) = nil, want an error", name)
		}
		if err := fsys.Remove(name); err == nil {
			t.Errorf("Remove(%q) = nil, want an error", name)
		}
		if err := fsys.MkdirAll(name+"-dir", 0o755); err == nil && name != "" {
			t.Errorf("MkdirAll(%q) = nil, want an error", name+"-dir")
		}
	}
	if _, err := fsys.ReadFile("../x"); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("ReadFile(../x) = %v, want ErrInvalid", err)
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != "secret" {
		t.Errorf("file outside the root = %q, %v, want %q", b, err, "secret")
	}
	ents, err := os.ReadDir(outside)
	if err != nil || len(ents) != 1 {
		t.Errorf("os.ReadDir(outside) = %v, %v, want only secret", ents, err)
	}
}

func TestClean(t *testing.T) {
	for _, tt := range []struct {
		name string
		fsys func(t *testing.T) FS
	}{
		{"OS", func(t *testing.T) FS { return OS(t.TempDir()) }},
		{"Crash", func(t *testing.T) FS { return NewCrash() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fsys := tt.fsys(t)
			if err := fsys.MkdirAll("dir/"+TempPrefix+"subdir", 0o755); err != nil {
				t.Fatalf("MkdirAll = %v, want nil", err)
			}
			for _, name := range []string{
				"dir/state",
				"dir/" + TempPrefix + "state-ABC",
				"dir/" + TempPrefix,
				"dir/x" + TempPrefix,
				"dir/.tmp-other",
				TempPrefix + "in-root",
			} {
				create(t, fsys, name, "x", true)
			}
			if err := Clean(fsys, "dir"); err != nil {
				t.Fatalf("Clean(dir) = %v, want nil", err)
			}
			want := map[string]string{
				"dir":                          "/",
				"dir/" + TempPrefix + "subdir": "/",
				"dir/state":                    "x",
				"dir/x" + TempPrefix:           "x",
				"dir/.tmp-other":               "x",
				TempPrefix + "in-root":         "x",
			}
			if got := tree(t, fsys); !maps.Equal(got, want) {
				t.Errorf("after Clean(dir), tree = %v, want %v", got, want)
			}
			if err := Clean(fsys, "missing"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Clean(missing) = %v, want ErrNotExist", err)
			}
		})
	}
}
