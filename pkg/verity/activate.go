package verity

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/dm"
)

// ActivateOption is an optional setting of Activate. Of Build's options,
// WithoutSuperblock is one too.
type ActivateOption interface {
	applyActivate(*activation)
}

type activation struct {
	superblock bool
	dataSize   int64
	table      Table // its error mode and features
}

type activateFunc func(*activation)

func (f activateFunc) applyActivate(a *activation) { f(a) }

// applyActivate lets Build's options be given to Activate; only
// WithoutSuperblock means anything there.
func (o Option) applyActivate(a *activation) {
	opt := options{superblock: a.superblock}
	o(&opt)
	a.superblock = opt.superblock
}

// WithErrorMode sets what the kernel does on a mismatch; the default is
// ErrorEIO.
func WithErrorMode(m ErrorMode) ActivateOption {
	return activateFunc(func(a *activation) { a.table.ErrorMode = m })
}

// WithIgnoreZeroBlocks sets the ignore_zero_blocks feature.
func WithIgnoreZeroBlocks() ActivateOption {
	return activateFunc(func(a *activation) { a.table.IgnoreZeroBlocks = true })
}

// WithCheckAtMostOnce sets the check_at_most_once feature.
func WithCheckAtMostOnce() ActivateOption {
	return activateFunc(func(a *activation) { a.table.CheckAtMostOnce = true })
}

// WithDataSize gives the size of the data in bytes, as Build was given it.
// It is needed without a superblock; with one, the superblock must agree.
func WithDataSize(n int64) ActivateOption {
	return activateFunc(func(a *activation) { a.dataSize = n })
}

// Activate maps the device-mapper device name, read-only, over the data on
// dataDev checked by the tree on hashDev at hashOffset (the same device
// and Tree.HashOffset when the tree follows the data), and returns the
// device's path. p and root are trusted: they come from a signed manifest,
// not from the disk.
//
// By default the hash area starts with veritysetup's superblock, which
// must match p (and the data size, if given by WithDataSize); it gives the
// data size otherwise. With WithoutSuperblock, WithDataSize is required.
//
// A block that does not match the tree is never returned: reading it fails
// with EIO, or with WithErrorMode the kernel restarts or panics.
func Activate(ctx context.Context, ctl dm.Control, name, dataDev, hashDev string, hashOffset int64, p Params, root []byte, opts ...ActivateOption) (string, error) {
	a := activation{superblock: true}
	for _, o := range opts {
		o.applyActivate(&a)
	}
	p = p.withDefaults()
	if err := p.Validate(); err != nil {
		return "", fmt.Errorf("activate %s: %w", name, err)
	}
	uuid := ""
	if a.superblock {
		sb, err := readSuperblockAt(hashDev, hashOffset)
		if err != nil {
			return "", fmt.Errorf("activate %s: %w", name, err)
		}
		size := int64(sb.DataBlocks) * int64(sb.Params.withDefaults().DataBlockSize)
		if a.dataSize == 0 {
			a.dataSize = size
		}
		uuid = "CRYPT-VERITY-" + strings.ReplaceAll(sb.UUID.String(), "-", "") + "-" + name
	} else if a.dataSize == 0 {
		return "", fmt.Errorf("activate %s: %w: data size unknown without a superblock (WithDataSize)", name, ErrBadParams)
	}
	t, err := layout(p, a.dataSize, hashOffset, a.superblock)
	if err != nil {
		return "", fmt.Errorf("activate %s: %w", name, err)
	}
	if a.superblock {
		f, err := os.Open(hashDev)
		if err != nil {
			return "", fmt.Errorf("activate %s: %w", name, err)
		}
		err = t.checkSuperblock(f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("activate %s: hash device %s: %w", name, hashDev, err)
		}
	}
	table := NewTable(t, dataDev, hashDev, root)
	table.ErrorMode, table.IgnoreZeroBlocks, table.CheckAtMostOnce = a.table.ErrorMode, a.table.IgnoreZeroBlocks, a.table.CheckAtMostOnce
	if err := table.Validate(); err != nil {
		return "", fmt.Errorf("activate %s: %w", name, err)
	}
	if len(uuid) > 128 {
		uuid = "" // a name too long for veritysetup's UUID form
	}
	d, err := ctl.Create(ctx, name, uuid, []dm.Target{table.Target()}, dm.ReadOnly)
	if err != nil {
		return "", fmt.Errorf("activate %s: %w", name, err)
	}
	return d.Path, nil
}

// readSuperblockAt reads the superblock at off on the device at path.
func readSuperblockAt(path string, off int64) (*Superblock, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sb, err := ReadSuperblock(io.NewSectionReader(f, off, SuperblockSize))
	if err != nil {
		return nil, fmt.Errorf("hash device %s at %d: %w", path, off, err)
	}
	return sb, nil
}

// Deactivate removes the device Activate made.
func Deactivate(ctx context.Context, ctl dm.Control, name string) error {
	if err := ctl.Remove(ctx, name); err != nil {
		return fmt.Errorf("deactivate %s: %w", name, err)
	}
	return nil
}

// Corrupted reports whether the kernel has seen a block of the device
// that does not match its tree: its status line is "C" rather than "V".
func Corrupted(ctx context.Context, ctl dm.Control, name string) (bool, error) {
	st, err := ctl.Status(ctx, name)
	if err != nil {
		return false, fmt.Errorf("verity status of %s: %w", name, err)
	}
	if len(st) != 1 || st[0].Type != "verity" {
		return false, fmt.Errorf("verity status of %s: %w: not a verity device: %v", name, ErrBadTable, st)
	}
	switch s := strings.Fields(st[0].Params); {
	case len(s) > 0 && s[0] == "V":
		return false, nil
	case len(s) > 0 && s[0] == "C":
		return true, nil
	default:
		return false, fmt.Errorf("verity status of %s: %w: status %q", name, ErrBadTable, st[0].Params)
	}
}
