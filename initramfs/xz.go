package initramfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/lifeboat-update/lifeboat/qemu/cpio"
)

// xzArgs are the arguments of xz for an input of size bytes. The kernel's
// initramfs decompressor takes xz with CRC32 checks (it has no CRC64) and
// allocates the dictionary the stream names: -9e with a dictionary no
// bigger than the input, which compresses the same as -9e's 64 MiB but
// needs less memory at boot. One thread, so one block: the same input
// always gives the same bytes.
func xzArgs(size int64) []string {
	dict := int64(1 << 20)
	for dict < size && dict < 64<<20 {
		dict <<= 1
	}
	return []string{"--format=xz", "--check=crc32", fmt.Sprintf("--lzma2=preset=9e,dict=%dMiB", dict>>20),
		"--threads=1", "--stdout"}
}

// compressFile compresses in into out with xz and returns out's size.
func compressFile(ctx context.Context, xz, in, out string) (int64, error) {
	src, err := os.Open(in)
	if err != nil {
		return 0, fmt.Errorf("xz: %w", err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return 0, fmt.Errorf("xz: %w", err)
	}
	dst, err := os.Create(out)
	if err != nil {
		return 0, fmt.Errorf("xz: %w", err)
	}
	var stderr bytes.Buffer
	args := xzArgs(fi.Size())
	cmd := exec.CommandContext(ctx, xz, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = src, dst, &stderr
	err = cmd.Run()
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		fi, err = os.Stat(out)
	}
	if err != nil {
		return 0, fmt.Errorf("xz %s < %s: %w: %s", strings.Join(args, " "), in, err, strings.TrimSpace(stderr.String()))
	}
	return fi.Size(), nil
}

// concat writes the files srcs, one after the other, to dst.
func concat(dst string, srcs []string) (err error) {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	for _, s := range srcs {
		r, err := os.Open(s)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		r.Close()
		if err != nil {
			return fmt.Errorf("copy %s: %w", s, err)
		}
	}
	return nil
}

// measure reads the archive and adds up the parts' sizes into res: the
// busybox binary, the modules, and the rest, whose data (regular files
// and symlink targets) it writes to otherData.
func measure(archive string, res *Result, otherData string) error {
	f, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("measure: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("measure: %w", err)
	}
	other, err := os.Create(otherData)
	if err != nil {
		return fmt.Errorf("measure: %w", err)
	}
	defer other.Close()

	res.Size = fi.Size()
	res.Busybox, res.Modules, res.Other = Part{}, Part{}, Part{}
	err = Walk(f, func(h *cpio.Header, data io.Reader) error {
		name := "/" + strings.TrimPrefix(h.Name, "/")
		isReg := h.Mode&0o170000 == cpio.TypeReg
		switch {
		case name == BusyboxPath && isReg:
			res.Busybox.Files++
			res.Busybox.Size += h.Size
		case strings.HasPrefix(name, "/lib/modules/") && isReg:
			res.Modules.Files++
			res.Modules.Size += h.Size
		default:
			res.Other.Files++
			_, err := io.Copy(other, data)
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("measure %s: %w", archive, err)
	}
	if res.Busybox.Files == 0 {
		return fmt.Errorf("measure %s: no %s: u-root built no busybox", archive, BusyboxPath)
	}
	res.Other.Size = res.Size - res.Busybox.Size - res.Modules.Size
	return errors.Join(other.Close())
}
