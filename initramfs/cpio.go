package initramfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/lifeboat-update/lifeboat/qemu/cpio"
)

// ErrCPIO is wrapped by every error about an archive that is not a valid
// newc cpio archive.
var ErrCPIO = errors.New("not a newc cpio archive")

const (
	newcHeaderLen = 110  // "070701" and 13 fields of 8 hex digits
	maxNameLen    = 4096 // PATH_MAX: the kernel refuses longer names
	trailer       = "TRAILER!!!"
)

// Walk reads a newc ("070701", or "070702" with checksums) cpio archive,
// the format of an initramfs, and calls fn for each entry up to the
// trailer with the entry's header and a reader of its data: the file's
// contents or the symlink's target. fn need not read the data. An error
// from fn stops the walk and is returned as it is.
func Walk(r io.Reader, fn func(h *cpio.Header, data io.Reader) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var off int64
	skip := func(n int64) error {
		m, err := io.CopyN(io.Discard, br, n)
		off += m
		return err
	}
	for {
		var hdr [newcHeaderLen]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return fmt.Errorf("%w: header at offset %d: %w", ErrCPIO, off, noEOF(err))
		}
		start := off
		off += newcHeaderLen
		if m := string(hdr[:6]); m != "070701" && m != "070702" {
			return fmt.Errorf("%w: bad magic %q at offset %d", ErrCPIO, m, start)
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return fmt.Errorf("%w: header field %d at offset %d: %q is not hex", ErrCPIO, i, start, hdr[6+8*i:14+8*i])
			}
			f[i] = uint32(v)
		}
		mode, uid, gid, nlink, mtime, size := f[1], f[2], f[3], f[4], f[5], f[6]
		rmajor, rminor, namesize := f[9], f[10], f[11]
		if namesize < 2 || namesize > maxNameLen {
			return fmt.Errorf("%w: name size %d at offset %d", ErrCPIO, namesize, start)
		}
		name := make([]byte, namesize)
		if _, err := io.ReadFull(br, name); err != nil {
			return fmt.Errorf("%w: name at offset %d: %w", ErrCPIO, start, noEOF(err))
		}
		off += int64(namesize)
		if name[namesize-1] != 0 || strings.IndexByte(string(name[:namesize-1]), 0) >= 0 {
			return fmt.Errorf("%w: name at offset %d is not one NUL-terminated string", ErrCPIO, start)
		}
		if err := skip(int64(pad4(off))); err != nil {
			return fmt.Errorf("%w: padding at offset %d: %w", ErrCPIO, off, noEOF(err))
		}
		h := &cpio.Header{
			Name: string(name[:namesize-1]), Mode: mode, UID: uid, GID: gid, Nlink: nlink,
			Mtime: int64(mtime), Size: int64(size), Rmajor: rmajor, Rminor: rminor,
		}
		if h.Name == trailer {
			return nil
		}
		data := &io.LimitedReader{R: br, N: h.Size}
		if err := fn(h, data); err != nil {
			return err
		}
		off += h.Size - data.N
		if err := skip(data.N); err != nil {
			return fmt.Errorf("%w: %s: data: %w", ErrCPIO, h.Name, noEOF(err))
		}
		if err := skip(int64(pad4(off))); err != nil {
			return fmt.Errorf("%w: %s: padding: %w", ErrCPIO, h.Name, noEOF(err))
		}
	}
}

// noEOF turns an io.EOF in the middle of an archive into the
// io.ErrUnexpectedEOF it is.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func pad4(n int64) int { return int((4 - n%4) % 4) }

// Entry is one entry of an archive, as List returns it.
type Entry struct {
	cpio.Header
	Target string // a symlink's target
}

// IsDir, IsRegular and IsSymlink report the entry's file type.
func (e Entry) IsDir() bool     { return e.Mode&0o170000 == cpio.TypeDir }
func (e Entry) IsRegular() bool { return e.Mode&0o170000 == cpio.TypeReg }
func (e Entry) IsSymlink() bool { return e.Mode&0o170000 == cpio.TypeSymlink }

// List returns the entries of a newc archive by name (without a leading
// "/"), with their symlink targets.
func List(r io.Reader) (map[string]Entry, error) {
	out := map[string]Entry{}
	err := Walk(r, func(h *cpio.Header, data io.Reader) error {
		e := Entry{Header: *h}
		e.Name = strings.TrimPrefix(e.Name, "/")
		if e.IsSymlink() {
			b, err := io.ReadAll(io.LimitReader(data, maxNameLen+1))
			if err != nil {
				return fmt.Errorf("%w: %s: %w", ErrCPIO, h.Name, noEOF(err))
			}
			e.Target = string(b)
		}
		out[e.Name] = e
		return nil
	})
	return out, err
}
