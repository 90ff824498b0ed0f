package durable

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrPowerCut is the error, wrapped, of every call to a [Crash] after its
// power went off.
var ErrPowerCut = errors.New("power cut")

// Crash is an in-memory FS that models a disk behind a volatile cache and
// can lose power at any step; the package documentation states the model.
// The zero value is not usable: call [NewCrash].
//
// A typical test runs the code under test once to count its steps, then
// once per cut point on a fresh Crash, and checks what survives:
//
//	for cut := 0; cut <= steps; cut++ {
//		c := seed() // a durable starting state, e.g. a NewCrash().Reboot()
//		c.CutAfter(cut)
//		_ = update(c) // fails with ErrPowerCut unless cut == steps
//		check(t, c.Reboot())
//	}
//
// Crash is safe for concurrent use.
type Crash struct {
	mu    sync.Mutex
	root  *inode
	steps int  // steps taken
	cutAt int  // steps allowed, or -1
	off   bool // the power is off
}

var _ FS = (*Crash)(nil)

// inode is a file or a directory. Each keeps versions of its content: [0] is
// durable, the last is current, and those between are the states it went
// through since it was last synced, any of which a crash may leave behind.
type inode struct {
	mode fs.FileMode
	data [][]byte            // file content versions
	ents []map[string]*inode // directory entry versions
}

func newFile(perm fs.FileMode) *inode {
	return &inode{mode: perm & fs.ModePerm, data: [][]byte{nil}}
}

func newDir(perm fs.FileMode) *inode {
	return &inode{mode: fs.ModeDir | perm&fs.ModePerm, ents: []map[string]*inode{{}}}
}

func (n *inode) isDir() bool { return n.mode.IsDir() }

func (n *inode) content() []byte { return n.data[len(n.data)-1] }

func (n *inode) entries() map[string]*inode { return n.ents[len(n.ents)-1] }

// setContent makes b the current content; b must not be modified later.
func (n *inode) setContent(b []byte) { n.data = append(n.data, b) }

// edit makes a new version of the directory's entries.
func (n *inode) edit(f func(m map[string]*inode)) {
	m := maps.Clone(n.entries())
	f(m)
	n.ents = append(n.ents, m)
}

// NewCrash returns a Crash holding an empty, durable root directory, with
// the power on and no cut scheduled.
func NewCrash() *Crash {
	return &Crash{root: newDir(0o755), cutAt: -1}
}

// Steps returns the number of steps taken so far (see the package
// documentation for what counts as one).
func (c *Crash) Steps() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.steps
}

// CutAfter schedules the power cut: the first n steps of c complete, and
// then the power goes off, so every later call (reads included) fails with
// ErrPowerCut and changes nothing. If c has already taken n steps the power
// goes off now.
func (c *Crash) CutAfter(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cutAt = n
	if c.steps >= n {
		c.off = true
	}
}

// RebootOptions makes a crash worse than losing everything not synced: it
// chooses, for each file and directory with changes not yet synced, which
// state survives. The functions are called during [Crash.RebootWith] with
// the crashed Crash locked; they must not call it.
type RebootOptions struct {
	// File returns the content after reboot of the file at name (its first
	// path, in lexical order, through surviving entries). versions[0] is
	// the content at the last File.Sync (empty if never synced) and
	// versions[i] that after the i-th later change; the last is the
	// current content. Any result is allowed, e.g. a torn mix of two
	// versions. Nil File keeps versions[0].
	File func(name string, versions [][]byte) []byte
	// Dir returns which of the n versions of the entries of directory name
	// survives, from 0 (at the last SyncDir) to n-1 (current). Nil Dir
	// keeps version 0. Dir panics the reboot if it returns an index out of
	// range.
	Dir func(name string, n int) int
}

// Reboot cuts the power of c (if it is still on) and returns a new Crash
// holding c's durable state: the state it would have after power-on if the
// cache lost everything not synced.
func (c *Crash) Reboot() *Crash {
	return c.RebootWith(RebootOptions{})
}

