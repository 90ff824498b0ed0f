package reset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
)

// ReadWriterAt is a device as a KeyEraser sees it. It is an alias, so that a
// function taking interface{ io.ReaderAt; io.WriterAt } fits KeyEraserFuncs
// as it is.
type ReadWriterAt = interface {
	io.ReaderAt
	io.WriterAt
}

// KeyEraser destroys and looks for the key material of an encrypted volume:
// its LUKS2 headers and keyslot areas. pkg/dmcrypt supplies one (see
// KeyEraserFuncs); reset does not import it.
type KeyEraser interface {
	// EraseKeyslots overwrites both LUKS2 headers and every keyslot area
	// of dev, a volume of size bytes, so that the volume key cannot be
	// recovered from it.
	EraseKeyslots(dev ReadWriterAt, size int64) error
	// Erased reports whether dev holds no LUKS2 header and no keyslot
	// material: true after EraseKeyslots, false on a LUKS2 volume (even a
	// damaged one).
	Erased(dev io.ReaderAt, size int64) (bool, error)
}

// KeyEraserFuncs makes a KeyEraser of two functions, such as pkg/dmcrypt's.
type KeyEraserFuncs struct {
	Erase func(dev ReadWriterAt, size int64) error
	Check func(dev io.ReaderAt, size int64) (bool, error)
}

var _ KeyEraser = KeyEraserFuncs{}

func (f KeyEraserFuncs) EraseKeyslots(dev ReadWriterAt, size int64) error { return f.Erase(dev, size) }
func (f KeyEraserFuncs) Erased(dev io.ReaderAt, size int64) (bool, error) { return f.Check(dev, size) }

// SealedKey names the file that holds a volume's key sealed by the TPM.
// The zero SealedKey names none.
type SealedKey struct {
	FS   durable.FS
	Name string // slash path in FS
}

// CryptoStats says what CryptoErase did.
type CryptoStats struct {
	// AlreadyErased is set when the volume held no key material to begin
	// with, as when an earlier CryptoErase was cut short after erasing it.
	AlreadyErased bool
	// SealedKeyRemoved is set when the sealed-key file existed and was
	// removed.
	SealedKeyRemoved bool
}

// luksMagics are the LUKS2 header magics and the offsets they may be at:
// the primary header at 0, the secondary at one of the sizes a LUKS2
// metadata area may have (16 KiB to 4 MiB). LUKS1 has the primary's magic
// at 0 too.
var luksMagics = []struct {
	off   int64
	magic []byte
}{
	{0, []byte("LUKS\xba\xbe")},
	{16 << 10, []byte("SKUL\xba\xbe")},
	{32 << 10, []byte("SKUL\xba\xbe")},
	{64 << 10, []byte("SKUL\xba\xbe")},
	{128 << 10, []byte("SKUL\xba\xbe")},
	{256 << 10, []byte("SKUL\xba\xbe")},
	{512 << 10, []byte("SKUL\xba\xbe")},
	{1 << 20, []byte("SKUL\xba\xbe")},
	{2 << 20, []byte("SKUL\xba\xbe")},
	{4 << 20, []byte("SKUL\xba\xbe")},
}

// CryptoErase makes the encrypted volume dev (a whole partition) unreadable
// by destroying its keys: it erases the LUKS2 headers and keyslots with
// keys, flushes, removes the sealed-key file (durably) if there is one, and
// then checks, through keys and by looking for the LUKS magics itself, that
// no key material is left (ErrNotErased). The data area is left as it is:
// without the key it is noise. Running it again after a power cut finishes
// the job.
func CryptoErase(ctx context.Context, dev blockdev.Device, keys KeyEraser, sealed SealedKey) (CryptoStats, error) {
	var st CryptoStats
	if err := ctx.Err(); err != nil {
		return st, err
	}
	size := dev.Size()
	erased, err := keys.Erased(dev, size)
	if err != nil {
		return st, fmt.Errorf("crypto-erase: look for keys: %w", err)
	}
	st.AlreadyErased = erased
	if !erased {
		if err := keys.EraseKeyslots(dev, size); err != nil {
			return st, fmt.Errorf("crypto-erase: %w", err)
		}
	}
	if err := dev.Flush(); err != nil {
		return st, fmt.Errorf("crypto-erase: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}
	if sealed.FS != nil && sealed.Name != "" {
		removed, err := removeDurably(sealed.FS, sealed.Name)
		if err != nil {
			return st, fmt.Errorf("crypto-erase: sealed key: %w", err)
		}
		st.SealedKeyRemoved = removed
	}
	return st, checkErased(dev, keys, sealed)
}

// removeDurably removes name and syncs its directory; a missing file is
// not an error.
func removeDurably(fsys durable.FS, name string) (bool, error) {
	err := fsys.Remove(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, fsys.SyncDir(path.Dir(name))
}

// checkErased fails with ErrNotErased if dev has key material or the
// sealed-key file is still there.
func checkErased(dev blockdev.Device, keys KeyEraser, sealed SealedKey) error {
	erased, err := keys.Erased(dev, dev.Size())
	if err != nil {
		return fmt.Errorf("crypto-erase: check: %w", err)
	}
	if !erased {
		return fmt.Errorf("crypto-erase: key material left on the device: %w", ErrNotErased)
	}
	buf := make([]byte, 6)
	for _, m := range luksMagics {
		if m.off+int64(len(buf)) > dev.Size() {
			break
		}
		if _, err := dev.ReadAt(buf, m.off); err != nil {
			return fmt.Errorf("crypto-erase: check: read at %d: %w", m.off, err)
		}
		if bytes.Equal(buf, m.magic) {
			return fmt.Errorf("crypto-erase: a LUKS header is left at byte %d: %w", m.off, ErrNotErased)
		}
	}
	if sealed.FS != nil && sealed.Name != "" {
		_, err := sealed.FS.ReadFile(sealed.Name)
		switch {
		case err == nil:
			return fmt.Errorf("crypto-erase: sealed key %s is left: %w", sealed.Name, ErrNotErased)
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("crypto-erase: check: %w", err)
		}
	}
	return nil
}
