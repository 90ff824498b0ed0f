package dmcrypt

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
)

// fallbackEraseSize is what EraseKeyslots overwrites of a device whose
// header carries the LUKS magic but cannot be read: room for both headers
// at their largest (4 MiB each) and the largest keyslots area cryptsetup
// makes (128 MiB).
const fallbackEraseSize = 2*4<<20 + 128<<20

// eraseChunk is the size of EraseKeyslots' writes.
const eraseChunk = 1 << 20

// EraseKeyslots crypto-erases the LUKS2 volume on dev, size bytes long:
// it overwrites the keyslots area, then both binary headers and JSON
// areas, each first with random bytes and then with zeros, syncing after
// each pass when dev has a Sync method. Without its keyslots the volume key
// is gone, and the data with it. The keyslots go first, so that an erase
// cut short leaves either a readable header (erase again) or no key
// material. Afterwards ReadHeader fails with ErrNotLUKS.
//
// A device with the magic but no readable header has its first 136 MiB
// erased (or all of it, if smaller). A device without LUKS magic gives an
// error wrapping ErrNotLUKS and is not written.
func EraseKeyslots(dev interface {
	io.ReaderAt
	io.WriterAt
}, size int64) error {
	var hdrEnd, end int64
	h, err := ReadHeader(dev, size)
	switch {
	case err == nil:
		hdrEnd = int64(2 * h.Size)
		end = hdrEnd + int64(h.Metadata.Config.KeyslotsSize)
	case errors.Is(err, ErrNotLUKS):
		return fmt.Errorf("erase keyslots: %w", err)
	default:
		hdrEnd, end = 0, fallbackEraseSize
	}
	end = min(end, size)
	hdrEnd = min(hdrEnd, end)
	if err := overwrite(dev, hdrEnd, end); err != nil {
		return fmt.Errorf("erase keyslots area: %w", err)
	}
	if err := overwrite(dev, 0, hdrEnd); err != nil {
		return fmt.Errorf("erase LUKS2 headers: %w", err)
	}
	return nil
}

// overwrite writes random bytes over [from, to), syncs, then zeros, syncs.
func overwrite(dev io.WriterAt, from, to int64) error {
	if from >= to {
		return nil
	}
	buf := make([]byte, min(eraseChunk, to-from))
	for pass := 0; pass < 2; pass++ {
		for off := from; off < to; off += int64(len(buf)) {
			b := buf[:min(int64(len(buf)), to-off)]
			if pass == 0 {
				rand.Read(b)
			} else {
				clear(b)
			}
			if _, err := dev.WriteAt(b, off); err != nil {
				return fmt.Errorf("write %d bytes at %d: %w", len(b), off, err)
			}
		}
		if s, ok := dev.(interface{ Sync() error }); ok {
			if err := s.Sync(); err != nil {
				return fmt.Errorf("sync: %w", err)
			}
		}
	}
	return nil
}

// Erased reports whether dev holds no LUKS header any more: what a
// crypto-erase leaves. Any other error reading the header is returned.
func Erased(dev io.ReaderAt, size int64) (bool, error) {
	_, err := ReadHeader(dev, size)
	switch {
	case errors.Is(err, ErrNotLUKS):
		return true, nil
	case err != nil:
		return false, err
	}
	return false, nil
}
