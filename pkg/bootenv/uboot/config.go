package uboot

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// ErrConfig is wrapped by errors about a configuration that does not
// parse or describes an unusable layout.
var ErrConfig = errors.New("bad U-Boot environment configuration")

// Location is where one copy of the environment lives: one line of
// fw_env.config, "device offset envsize [sectorsize [sectors [nolock]]]".
type Location struct {
	// Device is a file, a block device or partition, or an MTD character
	// device (/dev/mtdN), which is erased before it is written.
	Device string
	// Offset is the copy's byte offset in Device; a negative one counts
	// back from the end of a block device (as libubootenv does).
	Offset int64
	// Size is the size of the copy in bytes, header included: U-Boot's
	// CONFIG_ENV_SIZE.
	Size int64
	// SectorSize is the flash erase block size, 0 for the device's own
	// (MEMGETINFO); ignored for files and block devices.
	SectorSize int64
	// Sectors is the number of erase blocks the copy may span, 0 for as
	// many as Size needs.
	Sectors int64
	// NoLock skips the MEMUNLOCK of an MTD before its erase (the sixth
	// field, disable_mtd_lock, of libubootenv).
	NoLock bool
}

// Config is an environment's layout: one Location for a single copy, two
// for the redundant format.
type Config struct {
	Copies []Location
}

// Redundant reports whether the environment has two copies.
func (c Config) Redundant() bool { return len(c.Copies) == 2 }

// ReadConfig reads and parses the fw_env.config at path.
func ReadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, err
	}
	defer f.Close()
	c, err := ParseConfig(f)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses an fw_env.config: one line per copy, fields
// separated by blanks, "device offset envsize [sectorsize [sectors
// [nolock]]]". As in libubootenv the offset is a C integer (decimal, 0x
// hex or 0 octal, perhaps negative) and envsize, sectorsize and sectors
// are hexadecimal with or without 0x; blank lines and lines starting with
// '#' are skipped, and so is the rest of a line from a field starting with
// '#'. Unlike libubootenv, a line that does not parse, or a third copy, is
// an error rather than silently ignored: dropping the second line would
// turn a redundant environment into a single one.
func ParseConfig(r io.Reader) (Config, error) {
	var c Config
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if strings.HasPrefix(f, "#") {
				fields = fields[:i]
				break
			}
		}
		if len(fields) == 0 {
			continue
		}
		loc, err := parseLine(fields)
		if err != nil {
			return Config{}, fmt.Errorf("line %d: %w", n, err)
		}
		c.Copies = append(c.Copies, loc)
	}
	if err := sc.Err(); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func parseLine(f []string) (Location, error) {
	if len(f) < 3 || len(f) > 6 {
		return Location{}, fmt.Errorf("%w: %d fields, want device offset envsize [sectorsize [sectors [nolock]]]", ErrConfig, len(f))
	}
	loc := Location{Device: f[0]}
	var err error
	if loc.Offset, err = parseCInt(f[1]); err != nil {
		return Location{}, fmt.Errorf("%w: offset %q: %w", ErrConfig, f[1], err)
	}
	hex := []*int64{&loc.Size, &loc.SectorSize, &loc.Sectors}
	for i, s := range f[2:min(len(f), 5)] {
		t := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
		v, err := strconv.ParseInt(t, 16, 64)
		if err != nil || t == "" || t[0] == '+' || t[0] == '-' {
			return Location{}, fmt.Errorf("%w: field %d %q is not a hexadecimal number", ErrConfig, i+3, s)
		}
		*hex[i] = v
	}
	if len(f) == 6 {
		v, err := strconv.Atoi(f[5])
		if err != nil || v < 0 {
			return Location{}, fmt.Errorf("%w: disable_mtd_lock %q: want 0 or 1", ErrConfig, f[5])
		}
		loc.NoLock = v != 0
	}
	return loc, nil
}

