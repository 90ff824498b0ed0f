package verity

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/dm"
)

// ErrorMode is what the kernel does when a block does not match its hash.
type ErrorMode int

const (
	// ErrorEIO fails the read with EIO: the default, and the only mode
	// that lets the system go on.
	ErrorEIO ErrorMode = iota
	// RestartOnCorruption reboots the machine (restart_on_corruption), so
	// that a bootloader's boot counting can fall back to the other slot.
	RestartOnCorruption
	// PanicOnCorruption panics the kernel (panic_on_corruption).
	PanicOnCorruption
)

var errorModeOpts = [...]string{ErrorEIO: "", RestartOnCorruption: "restart_on_corruption", PanicOnCorruption: "panic_on_corruption"}

func (m ErrorMode) String() string {
	switch m {
	case ErrorEIO:
		return "eio"
	case RestartOnCorruption, PanicOnCorruption:
		return errorModeOpts[m]
	}
	return fmt.Sprintf("ErrorMode(%d)", int(m))
}

// Optional parameters of the verity target (the kernel's verity.rst).
const (
	optIgnoreZeroBlocks = "ignore_zero_blocks"
	optCheckAtMostOnce  = "check_at_most_once"
)

// ErrBadTable is wrapped by errors about verity tables the kernel would
// refuse or this package does not write.
var ErrBadTable = errors.New("bad verity table")

// Table is a dm-verity target's parameters, as the kernel documents them
// in Documentation/admin-guide/device-mapper/verity.rst:
//
//	<version> <dev> <hash_dev> <data_block_size> <hash_block_size>
//	<num_data_blocks> <hash_start_block> <algorithm> <digest> <salt>
//	[<#opt_params> <opt_params>]
type Table struct {
	// DataDev and HashDev are the devices, paths or major:minor; they
	// may be the same.
	DataDev, HashDev string
	// Params are the tree's: algorithm, block sizes, salt and format.
	Params Params
	// DataBlocks is the number of data blocks the device maps.
	DataBlocks uint64
	// HashStartBlock is where the top hash block is on HashDev, in hash
	// blocks: Tree.HashStart / hash block size.
	HashStartBlock uint64
	// RootHash is the digest the tree is checked against.
	RootHash []byte
	// ErrorMode is what a mismatch does; the zero value fails reads.
	ErrorMode ErrorMode
	// IgnoreZeroBlocks reads zeros for data blocks whose hash is the
	// hash of a zero block, without reading them.
	IgnoreZeroBlocks bool
	// CheckAtMostOnce checks each data block only the first time it is
	// read; it saves CPU and leaves later tampering of the disk unseen.
	CheckAtMostOnce bool
}

// NewTable returns the table of a tree built with Build or laid out with
// Layout, its root hash given, checking blocks with the default EIO mode.
func NewTable(t *Tree, dataDev, hashDev string, root []byte) Table {
	return Table{
		DataDev:        dataDev,
		HashDev:        hashDev,
		Params:         t.Params,
		DataBlocks:     uint64(t.DataBlocks),
		HashStartBlock: uint64(t.HashStart / int64(t.Params.withDefaults().HashBlockSize)),
		RootHash:       root,
	}
}

// Validate reports whether the kernel would take the table.
func (t Table) Validate() error {
	p := t.Params.withDefaults()
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadTable, err)
	}
	for _, d := range []string{t.DataDev, t.HashDev} {
		if d == "" || strings.ContainsAny(d, " \t\n\x00") {
			return fmt.Errorf("%w: device %q", ErrBadTable, d)
		}
	}
	if _, size, _ := algorithm(p.HashAlg); len(t.RootHash) != size {
		return fmt.Errorf("%w: root hash is %d bytes, a %s digest %d", ErrBadTable, len(t.RootHash), p.HashAlg, size)
	}
	if t.DataBlocks == 0 || t.DataBlocks > (1<<63-1)/uint64(p.DataBlockSize) {
		return fmt.Errorf("%w: %d data blocks", ErrBadTable, t.DataBlocks)
	}
	if t.ErrorMode < ErrorEIO || t.ErrorMode > PanicOnCorruption {
		return fmt.Errorf("%w: %v", ErrBadTable, t.ErrorMode)
	}
	return nil
}

