package durable

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// osFS is the FS over a real directory.
type osFS struct {
	root string
}

var _ FS = osFS{}

// OS returns the FS over the directory root. Every name is resolved inside
// root with [os.Root], so neither ".." nor a symbolic link can reach outside
// it; names that are not valid slash paths ([fs.ValidPath]) are refused with
// an error wrapping [fs.ErrInvalid]. root is opened afresh by each call, so
// OS holds no file descriptor and root need not exist yet.
func OS(root string) FS {
	return osFS{root: root}
}

// open opens the root for one call, after checking names.
func (o osFS) open(op string, names ...string) (*os.Root, error) {
	for _, name := range names {
		if !fs.ValidPath(name) {
			return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
		}
	}
	r, err := os.OpenRoot(o.root)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, strings.Join(names, " "), err)
	}
	return r, nil
}

// wrap names the root in an error that already names the call and path.
func (o osFS) wrap(op, name string, err error) error {
	return fmt.Errorf("%s %s in %s: %w", op, name, o.root, err)
}

func (o osFS) ReadFile(name string) ([]byte, error) {
	r, err := o.open("read", name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := r.ReadFile(filepath.FromSlash(name))
	if err != nil {
		return nil, o.wrap("read", name, err)
	}
	return b, nil
}

func (o osFS) ReadDir(dir string) ([]fs.DirEntry, error) {
	r, err := o.open("readdir", dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	f, err := r.Open(filepath.FromSlash(dir))
	if err != nil {
		return nil, o.wrap("readdir", dir, err)
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, o.wrap("readdir", dir, err)
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return ents, nil
}

func (o osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errReadOnly}
	}
	r, err := o.open("open", name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	f, err := r.OpenFile(filepath.FromSlash(name), flag, perm)
	if err != nil {
		return nil, o.wrap("open", name, err)
	}
	return osFile{File: f, name: name}, nil
}

func (o osFS) Rename(oldname, newname string) error {
	r, err := o.open("rename", oldname, newname)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.Rename(filepath.FromSlash(oldname), filepath.FromSlash(newname)); err != nil {
		return o.wrap("rename", oldname+" "+newname, err)
	}
	return nil
}

func (o osFS) Remove(name string) error {
	r, err := o.open("remove", name)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.Remove(filepath.FromSlash(name)); err != nil {
		return o.wrap("remove", name, err)
	}
	return nil
}

func (o osFS) MkdirAll(dir string, perm fs.FileMode) error {
	r, err := o.open("mkdir", dir)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.MkdirAll(filepath.FromSlash(dir), perm); err != nil {
		return o.wrap("mkdir", dir, err)
	}
	return nil
}

func (o osFS) SyncDir(dir string) error {
	r, err := o.open("syncdir", dir)
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := r.Open(filepath.FromSlash(dir))
	if err != nil {
		return o.wrap("syncdir", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return o.wrap("syncdir", dir, err)
	}
	return nil
}

// osFile is an *os.File that reports its name relative to the root.
type osFile struct {
	*os.File
	name string
}

func (f osFile) Name() string { return f.name }