// Validate returns an error wrapping ErrConfig unless c has one or two
// copies of the same usable size, whose byte ranges do not overlap when
// they share a device.
func (c Config) Validate() error {
	if n := len(c.Copies); n != 1 && n != 2 {
		return fmt.Errorf("%w: %d copies, want 1 or 2", ErrConfig, n)
	}
	for i, l := range c.Copies {
		if l.Device == "" {
			return fmt.Errorf("%w: copy %d has no device", ErrConfig, i+1)
		}
		if err := checkSize(l.Size, c.Redundant()); err != nil {
			return fmt.Errorf("%w: copy %d: %w", ErrConfig, i+1, err)
		}
		if l.SectorSize < 0 || l.Sectors < 0 {
			return fmt.Errorf("%w: copy %d: negative sector size or count", ErrConfig, i+1)
		}
		if l.Sectors > 0 && l.SectorSize > 0 && l.Sectors*l.SectorSize < l.Size {
			return fmt.Errorf("%w: copy %d: %d sectors of %d bytes hold less than %d bytes", ErrConfig, i+1, l.Sectors, l.SectorSize, l.Size)
		}
	}
	if !c.Redundant() {
		return nil
	}
	a, b := c.Copies[0], c.Copies[1]
	if a.Size != b.Size {
		return fmt.Errorf("%w: the copies differ in size (%#x, %#x)", ErrConfig, a.Size, b.Size)
	}
	if a.Device == b.Device && (a.Offset < 0) == (b.Offset < 0) {
		as, ae := a.span(a.SectorSize)
		bs, be := b.span(b.SectorSize)
		if as < be && bs < ae {
			return fmt.Errorf("%w: the copies overlap on %s", ErrConfig, a.Device)
		}
	}
	return nil
}

// span returns the byte range the copy occupies on its device, widened to
// whole erase blocks of sector bytes when sector > 0.
func (l Location) span(sector int64) (start, end int64) {
	start, end = l.Offset, l.Offset+l.Size
	if sector > 0 {
		start = floorDiv(start, sector) * sector
		end = -floorDiv(-end, sector) * sector
		if n := l.Sectors * sector; l.Sectors > 0 && end-start < n {
			end = start + n
		}
	}
	return start, end
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// String returns the location as an fw_env.config line.
func (l Location) String() string {
	s := fmt.Sprintf("%s %#x %#x", l.Device, l.Offset, l.Size)
	if l.Offset < 0 {
		s = fmt.Sprintf("%s -%#x %#x", l.Device, -l.Offset, l.Size)
	}
	if l.SectorSize != 0 || l.Sectors != 0 || l.NoLock {
		s += fmt.Sprintf(" %#x", l.SectorSize)
	}
	if l.Sectors != 0 || l.NoLock {
		s += fmt.Sprintf(" %#x", l.Sectors)
	}
	if l.NoLock {
		s += " 1"
	}
	return s
}

// String returns the configuration as fw_env.config text.
func (c Config) String() string {
	var b strings.Builder
	for _, l := range c.Copies {
		b.WriteString(l.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// parseCInt parses s as strtoll(s, NULL, 0) would accept it whole: an
// optional sign, then 0x and hexadecimal digits, 0 and octal digits, or
// decimal digits.
func parseCInt(s string) (int64, error) {
	t := strings.TrimLeft(s, "+-")
	if len(s)-len(t) > 1 {
		return 0, strconv.ErrSyntax
	}
	base := 10
	switch {
	case strings.HasPrefix(t, "0x") || strings.HasPrefix(t, "0X"):
		base, t = 16, t[2:]
	case len(t) > 1 && t[0] == '0':
		base, t = 8, t[1:]
	}
	if t == "" || strings.ContainsAny(t, "_+-") {
		return 0, strconv.ErrSyntax
	}
	v, err := strconv.ParseInt(t, base, 64)
	if err != nil {
		return 0, err
	}
	if strings.HasPrefix(s, "-") {
		v = -v
	}
	return v, nil
}