// String formats t's parameters as the kernel prints them back (dmsetup
// table) when the devices are given as major:minor, and as veritysetup
// loads them but without its trailing space. The salt is "-" when there is
// none.
func (t Table) String() string {
	p := t.Params.withDefaults()
	salt := "-"
	if len(p.Salt) > 0 {
		salt = hex.EncodeToString(p.Salt)
	}
	s := fmt.Sprintf("%d %s %s %d %d %d %d %s %s %s", p.Version, t.DataDev, t.HashDev,
		p.DataBlockSize, p.HashBlockSize, t.DataBlocks, t.HashStartBlock, p.HashAlg,
		hex.EncodeToString(t.RootHash), salt)
	var opts []string
	if t.ErrorMode > ErrorEIO && t.ErrorMode <= PanicOnCorruption {
		opts = append(opts, errorModeOpts[t.ErrorMode])
	}
	if t.IgnoreZeroBlocks {
		opts = append(opts, optIgnoreZeroBlocks)
	}
	if t.CheckAtMostOnce {
		opts = append(opts, optCheckAtMostOnce)
	}
	if len(opts) > 0 {
		s += " " + strconv.Itoa(len(opts)) + " " + strings.Join(opts, " ")
	}
	return s
}

// Target returns the device-mapper target of t: the whole data, "verity",
// String.
func (t Table) Target() dm.Target {
	p := t.Params.withDefaults()
	return dm.Target{Length: t.DataBlocks * uint64(p.DataBlockSize) / 512, Type: "verity", Params: t.String()}
}

// ParseTable parses a verity target's parameters, as the kernel prints
// them in a table. It accepts the optional parameters String writes and
// refuses others (ignore_corruption, forward error correction, root hash
// signatures), and the hash algorithms this package computes.
func ParseTable(s string) (Table, error) {
	f := strings.Fields(s)
	bad := func(format string, args ...any) (Table, error) {
		return Table{}, fmt.Errorf("%w: %s", ErrBadTable, fmt.Sprintf(format, args...))
	}
	if len(f) < 10 {
		return bad("%d fields, want at least 10", len(f))
	}
	num := func(i int, bits int) (uint64, error) {
		n, err := strconv.ParseUint(f[i], 10, bits)
		if err != nil {
			return 0, fmt.Errorf("%w: field %d: %w", ErrBadTable, i+1, err)
		}
		return n, nil
	}
	var t Table
	var err error
	var v, dbs, hbs uint64
	if v, err = num(0, 32); err != nil {
		return Table{}, err
	}
	t.DataDev, t.HashDev = f[1], f[2]
	if dbs, err = num(3, 32); err != nil {
		return Table{}, err
	}
	if hbs, err = num(4, 32); err != nil {
		return Table{}, err
	}
	if t.DataBlocks, err = num(5, 64); err != nil {
		return Table{}, err
	}
	if t.HashStartBlock, err = num(6, 64); err != nil {
		return Table{}, err
	}
	t.Params = Params{Version: uint32(v), DataBlockSize: uint32(dbs), HashBlockSize: uint32(hbs), HashAlg: f[7]}
	if t.RootHash, err = hex.DecodeString(f[8]); err != nil {
		return bad("root hash: %v", err)
	}
	if f[9] != "-" {
		if t.Params.Salt, err = hex.DecodeString(f[9]); err != nil {
			return bad("salt: %v", err)
		}
		if len(t.Params.Salt) == 0 {
			return bad("empty salt")
		}
	}
	if len(f) > 10 {
		n, err := num(10, 8)
		if err != nil {
			return Table{}, err
		}
		if int(n) != len(f)-11 || n == 0 {
			return bad("%d optional parameters, %d given", n, len(f)-11)
		}
		for _, o := range f[11:] {
			switch {
			case o == errorModeOpts[RestartOnCorruption] && t.ErrorMode == ErrorEIO:
				t.ErrorMode = RestartOnCorruption
			case o == errorModeOpts[PanicOnCorruption] && t.ErrorMode == ErrorEIO:
				t.ErrorMode = PanicOnCorruption
			case o == optIgnoreZeroBlocks && !t.IgnoreZeroBlocks:
				t.IgnoreZeroBlocks = true
			case o == optCheckAtMostOnce && !t.CheckAtMostOnce:
				t.CheckAtMostOnce = true
			default:
				return bad("optional parameter %q", o)
			}
		}
	}
	if err := t.Validate(); err != nil {
		return Table{}, err
	}
	return t, nil
}
