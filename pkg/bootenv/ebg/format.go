package ebg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

// FileName is the name of the environment file in the root directory of
// each config partition.
const FileName = "BGENV.DAT"

// The layout of EBG 0.13's packed struct _BG_ENVDATA (include/envdata.h),
// as built by Debian (ENV_MEM_USERVARS = 131072, the default).
const (
	// StringLength is ENV_STRING_LENGTH: UTF-16 code units of kernelfile
	// and kernelparams, the terminating NUL included.
	StringLength = 255
	// UserDataSize is ENV_MEM_USERVARS: the bytes kept for user variables.
	UserDataSize = 131072
	// Size is sizeof(BG_ENVDATA): the size of BGENV.DAT.
	Size = offUser + UserDataSize + 4

	offKernelFile   = 0
	offKernelParams = offKernelFile + 2*StringLength
	offInProgress   = offKernelParams + 2*StringLength
	offUState       = offInProgress + 1
	offWatchdog     = offUState + 1
	offRevision     = offWatchdog + 2
	offUser         = offRevision + 4
	offCRC          = offUser + UserDataSize
)

// UState is a config's update state (ustate).
type UState uint8

// The update states (USTATE_* in envdata.h).
const (
	// OK: the config booted and was confirmed, or was never tested.
	OK UState = 0
	// Installed: EBG boots the config once on trial at the next boot.
	Installed UState = 1
	// Testing: EBG booted the config on trial and it was not confirmed
	// yet. EBG marks it failed if it finds it so at the next boot.
	Testing UState = 2
	// Failed: the trial failed; EBG also sets the revision to 0.
	Failed UState = 3
	// Unknown: EBG boots it like OK.
	Unknown UState = 4
)

func (u UState) String() string {
	switch u {
	case OK:
		return "OK"
	case Installed:
		return "INSTALLED"
	case Testing:
		return "TESTING"
	case Failed:
		return "FAILED"
	case Unknown:
		return "UNKNOWN"
	}
	return fmt.Sprintf("UState(%d)", uint8(u))
}

// Config is one BGENV.DAT.
type Config struct {
	// KernelFile is the payload EBG starts, as "L:<FAT label>:<file>" or
	// a path on the config partition's own volume.
	KernelFile string
	// KernelParams is the payload's command line.
	KernelParams string
	// InProgress set to 1 makes EBG skip the config even if its revision
	// is the highest (an update is being written to it).
	InProgress uint8
	UState     UState
	// WatchdogTimeoutSec arms the watchdog before the payload starts; 0
	// disables it.
	WatchdogTimeoutSec uint16
	// Revision orders the configs: EBG boots the highest. 0 marks a
	// failed config.
	Revision uint32
	// User is the user variable area, exactly UserDataSize bytes, kept as
	// it was read so that writes preserve variables of any type; see
	// [Config.UserVars] and [Config.SetUserVars]. Nil means empty.
	User []byte
}

// Errors callers branch on.
var (
	// ErrTooLong is wrapped by the error of encoding a string or user
	// variables that do not fit.
	ErrTooLong = errors.New("value too long for BGENV.DAT")
)

// ParseEnv decodes a BGENV.DAT from r, which must hold at least Size
// bytes (EBG reads exactly that many and ignores the rest). It checks
// what EBG checks before it boots a config, the size and the CRC32; an
// error wraps bootenv.ErrCorrupt. The user variables are decoded later,
// by [Config.UserVars].
func ParseEnv(r io.Reader) (*Config, error) {
	var b [Size]byte
	if n, err := io.ReadFull(r, b[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read %s: %d bytes, want %d: %w", FileName, n, Size, bootenv.ErrCorrupt)
		}
		return nil, fmt.Errorf("read %s: %w", FileName, err)
	}
	if got, want := crc32.ChecksumIEEE(b[:offCRC]), binary.LittleEndian.Uint32(b[offCRC:]); got != want {
		return nil, fmt.Errorf("%s: crc32 %#08x, stored %#08x: %w", FileName, got, want, bootenv.ErrCorrupt)
	}
	c := &Config{
		KernelFile:         decodeString(b[offKernelFile:offKernelParams]),
		KernelParams:       decodeString(b[offKernelParams:offInProgress]),
		InProgress:         b[offInProgress],
		UState:             UState(b[offUState]),
		WatchdogTimeoutSec: binary.LittleEndian.Uint16(b[offWatchdog:]),
		Revision:           binary.LittleEndian.Uint32(b[offRevision:]),
	}
	if user := b[offUser:offCRC]; len(trimZeros(user)) > 0 {
		c.User = bytes.Clone(user)
	}
	return c, nil
}

// decodeString decodes a NUL-terminated UTF-16LE string of at most
// StringLength-1 code units (EBG forces the last one to NUL).
func decodeString(b []byte) string {
	u := make([]uint16, 0, StringLength)
	for i := 0; i+1 < len(b) && len(u) < StringLength-1; i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

func encodeString(dst []byte, field, s string) error {
	u := utf16.Encode([]rune(s))
	if len(u) > StringLength-1 {
		return fmt.Errorf("%s: %d UTF-16 code units, at most %d: %w", field, len(u), StringLength-1, ErrTooLong)
	}
	for i, c := range u {
		binary.LittleEndian.PutUint16(dst[2*i:], c)
	}
	return nil
}

// MarshalBinary encodes c as the Size bytes of a BGENV.DAT, CRC included.
func (c *Config) MarshalBinary() ([]byte, error) {
	b := make([]byte, Size)
	if err := encodeString(b[offKernelFile:offKernelParams], "kernelfile", c.KernelFile); err != nil {
		return nil, err
	}
	if err := encodeString(b[offKernelParams:offInProgress], "kernelparams", c.KernelParams); err != nil {
		return nil, err
	}
	b[offInProgress] = c.InProgress
	b[offUState] = uint8(c.UState)
	binary.LittleEndian.PutUint16(b[offWatchdog:], c.WatchdogTimeoutSec)
	binary.LittleEndian.PutUint32(b[offRevision:], c.Revision)
	if len(c.User) > UserDataSize {
		return nil, fmt.Errorf("user data: %d bytes, at most %d: %w", len(c.User), UserDataSize, ErrTooLong)
	}
	copy(b[offUser:], c.User)
	binary.LittleEndian.PutUint32(b[offCRC:], crc32.ChecksumIEEE(b[:offCRC]))
	return b, nil
}

// WriteTo writes c's encoding to w.
func (c *Config) WriteTo(w io.Writer) (int64, error) {
	b, err := c.MarshalBinary()
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	return int64(n), err
}

// Clone returns a deep copy of c.
func (c *Config) Clone() *Config {
	d := *c
	d.User = bytes.Clone(c.User)
	return &d
}

// Equal reports whether c and d encode to the same bytes.
func (c *Config) Equal(d *Config) bool {
	if c == nil || d == nil {
		return c == d
	}
	return c.KernelFile == d.KernelFile && c.KernelParams == d.KernelParams &&
		c.InProgress == d.InProgress && c.UState == d.UState &&
		c.WatchdogTimeoutSec == d.WatchdogTimeoutSec && c.Revision == d.Revision &&
		bytes.Equal(trimZeros(c.User), trimZeros(d.User))
}

func trimZeros(b []byte) []byte { return bytes.TrimRight(b, "\x00") }
