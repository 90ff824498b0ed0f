package uboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

// MaxSize is the largest environment copy this package reads or writes:
// U-Boot's are a few KiB to 256 KiB.
const MaxSize = 16 << 20

// Errors callers branch on. ErrBadCRC and ErrImport wrap bootenv.ErrCorrupt.
var (
	// ErrBadCRC: the CRC32 stored in a copy does not match its data.
	ErrBadCRC = fmt.Errorf("%w: CRC32 mismatch", bootenv.ErrCorrupt)
	// ErrImport: the CRC matches but U-Boot's import (himport_r) would
	// refuse the data (an entry with an empty name), so U-Boot falls back
	// to its defaults.
	ErrImport = fmt.Errorf("%w: U-Boot cannot import the data", bootenv.ErrCorrupt)
	// ErrTooLarge: the variables do not fit in the environment's data area.
	ErrTooLarge = errors.New("variables do not fit in the environment")
	// ErrBadName: a variable name U-Boot would not store as given (empty,
	// with '=' or NUL, or starting with '#', a space or a tab), or a value
	// with NUL.
	ErrBadName = errors.New("invalid U-Boot variable")
)

// Image is one copy of the environment as it is stored: a little-endian
// CRC32 (IEEE) of the data area, the flags byte in the redundant format
// only, then the data area: "name=value" strings each ending in NUL, an
// empty string ending the list, and padding.
type Image struct {
	// Redundant says the copy has the flags byte (the layout with two
	// copies).
	Redundant bool
	// Flags is the flags byte of a redundant copy; see FlagScheme.
	Flags byte
	// Vars are the variables as U-Boot imports them.
	Vars bootenv.Vars
}

// headerSize is the size of the header before the data area.
func headerSize(redundant bool) int64 {
	if redundant {
		return 5
	}
	return 4
}

// checkSize returns an error unless size is a usable copy size.
func checkSize(size int64, redundant bool) error {
	if size <= headerSize(redundant)+1 || size > MaxSize {
		return fmt.Errorf("environment size %d: must be between %d and %d", size, headerSize(redundant)+2, MaxSize)
	}
	return nil
}

// ReadImage reads one copy of size bytes from r and decodes it the way
// U-Boot does (env_import, himport_r). A copy whose CRC does not match
// returns its Flags with an error wrapping ErrBadCRC; one U-Boot could not
// import, an error wrapping ErrImport.
func ReadImage(r io.Reader, size int64, redundant bool) (Image, error) {
	if err := checkSize(size, redundant); err != nil {
		return Image{}, err
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return Image{}, fmt.Errorf("%w: shorter than %d bytes", bootenv.ErrCorrupt, size)
		}
		return Image{}, err
	}
	return decode(buf, redundant)
}

// decode decodes a whole copy held in buf.
func decode(buf []byte, redundant bool) (Image, error) {
	im := Image{Redundant: redundant}
	h := headerSize(redundant)
	if redundant {
		im.Flags = buf[4]
	}
	data := buf[h:]
	if want, got := binary.LittleEndian.Uint32(buf), crc32.ChecksumIEEE(data); got != want {
		return im, fmt.Errorf("%w: stored %#08x, computed %#08x", ErrBadCRC, want, got)
	}
	v, err := importVars(data)
	if err != nil {
		return im, err
	}
	im.Vars = v
	return im, nil
}

// isBlank is C's isblank.
func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// importVars parses a data area as U-Boot's himport_r does with '\0' as
// the separator: leading blanks are skipped, entries starting with '#' are
// comments, "name" and "name=" delete name, a backslash escapes the next
// byte of a value, a later entry replaces an earlier one, and the list
// ends at an empty entry or at the end of the area. An entry "=value"
// makes the whole import fail.
func importVars(area []byte) (bootenv.Vars, error) {
	// himport_r works on a copy with a NUL added after the end.
	data := make([]byte, len(area)+1)
	copy(data, area)
	size := len(area)
	at := func(i int) byte { return data[min(i, size)] }
	v := bootenv.Vars{}
	dp := 0
	for {
		for isBlank(at(dp)) {
			dp++
		}
		switch {
		case at(dp) == '#':
			for at(dp) != 0 {
				dp++
			}
			dp++
		default:
			name := dp
			for at(dp) != '=' && at(dp) != 0 {
				dp++
			}
			if at(dp) == 0 || at(dp+1) == 0 {
				delete(v, string(data[name:min(dp, size)]))
				if at(dp) == '=' {
					dp++
				}
				dp++
				break
			}
			key := string(data[name:dp])
			dp++
			var val []byte
			for ; at(dp) != 0; dp++ {
				if at(dp) == '\\' && at(dp+1) != 0 {
					dp++
				}
				val = append(val, at(dp))
			}
			dp++
			if key == "" {
				return nil, fmt.Errorf("%w: entry with an empty name at byte %d", ErrImport, name)
			}
			v[key] = string(val)
		}
		if dp >= size || data[dp] == 0 {
			return v, nil
		}
	}
}

