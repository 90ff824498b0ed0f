// Package reset clears a device's data for a factory reset, a decommission
// or a change of owner.
//
// [Wipe] clears a partition by discarding it (securely, if asked and the
// device can) and then making it read as zeros, by the device's zero-out
// or by writing zeros, and can read it all back to prove it. It takes time
// in proportion to the partition's size.
//
// [CryptoErase] makes an encrypted partition unreadable in seconds whatever
// its size, by destroying its keys: the LUKS2 headers and keyslots on the
// device (through a [KeyEraser], which pkg/dmcrypt supplies) and the
// sealed-key file the TPM unseals. It then checks that no key material is
// left.
package reset

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
)

// ErrNotErased is wrapped by the error of a wipe or crypto-erase whose
// check found old data or key material left.
var ErrNotErased = errors.New("data remains after erasing")

// chunk is the size and alignment of the pieces Wipe works in, between
// which it checks its context and reports progress; verify reads through a
// buffer this size, which bounds its memory.
const chunk = 4 << 20

// WipeStats says what Wipe did.
type WipeStats struct {
	Bytes int64 // size of the range wiped
	// Discarded and SecureDiscarded are the bytes the device accepted a
	// discard or secure discard for.
	Discarded, SecureDiscarded int64
	// ZeroedByDevice and ZeroedByWriting are the bytes made zero by the
	// device's zero-out and by writing zeros.
	ZeroedByDevice, ZeroedByWriting int64
	// Verified is the bytes read back and found zero.
	Verified int64
}

// WipeOption is an optional setting of Wipe.
type WipeOption func(*wipeOpts)

type wipeOpts struct {
	secure   bool
	verify   bool
	progress progress.Reporter
}

// Secure makes Wipe discard securely where the device can (eMMC secure
// trim), so that not even the flash's spare blocks keep the old data. On a
// device that cannot, Wipe discards as usual.
func Secure() WipeOption { return func(o *wipeOpts) { o.secure = true } }

// Verify makes Wipe read the whole range back and fail with ErrNotErased
// if any byte is not zero.
func Verify() WipeOption { return func(o *wipeOpts) { o.verify = true } }

// WithProgress reports Wipe's progress to r.
func WithProgress(r progress.Reporter) WipeOption { return func(o *wipeOpts) { o.progress = r } }

// Wipe clears [off, off+size) of dev: it discards the range, then makes it
// read as zeros (blockdev.Zero: the device's zero-out where it has one,
// writing zeros where not), flushes, and with Verify reads it all back. It
// works in 4 MiB pieces, checking ctx between them, and holds at most one
// piece in memory.
func Wipe(ctx context.Context, dev blockdev.Device, off, size int64, opts ...WipeOption) (WipeStats, error) {
	o := wipeOpts{progress: progress.Discard}
	for _, opt := range opts {
		opt(&o)
	}
	st := WipeStats{Bytes: size}
	if off < 0 || size < 0 || off > dev.Size() || size > dev.Size()-off {
		return st, fmt.Errorf("wipe [%d, +%d) of a %d-byte device: %w", off, size, dev.Size(), blockdev.ErrOutOfRange)
	}
	sd, canSecure := dev.(blockdev.SecureDiscarder)
	canSecure = canSecure && o.secure
	canDiscard := true

	o.progress.Start("wipe", size)
	for pos := off; pos < off+size; {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		n := min(chunk-pos%chunk, off+size-pos) // pieces aligned on the device
		if canSecure {
			switch err := sd.SecureDiscard(pos, n); {
			case err == nil:
				st.SecureDiscarded += n
			case errors.Is(err, blockdev.ErrNotSupported):
				canSecure = false
			default:
				return st, fmt.Errorf("wipe: %w", err)
			}
		}
		if !canSecure && canDiscard {
			switch err := dev.Discard(pos, n); {
			case err == nil:
				st.Discarded += n
			case errors.Is(err, blockdev.ErrNotSupported):
				canDiscard = false
			default:
				return st, fmt.Errorf("wipe: %w", err)
			}
		}
		z, err := blockdev.Zero(ctx, dev, pos, n)
		st.ZeroedByDevice += z.Device
		st.ZeroedByWriting += z.Written
		if err != nil {
			return st, fmt.Errorf("wipe: %w", err)
		}
		o.progress.Add(n)
		pos += n
	}
	o.progress.Done()
	if err := dev.Flush(); err != nil {
		return st, fmt.Errorf("wipe: %w", err)
	}
	if !o.verify {
		return st, nil
	}
	o.progress.Start("verify wipe", size)
	defer o.progress.Done()
	buf := make([]byte, min(chunk, size))
	zero := make([]byte, len(buf))
	for pos := off; pos < off+size; {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		n := min(int64(len(buf)), off+size-pos)
		if _, err := dev.ReadAt(buf[:n], pos); err != nil {
			return st, fmt.Errorf("verify wipe: read at %d: %w", pos, err)
		}
		if !bytes.Equal(buf[:n], zero[:n]) {
			return st, fmt.Errorf("verify wipe: byte %d is not zero: %w", pos+int64(firstNonZero(buf[:n])), ErrNotErased)
		}
		st.Verified += n
		o.progress.Add(n)
		pos += n
	}
	return st, nil
}

func firstNonZero(b []byte) int {
	for i, c := range b {
		if c != 0 {
			return i
		}
	}
	return -1
}
