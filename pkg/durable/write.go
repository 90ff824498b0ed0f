package durable

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// TempPrefix starts the name of every temporary file WriteFile creates.
// Code that lists a state directory skips such names; [Clean] removes them.
const TempPrefix = ".durable-tmp-"

// errReadOnly refuses OpenFile without os.O_WRONLY or os.O_RDWR, since a
// File can only write.
var errReadOnly = fmt.Errorf("open for writing needs O_WRONLY or O_RDWR: %w", fs.ErrInvalid)

// maxTempBase bounds the part of a temporary file's name taken from the
// target's, keeping it under NAME_MAX.
const maxTempBase = 128

// WriteFile atomically and durably replaces the file name in fsys with data
// (see the package documentation for the guarantee). It creates the file
// with permission perm if it does not exist; an existing file also ends up
// with perm, as the new content is a new file. The directory holding name
// must exist and be durable.
//
// WriteFile is safe to call concurrently for different names, and for the
// same name when the last writer may win.
func WriteFile(fsys FS, name string, data []byte, perm fs.FileMode) error {
	if err := writeFile(fsys, name, data, perm); err != nil {
		return fmt.Errorf("durable write %s: %w", name, err)
	}
	return nil
}

func writeFile(fsys FS, name string, data []byte, perm fs.FileMode) (err error) {
	if !fs.ValidPath(name) || name == "." {
		return &fs.PathError{Op: "write", Path: name, Err: fs.ErrInvalid}
	}
	dir, base := path.Split(name)
	dir = path.Clean(dir)
	if len(base) > maxTempBase {
		base = base[:maxTempBase]
	}

	var f File
	for range 3 { // a collision of 128 random bits is a bug, not bad luck
		tmp := path.Join(dir, TempPrefix+base+"-"+rand.Text())
		f, err = fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return err
	}
	tmp := f.Name()
	closed := false
	defer func() {
		if err == nil {
			return
		}
		// Best effort: a temporary file left behind is harmless and Clean
		// removes it at the next start.
		if !closed {
			_ = f.Close()
		}
		if tmp != "" {
			_ = fsys.Remove(tmp)
		}
	}()

	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	closed = true
	if err := f.Close(); err != nil {
		return err
	}
	if err := fsys.Rename(tmp, name); err != nil {
		return err
	}
	// From here the temporary name is gone: a failure leaves the rename
	// done but perhaps not durable, and nothing to remove.
	tmp = ""
	// The file again, by its new name: on FAT (an ESP holding grubenv) the
	// entry a rename fills in is written with the file's inode, not with
	// the directory, while syncing the directory frees the replaced file's
	// clusters; without this a cut leaves the name on freed clusters.
	if err := syncFile(fsys, name); err != nil {
		return err
	}
	if err := fsys.SyncDir(dir); err != nil {
		return err
	}
	return nil
}

// syncFile fsyncs the existing file name.
func syncFile(fsys FS, name string) error {
	f, err := fsys.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Clean removes the temporary files that WriteFile calls interrupted by a
// crash left in dir (the files whose names start with [TempPrefix]) and
// nothing else. Run it at start-up, before any WriteFile into dir.
func Clean(fsys FS, dir string) error {
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("clean %s: %w", dir, err)
	}
	removed := false
	for _, e := range ents {
		if e.IsDir() || !strings.HasPrefix(e.Name(), TempPrefix) {
			continue
		}
		if err := fsys.Remove(path.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("clean %s: %w", dir, err)
		}
		removed = true
	}
	if removed {
		// Not needed for safety (a stale file that comes back is removed
		// again), but it keeps a crash loop from piling them up.
		if err := fsys.SyncDir(dir); err != nil {
			return fmt.Errorf("clean %s: %w", dir, err)
		}
	}
	return nil
}

// MkdirAll creates directory dir and any missing parents, and makes the
// whole path durable by syncing every directory on it from dir's parent up
// to the root, so that files written into dir can survive a power cut.
func MkdirAll(fsys FS, dir string, perm fs.FileMode) error {
	if err := fsys.MkdirAll(dir, perm); err != nil {
		return fmt.Errorf("durable mkdir %s: %w", dir, err)
	}
	for d := dir; d != "."; {
		d = path.Dir(d)
		if err := fsys.SyncDir(d); err != nil {
			return fmt.Errorf("durable mkdir %s: %w", dir, err)
		}
	}
	return nil
}
