package reset

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/blockdev"
	"github.com/lifeboat-update/lifeboat/pkg/dm"
	"github.com/lifeboat-update/lifeboat/pkg/dmcrypt"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/qemu/vmtest"
)

// TestCryptoEraseVM: a crypto-erase leaves nothing of the old data
// readable, on the real kernel. The disk is a LUKS2 volume made by the real
// cryptsetup (dmcrypt's golden image). In the guest a known plaintext is
// written through dm-crypt and read back; then the volume is crypto-erased,
// after which it cannot be opened, the key material is zeros, and the
// plaintext is nowhere on the disk.
func TestCryptoEraseVM(t *testing.T) {
	img := filepath.Join(t.TempDir(), "luks.img")
	if !vmtest.InGuest() {
		if err := os.WriteFile(img, goldenLUKS(t), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !vmtest.Run(t, vmtest.Options{Disks: []string{img}, Modules: []string{"dm-crypt", "xts", "ecb"}}) {
		return
	}

	ctx := context.Background()
	ctl, err := dm.Open(dm.DefaultControl)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	pass := []byte("second passphrase")
	disk := vmtest.Disk(0)
	path, err := dmcrypt.Open(ctx, ctl, "victim", disk, pass)
	if err != nil {
		t.Fatalf("dmcrypt.Open(%s) = %v", disk, err)
	}
	mapped, err := blockdev.Open(path, os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	size := min(mapped.Size(), 1<<20)
	mapped.Close()
	if size < 4096 {
		t.Fatalf("%s is %d bytes, too small for the test", path, size)
	}
	plain := bytes.Repeat([]byte("lifeboat secret "), int(size)/16)
	if err := os.WriteFile(path, plain, 0); err != nil {
		t.Fatalf("write through dm-crypt: %v", err)
	}
	got := make([]byte, len(plain))
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(f, got); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("read back through dm-crypt: %v (equal: %v)", err, bytes.Equal(got, plain))
	}
	f.Close()
	if err := dmcrypt.Close(ctx, ctl, "victim"); err != nil {
		t.Fatal(err)
	}

	dev, err := blockdev.Open(disk, os.O_RDWR|os.O_EXCL)
	if err != nil {
		t.Fatal(err)
	}
	state := durable.OS(t.TempDir())
	if err := durable.WriteFile(state, "volume.sealed", []byte("sealed key blob"), 0o600); err != nil {
		t.Fatal(err)
	}
	eraser := KeyEraserFuncs{Erase: dmcrypt.EraseKeyslots, Check: dmcrypt.Erased}
	if _, err := CryptoErase(ctx, dev, eraser, SealedKey{FS: state, Name: "volume.sealed"}); err != nil {
		t.Fatalf("CryptoErase(%s) = %v", disk, err)
	}
	dev.Close()

	if _, err := dmcrypt.Open(ctx, ctl, "victim", disk, pass); !errors.Is(err, dmcrypt.ErrNotLUKS) {
		t.Errorf("dmcrypt.Open() after the erase = %v, want ErrNotLUKS", err)
	}
	raw, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, plain[:4096]) {
		t.Error("the plaintext is readable on the raw disk after the erase")
	}
	if bytes.Contains(raw, []byte("LUKS\xba\xbe")) || bytes.Contains(raw, []byte("SKUL\xba\xbe")) {
		t.Error("a LUKS header magic is left on the disk")
	}
	if _, err := state.ReadFile("volume.sealed"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sealed key after the erase: %v, want it gone", err)
	}
}
