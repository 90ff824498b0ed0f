package device_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/dmcrypt"
	"github.com/lifeboat-update/lifeboat/pkg/tpm"
	"github.com/lifeboat-update/lifeboat/qemu/device"
	"github.com/lifeboat-update/lifeboat/qemu/device/devicetest"
)

func TestSpecValidateEncrypted(t *testing.T) {
	dir := t.TempDir()
	s := device.Spec{Board: testBoard(t), Layout: "ab-crypt", Out: filepath.Join(dir, "disk.img"),
		Kernel: writeFile(t, dir, "vmlinuz", []byte("kernel")), Ramdisk: writeFile(t, dir, "ramdisk.img", []byte("ramdisk")),
		RootJSON: []byte("{}")}
	if err := s.Validate(); !errors.Is(err, device.ErrInvalidSpec) || !strings.Contains(err.Error(), "TPMState") {
		t.Errorf("Validate() without TPMState = %v, want an error asking for one", err)
	}
	s.TPMState = filepath.Join(dir, "tpm")
	if err := s.Validate(); err != nil {
		t.Errorf("Validate() = %v, want nil", err)
	}
}

// TestBuildEncrypted builds the ab-crypt disk and checks its data
// partition with the real tools: cryptsetup reads the LUKS2 header and
// accepts the passphrase the TPM unseals from the blob on the ESP, and the
// data segment decrypts to the ext4 holding the trusted state.
func TestBuildEncrypted(t *testing.T) {
	t.Parallel()
	devicetest.RequireBuild(t)
	testtool.Require(t, append(device.CryptTools(), "debugfs")...)
	b := testBoard(t)
	dir := t.TempDir()
	root := rootJSON(t)
	state := filepath.Join(dir, "tpm")
	d, err := device.Build(t.Context(), device.Spec{
		Board: b, Layout: "ab-crypt", Out: filepath.Join(dir, "disk.img"),
		Kernel: writeFile(t, dir, "vmlinuz", []byte("kernel")), Ramdisk: writeFile(t, dir, "ramdisk.img", []byte("ramdisk")),
		RootJSON: root, Installed: "1", TPMState: state,
	})
	if err != nil {
		t.Fatal(err)
	}
	if d.TPMState != state {
		t.Errorf("Disk.TPMState = %q, want %q", d.TPMState, state)
	}

	// The data partition, on its own, for cryptsetup.
	off, size, err := d.Partition("data")
	if err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(dir, "data.img")
	copyPart(t, d.Path, off, size, part)
	dump, err := exec.Command("cryptsetup", "luksDump", part).CombinedOutput()
	if err != nil {
		t.Fatalf("cryptsetup luksDump: %v\n%s", err, dump)
	}
	for _, want := range []string{"Version:       \t2", "Label:         \tdata", "cipher: aes-xts-plain64", "PBKDF:      pbkdf2", "Iterations: 1000"} {
		if !bytes.Contains(dump, []byte(want)) {
			t.Errorf("cryptsetup luksDump lacks %q:\n%s", want, dump)
		}
	}

	// The sealed blob on the ESP, unsealed by the device's TPM.
	espOff, _, err := d.Partition("esp")
	if err != nil {
		t.Fatal(err)
	}
	blobFile := filepath.Join(dir, "key.tpm")
	if out, err := exec.Command("mcopy", "-i", d.Path+"@@"+itoa(espOff), "::"+board.SealedKeyPath("data"), blobFile).CombinedOutput(); err != nil {
		t.Fatalf("mcopy %s: %v\n%s", board.SealedKeyPath("data"), err, out)
	}
	blob, err := os.ReadFile(blobFile)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := tpm.ParseSealed(blob); err != nil || len(s.PCRs) != 0 || s.PIN {
		t.Errorf("ParseSealed(blob) = %+v, %v, want a blob without PCRs or PIN", s, err)
	}
	var pass []byte
	if err := device.WithSWTPM(t.Context(), state, func(ctx context.Context, tp *tpm.TPM) error {
		pass, err = tp.Unseal(ctx, blob, nil)
		return err
	}); err != nil {
		t.Fatalf("unseal with the device's TPM: %v", err)
	}
	if len(pass) != device.PassphraseSize {
		t.Errorf("passphrase is %d bytes, want %d", len(pass), device.PassphraseSize)
	}
	keyFile := writeFile(t, dir, "pass", pass)
	if out, err := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file", keyFile, part).CombinedOutput(); err != nil {
		t.Errorf("cryptsetup open --test-passphrase with the unsealed key: %v\n%s", err, out)
	}
	wrong := writeFile(t, dir, "wrong", bytes.Repeat([]byte{1}, device.PassphraseSize))
	if out, err := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file", wrong, part).CombinedOutput(); err == nil {
		t.Errorf("cryptsetup open --test-passphrase accepted a wrong key:\n%s", out)
	}
	// Another TPM cannot unseal it.
	if err := device.WithSWTPM(t.Context(), filepath.Join(dir, "other-tpm"), func(ctx context.Context, tp *tpm.TPM) error {
		_, err := tp.Unseal(ctx, blob, nil)
		return err
	}); err == nil {
		t.Error("another TPM unsealed the blob")
	}

	// The data segment, decrypted as dm-crypt would, is the ext4 with the
	// trusted state.
	f, err := os.Open(part)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := dmcrypt.ReadHeader(f, size)
	if err != nil {
		t.Fatal(err)
	}
	_, seg, err := h.CryptSegment()
	if err != nil {
		t.Fatal(err)
	}
	key, err := h.Unlock(t.Context(), f, pass)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dmcrypt.NewCipher(seg.Encryption, key, seg.SectorSize)
	if err != nil {
		t.Fatal(err)
	}
	plain := make([]byte, size-int64(seg.Offset))
	if _, err := f.ReadAt(plain, int64(seg.Offset)); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	plain = plain[:len(plain)/c.SectorSize()*c.SectorSize()]
	if err := c.Decrypt(plain, plain, seg.IVTweak); err != nil {
		t.Fatal(err)
	}
	fsImg := writeFile(t, dir, "data.ext4", plain)
	if got := debugfsCat(t, fsImg, 0, "/lifeboat/state/root.json"); !bytes.Equal(got, root) {
		t.Errorf("root.json on the decrypted data partition = %q, want the provisioned one", got)
	}
}

func copyPart(t *testing.T, img string, off, size int64, out string) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(o, io.NewSectionReader(f, off, size)); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
