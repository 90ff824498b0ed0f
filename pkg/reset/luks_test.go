package reset

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/lifeboat-update/lifeboat/internal/testtool"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/dmcrypt"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
)

// TestCryptoEraseLUKS2 erases a LUKS2 volume made by the real cryptsetup
// (dmcrypt's golden image) and checks that no key material is left: the
// header is gone, the passphrase that opened it unlocks nothing even with
// the old metadata, every byte before the data segment reads as zero, and
// the sealed key is removed.
func TestCryptoEraseLUKS2(t *testing.T) {
	img := goldenLUKS(t)
	dev := blockdev.NewMemBytes(img)
	size := int64(len(img))
	ctx := context.Background()
	h, err := dmcrypt.ReadHeader(dev, size)
	if err != nil {
		t.Fatal(err)
	}
	_, seg, err := h.CryptSegment()
	if err != nil {
		t.Fatal(err)
	}
	pass := []byte("second passphrase")
	if _, err := h.Unlock(ctx, dev, pass); err != nil {
		t.Fatalf("before the erase, Unlock() = %v", err)
	}

	state := durable.NewCrash()
	if err := durable.WriteFile(state, "volume.sealed", []byte("sealed key blob"), 0o600); err != nil {
		t.Fatal(err)
	}
	eraser := KeyEraserFuncs{Erase: dmcrypt.EraseKeyslots, Check: dmcrypt.Erased}
	st, err := CryptoErase(ctx, dev, eraser, SealedKey{FS: state, Name: "volume.sealed"})
	if err != nil {
		t.Fatalf("CryptoErase() = %v", err)
	}
	if st.AlreadyErased || !st.SealedKeyRemoved {
		t.Errorf("CryptoErase() stats = %+v, want an erase and the sealed key removed", st)
	}
	if _, err := dmcrypt.ReadHeader(dev, size); !errors.Is(err, dmcrypt.ErrNotLUKS) {
		t.Errorf("ReadHeader() after the erase = %v, want ErrNotLUKS", err)
	}
	// Even with a copy of the old header's metadata, the passphrase unlocks
	// nothing: the key material in the keyslot areas is gone.
	if _, err := h.Unlock(ctx, dev, pass); !errors.Is(err, dmcrypt.ErrWrongPassphrase) {
		t.Errorf("Unlock() with the old metadata after the erase = %v, want ErrWrongPassphrase", err)
	}
	if off := int64(seg.Offset); !bytes.Equal(dev.Bytes()[:off], make([]byte, off)) {
		t.Errorf("bytes before the data segment (%d) are not all zero after the erase", off)
	}
	if _, err := state.ReadFile("volume.sealed"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sealed key after the erase: %v, want it gone", err)
	}
}

// goldenLUKS returns a LUKS2 volume made by the real cryptsetup, one of
// dmcrypt's golden images; "second passphrase" opens it.
func goldenLUKS(t *testing.T) []byte {
	t.Helper()
	return testtool.ReadGzip(t, "../dmcrypt/testdata/pbkdf2-xts256-512.img.gz")
}
