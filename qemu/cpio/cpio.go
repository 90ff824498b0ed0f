// Package cpio writes cpio archives in the "newc" (SVR4, no CRC) format, the
// format the Linux kernel unpacks as an initramfs.
//
// The output is deterministic: inode numbers count up from 0 in the order
// entries are written, device numbers are 0, directories have two links and
// everything else one,
// unless a Header says otherwise. For the same entries it is byte for byte what
// `cpio -o -H newc --reproducible -R 0:0` writes.
package cpio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// Mode bits of the file type, as stored in the c_mode field.
const (
	TypeDir     = 0o040000
	TypeReg     = 0o100000
	TypeSymlink = 0o120000
	TypeChar    = 0o020000
	TypeBlock   = 0o060000
	typeMask    = 0o170000
)

// trailerName is the name of the entry that ends an archive.
const trailerName = "TRAILER!!!"

// ErrWriteTooLong is returned when more data is written to an entry than its
// header's Size.
var ErrWriteTooLong = errors.New("cpio: write too long")

// Header describes one archive entry.
type Header struct {
	Name  string // path inside the archive, without a leading "/"
	Mode  uint32 // file type (TypeReg, ...) and permission bits
	UID   uint32
	GID   uint32
	Mtime int64  // seconds since the epoch
	Size  int64  // bytes of data: the file's contents or the symlink's target
	Nlink uint32 // 0 means 2 for a directory, 1 for anything else
	// Rmajor and Rminor are the device number of a TypeChar or TypeBlock node.
	Rmajor, Rminor uint32
}

// Writer writes a newc archive. Call WriteHeader for each entry, write
// exactly Size bytes of data, and Close at the end.
type Writer struct {
	w       io.Writer
	ino     uint32
	off     int64 // bytes written so far, for padding
	left    int64 // data bytes the current entry still expects
	pad     int   // padding owed after the current entry's data
	closed  bool
	written map[string]bool
}

// NewWriter returns a Writer that writes an archive to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, written: map[string]bool{}}
}

// WriteHeader starts a new entry. The previous entry must be complete.
func (w *Writer) WriteHeader(h *Header) error {
	if w.closed {
		return errors.New("cpio: write after Close")
	}
	if w.left != 0 {
		return fmt.Errorf("cpio: entry before it %d bytes short", w.left)
	}
	if err := w.finishEntry(); err != nil {
		return err
	}
	name := strings.TrimPrefix(h.Name, "/")
	if name == "" || name == trailerName || strings.ContainsRune(name, 0) {
		return fmt.Errorf("cpio: bad entry name %q", h.Name)
	}
	if w.written[name] {
		return fmt.Errorf("cpio: duplicate entry %q", name)
	}
	w.written[name] = true
	nlink := h.Nlink
	switch {
	case nlink != 0:
	case h.Mode&typeMask == TypeDir:
		nlink = 2
	default:
		nlink = 1
	}
	if h.Size < 0 || h.Size > 0xffffffff {
		return fmt.Errorf("cpio: %s: size %d out of range", name, h.Size)
	}
	if err := w.header(w.ino, h.Mode, h.UID, h.GID, nlink, h.Mtime, h.Size, h.Rmajor, h.Rminor, name); err != nil {
		return err
	}
	w.ino++
	w.left = h.Size
	w.pad = pad4(h.Size)
	return nil
}

func (w *Writer) header(ino, mode, uid, gid, nlink uint32, mtime, size int64, rmajor, rminor uint32, name string) error {
	s := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\x00",
		ino, mode, uid, gid, nlink, uint32(mtime), uint32(size), 0, 0, rmajor, rminor, len(name)+1, 0, name)
	s += strings.Repeat("\x00", pad4(int64(len(s))))
	return w.write([]byte(s))
}

// Write writes data of the current entry.
func (w *Writer) Write(p []byte) (int, error) {
	if int64(len(p)) > w.left {
		n, err := w.Write(p[:w.left])
		if err == nil {
			err = ErrWriteTooLong
		}
		return n, err
	}
	if err := w.write(p); err != nil {
		return 0, err
	}
	w.left -= int64(len(p))
	return len(p), nil
}

func (w *Writer) write(p []byte) error {
	n, err := w.w.Write(p)
	w.off += int64(n)
	if err != nil {
		return fmt.Errorf("cpio: %w", err)
	}
	return nil
}

func (w *Writer) finishEntry() error {
	if w.pad == 0 {
		return nil
	}
	p := w.pad
	w.pad = 0
	return w.write(make([]byte, p))
}

// Close completes the current entry and writes the trailer, padded to a
// 512-byte block as cpio(1) does. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	if w.left != 0 {
		return fmt.Errorf("cpio: last entry %d bytes short", w.left)
	}
	if err := w.finishEntry(); err != nil {
		return err
	}
	if err := w.header(0, 0, 0, 0, 1, 0, 0, 0, 0, trailerName); err != nil {
		return err
	}
	w.closed = true
	if r := w.off % 512; r != 0 {
		return w.write(make([]byte, 512-r))
	}
	return nil
}

// WriteDir adds a directory.
func (w *Writer) WriteDir(name string, perm fs.FileMode) error {
	return w.WriteHeader(&Header{Name: name, Mode: TypeDir | uint32(perm.Perm())})
}

// WriteFile adds a regular file holding data.
func (w *Writer) WriteFile(name string, perm fs.FileMode, data []byte) error {
	if err := w.WriteHeader(&Header{Name: name, Mode: TypeReg | uint32(perm.Perm()), Size: int64(len(data))}); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

// CopyFile adds a regular file of size bytes read from r.
func (w *Writer) CopyFile(name string, perm fs.FileMode, r io.Reader, size int64) error {
	if err := w.WriteHeader(&Header{Name: name, Mode: TypeReg | uint32(perm.Perm()), Size: size}); err != nil {
		return err
	}
	n, err := io.Copy(w, io.LimitReader(r, size))
	if err != nil {
		return fmt.Errorf("cpio: copy %s: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("cpio: copy %s: %d bytes, want %d: %w", name, n, size, io.ErrUnexpectedEOF)
	}
	return nil
}

// WriteSymlink adds a symbolic link to target.
func (w *Writer) WriteSymlink(name, target string) error {
	if err := w.WriteHeader(&Header{Name: name, Mode: TypeSymlink | 0o777, Size: int64(len(target))}); err != nil {
		return err
	}
	_, err := io.WriteString(w, target)
	return err
}

// WriteCharDev adds a character device node, such as dev/console (5, 1).
func (w *Writer) WriteCharDev(name string, perm fs.FileMode, major, minor uint32) error {
	return w.WriteHeader(&Header{Name: name, Mode: TypeChar | uint32(perm.Perm()), Rmajor: major, Rminor: minor})
}

func pad4(n int64) int { return int((4 - n%4) % 4) }