// CheckVar returns an error wrapping ErrBadName unless U-Boot would store
// and read back the variable name=value as given. An empty value is
// allowed: it is how U-Boot deletes a variable, and Encode leaves it out.
func CheckVar(name, value string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrBadName)
	case strings.ContainsAny(name, "=\x00"):
		return fmt.Errorf("%w: name %q holds '=' or NUL", ErrBadName, name)
	case name[0] == '#' || isBlank(name[0]):
		return fmt.Errorf("%w: name %q starts with '#', a space or a tab", ErrBadName, name)
	case strings.IndexByte(value, 0) >= 0:
		return fmt.Errorf("%w: value of %s holds NUL", ErrBadName, name)
	}
	return nil
}

// exportVars lays out the variables as U-Boot's hexport_r does: sorted by
// name, backslashes in values escaped, each entry ending in NUL, then the
// empty entry. Variables with empty values are left out.
func exportVars(v bootenv.Vars) ([]byte, error) {
	var b bytes.Buffer
	for _, k := range slices.Sorted(maps.Keys(v)) {
		val := v[k]
		if err := CheckVar(k, val); err != nil {
			return nil, err
		}
		if val == "" {
			continue
		}
		b.WriteString(k)
		b.WriteByte('=')
		for i := 0; i < len(val); i++ {
			if val[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(val[i])
		}
		b.WriteByte(0)
	}
	b.WriteByte(0)
	return b.Bytes(), nil
}

// Encode returns the copy of size bytes holding the image's variables,
// padded with zeros as U-Boot pads them.
func (im Image) Encode(size int64) ([]byte, error) {
	if err := checkSize(size, im.Redundant); err != nil {
		return nil, err
	}
	entries, err := exportVars(im.Vars)
	if err != nil {
		return nil, err
	}
	h := headerSize(im.Redundant)
	if int64(len(entries)) > size-h {
		return nil, fmt.Errorf("%w: %d bytes of variables, %d bytes of room", ErrTooLarge, len(entries), size-h)
	}
	buf := make([]byte, size)
	copy(buf[h:], entries)
	binary.LittleEndian.PutUint32(buf, crc32.ChecksumIEEE(buf[h:]))
	if im.Redundant {
		buf[4] = im.Flags
	}
	return buf, nil
}

// WriteTo writes the copy of size bytes holding the image's variables to w.
func (im Image) WriteTo(w io.Writer, size int64) error {
	buf, err := im.Encode(size)
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}

// FlagScheme is how the flags bytes of two copies say which is newer.
type FlagScheme int

const (
	// Incremental: each save writes the other copy with the flags byte
	// one more than the current copy's, wrapping 255 to 0; the higher
	// wins, 0 beating 255 (U-Boot's env_import_redund, used for MMC, SPI
	// flash, NAND, UBI; libubootenv for files, block devices, NAND, UBI).
	Incremental FlagScheme = iota
	// Boolean: a save writes the other copy with flags 1 (active), then
	// the flags byte of the old copy to 0 (obsolete), which parallel NOR
	// flash can do without an erase (U-Boot's env/flash.c; libubootenv
	// for NOR MTD devices).
	Boolean
)

// The flags byte values of the Boolean scheme.
const (
	FlagActive   = 1
	FlagObsolete = 0
)

func (s FlagScheme) String() string {
	switch s {
	case Incremental:
		return "incremental"
	case Boolean:
		return "boolean"
	}
	return fmt.Sprintf("FlagScheme(%d)", int(s))
}

// Select returns the copy (0 or 1) U-Boot takes, given whether each
// copy's CRC is valid and each one's flags byte, or -1 when neither is
// valid and U-Boot uses its built-in defaults. A copy with a bad CRC is
// never taken; of two valid copies the flags decide.
func Select(s FlagScheme, valid [2]bool, flags [2]byte) int {
	switch {
	case !valid[0] && !valid[1]:
		return -1
	case !valid[1]:
		return 0
	case !valid[0]:
		return 1
	}
	f0, f1 := flags[0], flags[1]
	if s == Boolean {
		// env/flash.c, env_flash_init.
		switch {
		case f0 == FlagActive && f1 == FlagObsolete:
			return 0
		case f0 == FlagObsolete && f1 == FlagActive:
			return 1
		case f0 == f1:
			return 0
		case f0 == 0xff:
			return 0
		case f1 == 0xff:
			return 1
		}
		// U-Boot leaves the remaining cases undefined; libubootenv
		// takes the higher value, and so do we.
		if f1 > f0 {
			return 1
		}
		return 0
	}
	// env/common.c, env_import_redund.
	switch {
	case f0 == 255 && f1 == 0:
		return 1
	case f1 == 255 && f0 == 0:
		return 0
	case f1 > f0:
		return 1
	}
	return 0
}

// NextFlags returns the flags byte of a copy saved over the current one,
// whose flags byte is cur.
func (s FlagScheme) NextFlags(cur byte) byte {
	if s == Boolean {
		return FlagActive
	}
	return cur + 1
}
