package device

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/dmcrypt"
	"github.com/lifeboat-update/lifeboat/pkg/tpm"
)

// An encrypted data partition is made as a device's factory would make it,
// without root or device-mapper: a random passphrase is sealed to the
// device's TPM (an swtpm state directory, Spec.TPMState) and the blob put
// on the ESP at board.SealedKeyPath; `cryptsetup luksFormat` writes the
// LUKS2 header into a partition-sized file; the header is unlocked on the
// host with pkg/dmcrypt for the volume key, and the data partition's ext4
// image is encrypted into the data segment with pkg/dmcrypt's Cipher, as
// dm-crypt would have written it.

// CryptTools are the host programs Build runs besides Tools for a layout
// whose data partition is encrypted.
func CryptTools() []string { return []string{"cryptsetup", "swtpm", "swtpm_setup"} }

// PassphraseSize is the size of the random passphrase sealed to the TPM.
// A 256-bit random passphrase needs no slow key derivation, hence
// LUKSFormatArgs' PBKDF2 with few iterations.
const PassphraseSize = 32

// LUKSFormatArgs are the `cryptsetup luksFormat` arguments Build uses,
// besides the key file and the image: LUKS2, AES-XTS (cryptsetup's default
// cipher), and PBKDF2 with 1000 iterations, which pkg/dmcrypt's limits
// accept and a ramdisk under emulation derives at once.
func LUKSFormatArgs() []string {
	return []string{"luksFormat", "--type", "luks2", "--batch-mode", "--cipher", "aes-xts-plain64",
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}
}

// sealDataKey makes a random passphrase for the encrypted partition p,
// seals it to the TPM in s.TPMState (made if missing) and writes the blob
// under tmp. It returns the passphrase and the blob's file.
func (s *Spec) sealDataKey(ctx context.Context, tmp string, p board.Partition) ([]byte, string, error) {
	pass := make([]byte, PassphraseSize)
	if _, err := rand.Read(pass); err != nil {
		return nil, "", err
	}
	blob, err := SealToSWTPM(ctx, s.TPMState, pass, tpm.Policy{NoPCRs: true})
	if err != nil {
		return nil, "", fmt.Errorf("seal the key of %s: %w", p.Label, err)
	}
	file := filepath.Join(tmp, p.Label+".key.tpm")
	if err := os.WriteFile(file, blob, 0o644); err != nil {
		return nil, "", err
	}
	return pass, file, nil
}

// SealToSWTPM seals secret under policy to the swtpm TPM 2.0 whose state
// is in dir, which is made with swtpm_setup if it holds none.
func SealToSWTPM(ctx context.Context, dir string, secret []byte, policy tpm.Policy) ([]byte, error) {
	var blob []byte
	err := WithSWTPM(ctx, dir, func(ctx context.Context, t *tpm.TPM) error {
		var err error
		blob, err = t.Seal(ctx, secret, policy)
		return err
	})
	return blob, err
}

// WithSWTPM runs swtpm on the TPM 2.0 state in dir, made with swtpm_setup
// if it holds none, calls f with the TPM (for at most a minute), and stops
// swtpm: the state is QEMU's again (RunSpec.TPMState).
func WithSWTPM(ctx context.Context, dir string, f func(context.Context, *tpm.TPM) error) error {
	if err := withSWTPM(ctx, dir, f); err != nil {
		return fmt.Errorf("swtpm %s: %w", dir, err)
	}
	return nil
}

