package assemble

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// FileTarget is a file or block device that an image is being written to.
//
// A new file is written under a temporary name beside it and renamed into
// place by Commit, so a failed run never leaves a file that looks whole.
// An existing file or a block device is written in place, and its old
// content serves as a seed for itself (InPlace).
type FileTarget struct {
	*os.File
	path  string
	tmp   string // set while writing a new file
	size  int64
	block bool
}

// OpenTarget opens path to receive an image of size bytes.
func OpenTarget(path string, size int64) (*FileTarget, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".partial-*")
		if err != nil {
			return nil, fmt.Errorf("create target: %w", err)
		}
		if err := f.Truncate(size); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, fmt.Errorf("size target %s: %w", f.Name(), err)
		}
		return &FileTarget{File: f, path: path, tmp: f.Name(), size: size}, nil
	case err != nil:
		return nil, fmt.Errorf("target: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open target: %w", err)
	}
	t := &FileTarget{File: f, path: path, size: size, block: fi.Mode()&os.ModeDevice != 0}
	if t.block {
		have, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("target %s: size: %w", path, err)
		}
		if have < size {
			f.Close()
			return nil, fmt.Errorf("target %s is %d bytes, the image needs %d", path, have, size)
		}
		return t, nil
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("target %s is neither a regular file nor a block device", path)
	}
	if fi.Size() < size {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, fmt.Errorf("size target %s: %w", path, err)
		}
	}
	return t, nil
}

// Fresh reports whether the target is a new file that reads as zeros.
func (t *FileTarget) Fresh() bool { return t.tmp != "" }

// InPlace reports whether the target holds earlier content worth keeping.
func (t *FileTarget) InPlace() bool { return t.tmp == "" }

// Commit makes the written image durable and, for a new file, puts it in
// place under its name.
func (t *FileTarget) Commit() error {
	if !t.block {
		if err := t.File.Truncate(t.size); err != nil {
			return fmt.Errorf("truncate %s: %w", t.Name(), err)
		}
	}
	if err := t.File.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", t.Name(), err)
	}
	if err := t.File.Close(); err != nil {
		return fmt.Errorf("close %s: %w", t.Name(), err)
	}
	if t.tmp == "" {
		return nil
	}
	if err := os.Rename(t.tmp, t.path); err != nil {
		return fmt.Errorf("rename target: %w", err)
	}
	t.tmp = ""
	return syncDir(filepath.Dir(t.path))
}

// Abort closes the target after a failed run, removing a new file.
func (t *FileTarget) Abort() {
	t.File.Close()
	if t.tmp != "" {
		os.Remove(t.tmp)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
