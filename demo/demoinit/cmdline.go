package demoinit

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/slot"
)

// Action is what demoinit does once it is done, lifeboat.demo=.
type Action string

const (
	// Poweroff syncs and powers the machine off: a test's QEMU exits.
	Poweroff Action = "poweroff"
	// Reboot syncs and restarts the machine, through the bootloader.
	Reboot Action = "reboot"
	// Stay leaves the system running, idle.
	Stay Action = "stay"
)

// Params are the demo system's kernel command line parameters.
type Params struct {
	// Slot is the booted slot, lifeboat.slot= (or RAUC's rauc.slot=).
	Slot slot.Name
	// Layout is the board layout on the disk, lifeboat.layout= [ab].
	Layout string
	// DataSize and RootHash are lifeboat.verity=DATASIZE:ROOTHASH: the
	// slot's dm-verity hash offset in bytes (the size of the data it
	// protects; the tree and its superblock follow) and the root hash.
	// RootHash is nil when the parameter is absent.
	DataSize int64
	RootHash []byte
	// Action is lifeboat.demo= [poweroff].
	Action Action
}

// ErrCmdline is wrapped by every error about a parameter's value.
var ErrCmdline = errors.New("bad parameter")

// rootHashSize is the size of a root hash: a SHA-256 digest, the
// algorithm of the trees lifeboat-release builds.
const rootHashSize = 32

// ParseCmdline reads the parameters from a kernel command line. A value
// that does not parse is an error wrapping ErrCmdline; an absent one takes
// its default. When a parameter is given twice the last wins, as for the
// kernel's own.
func ParseCmdline(cmdline string) (Params, error) {
	p := Params{Layout: "ab", Action: Poweroff}
	bad := func(format string, args ...any) (Params, error) {
		return p, fmt.Errorf("%w: %s", ErrCmdline, fmt.Sprintf(format, args...))
	}
	var raucSlot slot.Name
	for _, arg := range slot.SplitCmdline(cmdline) {
		k, v, _ := strings.Cut(arg, "=")
		switch k {
		case "lifeboat.slot":
			p.Slot = slot.Name(v)
		case "rauc.slot":
			raucSlot = slot.Name(v)
		case "lifeboat.layout":
			p.Layout = v
		case "lifeboat.verity":
			size, root, ok := strings.Cut(v, ":")
			n, err := strconv.ParseInt(size, 10, 64)
			if !ok || err != nil || n <= 0 || n%4096 != 0 {
				return bad("lifeboat.verity=%q: want DATASIZE:ROOTHASH, DATASIZE a positive multiple of 4096", v)
			}
			h, err := hex.DecodeString(root)
			if err != nil || len(h) != rootHashSize {
				return bad("lifeboat.verity=%q: the root hash is not %d bytes in hex", v, rootHashSize)
			}
			p.DataSize, p.RootHash = n, h
		case "lifeboat.demo":
			switch a := Action(v); a {
			case Poweroff, Reboot, Stay:
				p.Action = a
			default:
				return bad("lifeboat.demo=%q: want poweroff, reboot or stay", v)
			}
		}
	}
	if p.Slot == "" {
		p.Slot = raucSlot
	}
	if p.Layout == "" {
		return bad("lifeboat.layout is empty")
	}
	return p, nil
}

// VerityParam formats lifeboat.verity's value for a tree whose hash area
// starts at hashOffset (the data size) and whose root is root.
func VerityParam(hashOffset int64, root []byte) string {
	return fmt.Sprintf("%d:%x", hashOffset, root)
}
