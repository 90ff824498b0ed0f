package durable

import (
	"io"
	"io/fs"
)

// FS is the seam between state-file code and the disk: a directory tree
// whose names are slash-separated paths relative to its root, valid in the
// sense of [fs.ValidPath] ("." is the root; no "..", no leading slash).
//
// Implementations: [OS] over a real directory, [Crash] for tests.
type FS interface {
	// ReadFile returns the content of the named file.
	ReadFile(name string) ([]byte, error)
	// ReadDir returns the entries of the named directory, sorted by name.
	ReadDir(dir string) ([]fs.DirEntry, error)
	// OpenFile opens the named file for writing with the flags of
	// [os.OpenFile]; one of os.O_WRONLY or os.O_RDWR is required.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// Rename renames (moves) oldname to newname, replacing a file there.
	Rename(oldname, newname string) error
	// Remove removes the named file or empty directory.
	Remove(name string) error
	// MkdirAll creates the directory dir and any missing parents.
	MkdirAll(dir string, perm fs.FileMode) error
	// SyncDir makes the entries of directory dir durable (fsync on the
	// directory).
	SyncDir(dir string) error
}

// File is a file opened for writing by [FS.OpenFile].
type File interface {
	io.Writer
	// Sync makes the data written so far durable (fsync).
	Sync() error
	Close() error
	// Name returns the name the file was opened with, relative to the root
	// of its FS.
	Name() string
}