func withSWTPM(ctx context.Context, dir string, f func(context.Context, *tpm.TPM) error) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "tpm2-00.permall")); errors.Is(err, os.ErrNotExist) {
		if _, err := run(ctx, "swtpm_setup", "--tpm2", "--tpmstate", dir); err != nil {
			return err
		}
	}
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		return fmt.Errorf("swtpm (Debian package %s): %w: %w", debianPackage("swtpm"), ErrNoTool, err)
	}
	sockDir, err := os.MkdirTemp("", "lifeboat-swtpm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(sockDir)
	// The socket listens before swtpm runs: connections queue in its
	// backlog, and there is nothing to wait for.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(sockDir, "sock"), Net: "unix"})
	if err != nil {
		return err
	}
	defer l.Close()
	lf, err := l.File()
	if err != nil {
		return err
	}
	var out strings.Builder
	cmd := exec.Command(bin, "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--server", "type=unixio,fd=3", "--flags", "not-need-init,startup-clear")
	cmd.ExtraFiles = []*os.File{lf}
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Start()
	lf.Close()
	if err != nil {
		return fmt.Errorf("start swtpm: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop := func() error {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			var exit *exec.ExitError
			if err != nil && !(errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == syscall.SIGTERM) {
				return fmt.Errorf("swtpm: %w: %s", err, strings.TrimSpace(out.String()))
			}
			return nil
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			return errors.New("swtpm did not stop on SIGTERM within 10s")
		}
	}
	c, err := net.Dial("unix", filepath.Join(sockDir, "sock"))
	if err != nil {
		stop()
		return err
	}
	t := tpm.New(c)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = f(ctx, t)
	t.Close()
	if serr := stop(); err == nil {
		err = serr
	}
	return err
}

// luks makes the encrypted partition p, size bytes, in a file under tmp
// and returns its path: a LUKS2 volume opened by pass, holding the ext4
// file system ext4 makes for p.
func (s *Spec) luks(ctx context.Context, tmp string, p board.Partition, size int64, pass []byte) (string, error) {
	img := filepath.Join(tmp, p.Label+".luks")
	keyFile := filepath.Join(tmp, p.Label+".pass")
	if err := os.WriteFile(keyFile, pass, 0o600); err != nil {
		return "", err
	}
	defer os.Remove(keyFile)
	if err := truncated(img, size); err != nil {
		return "", err
	}
	label := p.Label
	if _, err := run(ctx, "cryptsetup", append(LUKSFormatArgs(), "--label", label, "--key-file", keyFile, img)...); err != nil {
		return "", err
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h, err := dmcrypt.ReadHeader(f, size)
	if err != nil {
		return "", err
	}
	_, seg, err := h.CryptSegment()
	if err != nil {
		return "", err
	}
	key, err := h.Unlock(ctx, f, pass)
	if err != nil {
		return "", err
	}
	defer key.Zero()
	c, err := dmcrypt.NewCipher(seg.Encryption, key, seg.SectorSize)
	if err != nil {
		return "", err
	}
	dataSize := int64(seg.Size)
	if seg.Dynamic {
		dataSize = size - int64(seg.Offset)
	}
	dataSize -= dataSize % 4096
	fsImg, err := s.ext4(ctx, tmp, p, dataSize)
	if err != nil {
		return "", err
	}
	if err := encryptInto(ctx, f, fsImg, c, seg); err != nil {
		return "", err
	}
	os.Remove(fsImg)
	return img, f.Close()
}

// encryptInto encrypts the file src into dev's data segment seg with c,
// as dm-crypt writes it: the sector numbers of the IVs count 512-byte
// units from the segment's start, plus its IV tweak.
func encryptInto(ctx context.Context, dev *os.File, src string, c *dmcrypt.Cipher, seg dmcrypt.Segment) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	buf := make([]byte, 1<<20)
	for off := int64(0); ; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.ReadFull(in, buf)
		if n%c.SectorSize() != 0 {
			return fmt.Errorf("%s: %d bytes is not whole %d-byte sectors", src, off+int64(n), c.SectorSize())
		}
		if n > 0 {
			if cerr := c.Encrypt(buf[:n], buf[:n], seg.IVTweak+uint64(off)/512); cerr != nil {
				return cerr
			}
			if _, werr := dev.WriteAt(buf[:n], int64(seg.Offset)+off); werr != nil {
				return werr
			}
			off += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", src, err)
		}
	}
}

// truncated makes the file path, size bytes of zeros.
func truncated(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