// RebootWith is Reboot with o choosing which unsynced states survive.
func (c *Crash) RebootWith(o RebootOptions) *Crash {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off = true
	memo := make(map[*inode]*inode)
	var rebuild func(in *inode, name string) *inode
	rebuild = func(in *inode, name string) *inode {
		if out, ok := memo[in]; ok {
			return out // a file moved between directories, or a cycle
		}
		out := &inode{mode: in.mode}
		memo[in] = out
		if !in.isDir() {
			b := in.data[0]
			if len(in.data) > 1 && o.File != nil {
				vs := make([][]byte, len(in.data))
				for i, v := range in.data {
					vs[i] = bytes.Clone(v)
				}
				b = o.File(name, vs)
			}
			out.data = [][]byte{bytes.Clone(b)}
			return out
		}
		k := 0
		if len(in.ents) > 1 && o.Dir != nil {
			k = o.Dir(name, len(in.ents))
			if k < 0 || k >= len(in.ents) {
				panic(fmt.Sprintf("durable: RebootOptions.Dir(%q, %d) = %d, want 0 to %d", name, len(in.ents), k, len(in.ents)-1))
			}
		}
		ents := make(map[string]*inode, len(in.ents[k]))
		for _, base := range slices.Sorted(maps.Keys(in.ents[k])) {
			ents[base] = rebuild(in.ents[k][base], path.Join(name, base))
		}
		out.ents = []map[string]*inode{ents}
		return out
	}
	return &Crash{root: rebuild(c.root, "."), cutAt: -1}
}

// powerOff fails a call after the cut.
func (c *Crash) powerOff(op, name string) error {
	if c.off {
		return &fs.PathError{Op: op, Path: name, Err: ErrPowerCut}
	}
	return nil
}

// step counts one step, or fails it after the cut.
func (c *Crash) step(op, name string) error {
	if err := c.powerOff(op, name); err != nil {
		return err
	}
	c.steps++
	if c.cutAt >= 0 && c.steps >= c.cutAt {
		c.off = true
	}
	return nil
}

// lookup resolves name to its inode.
func (c *Crash) lookup(op, name string) (*inode, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	n := c.root
	if name == "." {
		return n, nil
	}
	for elem := range strings.SplitSeq(name, "/") {
		if !n.isDir() {
			return nil, &fs.PathError{Op: op, Path: name, Err: syscall.ENOTDIR}
		}
		next, ok := n.entries()[elem]
		if !ok {
			return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		n = next
	}
	return n, nil
}

// parent resolves the directory holding name, which must not be the root.
func (c *Crash) parent(op, name string) (*inode, string, error) {
	if !fs.ValidPath(name) || name == "." {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	dir, base := path.Split(name)
	d, err := c.lookup(op, path.Clean(dir))
	if err != nil {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: errors.Unwrap(err)}
	}
	if !d.isDir() {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: syscall.ENOTDIR}
	}
	return d, base, nil
}

// ReadFile returns the current content of the named file.
func (c *Crash) ReadFile(name string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.powerOff("read", name); err != nil {
		return nil, err
	}
	n, err := c.lookup("read", name)
	if err != nil {
		return nil, err
	}
	if n.isDir() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: syscall.EISDIR}
	}
	return bytes.Clone(n.content()), nil
}

// ReadDir returns the current entries of directory dir, sorted by name.
func (c *Crash) ReadDir(dir string) ([]fs.DirEntry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.powerOff("readdir", dir); err != nil {
		return nil, err
	}
	d, err := c.lookup("readdir", dir)
	if err != nil {
		return nil, err
	}
	if !d.isDir() {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: syscall.ENOTDIR}
	}
	m := d.entries()
	ents := make([]fs.DirEntry, 0, len(m))
	for _, base := range slices.Sorted(maps.Keys(m)) {
		n := m[base]
		fi := fileInfo{name: base, mode: n.mode}
		if !n.isDir() {
			fi.size = int64(len(n.content()))
		}
		ents = append(ents, fs.FileInfoToDirEntry(fi))
	}
	return ents, nil
}

// OpenFile opens the named file for writing. It supports all the flags of
// os.OpenFile; O_SYNC syncs after every write. Permissions are recorded
// but not enforced.
func (c *Crash) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.step("open", name); err != nil {
		return nil, err
	}
	if flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errReadOnly}
	}
	d, base, err := c.parent("open", name)
	if err != nil {
		return nil, err
	}
	n, ok := d.entries()[base]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case ok && n.isDir():
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EISDIR}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !ok:
		n = newFile(perm)
		d.edit(func(m map[string]*inode) { m[base] = n })
	}
	if flag&os.O_TRUNC != 0 && len(n.content()) > 0 {
		n.setContent(nil)
	}
	return &crashFile{c: c, n: n, name: name, flag: flag}, nil
}

