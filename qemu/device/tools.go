package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// ErrNoTool is wrapped by the error about a host tool that is not
// installed (mkfs.fat, mtools, mkfs.ext4, grub-mkimage).
var ErrNoTool = errors.New("host tool not installed (make deps installs it)")

// Tools are the host programs Build and Stick run.
func Tools() []string {
	return []string{"mkfs.fat", "mmd", "mcopy", "mkfs.ext4", "grub-mkimage"}
}

// UBootTools are the host programs Build runs for a U-Boot board, besides
// Tools (but for grub-mkimage).
func UBootTools() []string { return []string{"mkimage"} }

// debianPackage names the Debian package a host tool comes from.
func debianPackage(tool string) string {
	switch tool {
	case "mkfs.fat":
		return "dosfstools"
	case "mmd", "mcopy":
		return "mtools"
	case "mkfs.ext4":
		return "e2fsprogs"
	case "mkimage":
		return "u-boot-tools"
	case "grub-mkimage":
		return "grub-common and grub-efi-amd64-bin"
	case "cryptsetup":
		return "cryptsetup-bin"
	case "swtpm", "swtpm_setup":
		return "swtpm and swtpm-tools"
	}
	return "?"
}

// run runs a host tool and returns its stdout; its error names the command
// and carries what the tool printed on stderr.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	bin, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("%s (Debian package %s): %w: %w", name, debianPackage(name), ErrNoTool, err)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	// mtools refuses some of the images mkfs.fat makes without this.
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// copyInto writes the file src into dst at off, as dd conv=notrunc
// seek=off would, skipping blocks of zeros: dst is a fresh image (a sparse
// file of zeros), so the copy stays sparse. src must fit in max bytes.
func copyInto(ctx context.Context, dst *os.File, off, max int64, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() > max {
		return fmt.Errorf("%s: %d bytes do not fit in %d: %w", src, fi.Size(), max, ErrTooBig)
	}
	buf := make([]byte, 1<<20)
	for pos := int64(0); ; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.ReadFull(f, buf)
		if n > 0 && !allZero(buf[:n]) {
			if _, werr := dst.WriteAt(buf[:n], off+pos); werr != nil {
				return werr
			}
		}
		pos += int64(n)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", src, err)
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