// Rename renames oldname to newname. Like rename(2) it replaces a file, or
// an empty directory by a directory, at newname.
func (c *Crash) Rename(oldname, newname string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	fail := func(err error) error {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	if err := c.step("rename", oldname); err != nil {
		return fail(ErrPowerCut)
	}
	od, ob, err := c.parent("rename", oldname)
	if err != nil {
		return fail(errors.Unwrap(err))
	}
	nd, nb, err := c.parent("rename", newname)
	if err != nil {
		return fail(errors.Unwrap(err))
	}
	src, ok := od.entries()[ob]
	if !ok {
		return fail(fs.ErrNotExist)
	}
	dst, exists := nd.entries()[nb]
	switch {
	case exists && dst == src:
		return nil // rename(2) does nothing for two links to one file
	case src.isDir() && strings.HasPrefix(newname, oldname+"/"):
		return fail(syscall.EINVAL)
	case exists && dst.isDir() && !src.isDir():
		return fail(syscall.EISDIR)
	case exists && !dst.isDir() && src.isDir():
		return fail(syscall.ENOTDIR)
	case exists && dst.isDir() && len(dst.entries()) > 0:
		return fail(syscall.ENOTEMPTY)
	}
	if od == nd {
		od.edit(func(m map[string]*inode) {
			delete(m, ob)
			m[nb] = src
		})
		return nil
	}
	od.edit(func(m map[string]*inode) { delete(m, ob) })
	nd.edit(func(m map[string]*inode) { m[nb] = src })
	return nil
}

// Remove removes the named file or empty directory.
func (c *Crash) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.step("remove", name); err != nil {
		return err
	}
	d, base, err := c.parent("remove", name)
	if err != nil {
		return err
	}
	n, ok := d.entries()[base]
	if !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	if n.isDir() && len(n.entries()) > 0 {
		return &fs.PathError{Op: "remove", Path: name, Err: syscall.ENOTEMPTY}
	}
	d.edit(func(m map[string]*inode) { delete(m, base) })
	return nil
}

// MkdirAll creates directory dir and any missing parents, as one step.
func (c *Crash) MkdirAll(dir string, perm fs.FileMode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.step("mkdir", dir); err != nil {
		return err
	}
	if !fs.ValidPath(dir) {
		return &fs.PathError{Op: "mkdir", Path: dir, Err: fs.ErrInvalid}
	}
	if dir == "." {
		return nil
	}
	d := c.root
	for elem := range strings.SplitSeq(dir, "/") {
		n, ok := d.entries()[elem]
		if !ok {
			n = newDir(perm)
			d.edit(func(m map[string]*inode) { m[elem] = n })
		}
		if !n.isDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		d = n
	}
	return nil
}

// SyncDir makes the current entries of directory dir durable.
func (c *Crash) SyncDir(dir string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.step("syncdir", dir); err != nil {
		return err
	}
	d, err := c.lookup("syncdir", dir)
	if err != nil {
		return err
	}
	if !d.isDir() {
		return &fs.PathError{Op: "syncdir", Path: dir, Err: syscall.ENOTDIR}
	}
	d.ents = []map[string]*inode{d.entries()}
	return nil
}

// crashFile is a File open on a Crash.
type crashFile struct {
	c      *Crash
	n      *inode
	name   string
	flag   int
	off    int
	closed bool
}

func (f *crashFile) Name() string { return f.name }

func (f *crashFile) Write(p []byte) (int, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if err := f.c.step("write", f.name); err != nil {
		return 0, err
	}
	if f.closed {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: fs.ErrClosed}
	}
	if len(p) == 0 {
		return 0, nil
	}
	old := f.n.content()
	if f.flag&os.O_APPEND != 0 {
		f.off = len(old)
	}
	b := make([]byte, max(len(old), f.off+len(p)))
	copy(b, old)
	copy(b[f.off:], p)
	f.n.setContent(b)
	f.off += len(p)
	if f.flag&os.O_SYNC != 0 {
		f.n.data = [][]byte{b}
	}
	return len(p), nil
}

func (f *crashFile) Sync() error {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if err := f.c.step("sync", f.name); err != nil {
		return err
	}
	if f.closed {
		return &fs.PathError{Op: "sync", Path: f.name, Err: fs.ErrClosed}
	}
	f.n.data = [][]byte{f.n.content()}
	return nil
}

func (f *crashFile) Close() error {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if err := f.c.step("close", f.name); err != nil {
		return err
	}
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	f.closed = true
	return nil
}

// fileInfo describes an entry for ReadDir.
type fileInfo struct {
	name string
	size int64
	mode fs.FileMode
}

func (fi fileInfo) Name() string       { return fi.name }
func (fi fileInfo) Size() int64        { return fi.size }
func (fi fileInfo) Mode() fs.FileMode  { return fi.mode }
func (fi fileInfo) ModTime() time.Time { return time.Time{} }
func (fi fileInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi fileInfo) Sys() any           { return nil }
