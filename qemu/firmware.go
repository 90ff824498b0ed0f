package qemu

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ErrNoOVMF means the OVMF firmware files are not installed.
var ErrNoOVMF = errors.New("OVMF firmware not found (Debian package ovmf)")

// OVMFDir is where Debian's ovmf package installs the firmware.
const OVMFDir = "/usr/share/OVMF"

// OVMF is x86_64 UEFI firmware: the read-only code image and the template
// of its variable store (the machine's NVRAM), which every machine gets its
// own copy of (NewVars).
type OVMF struct {
	Code string // OVMF_CODE_4M.fd
	Vars string // OVMF_VARS_4M.fd, never written
}

// FindOVMF returns the 4 MiB build of OVMF without Secure Boot in dir
// (normally OVMFDir), or ErrNoOVMF.
func FindOVMF(dir string) (OVMF, error) {
	o := OVMF{Code: filepath.Join(dir, "OVMF_CODE_4M.fd"), Vars: filepath.Join(dir, "OVMF_VARS_4M.fd")}
	for _, f := range []string{o.Code, o.Vars} {
		if _, err := os.Stat(f); err != nil {
			return OVMF{}, fmt.Errorf("%w: %w", ErrNoOVMF, err)
		}
	}
	return o, nil
}

// NewVars copies the variable-store template to path: the NVRAM of one
// machine. Keep the file across boots to model one machine's power cycles.
func (o OVMF) NewVars(path string) error {
	src, err := os.Open(o.Vars)
	if err != nil {
		return fmt.Errorf("OVMF vars: %w", err)
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("OVMF vars: %w", err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("OVMF vars %s: %w", path, err)
	}
	return dst.Close()
}

// FirmwareBoot is a machine that starts firmware, which boots a disk,
// rather than a kernel: put its Args in Config.Args and leave Config.Kernel
// empty.
type FirmwareBoot struct {
	OVMF OVMF
	// Vars is this machine's variable store, made by OVMF.NewVars.
	Vars string
	// Disk is a raw disk image (GPT with an EFI system partition), attached
	// as a virtio disk the firmware boots first (bootindex 0), before
	// whatever boot entries Vars holds.
	Disk string
	// Resets makes a guest reset (reboot, watchdog) restart the machine,
	// firmware first, in the same QEMU run. By default QEMU exits on a
	// reset (Config always passes -no-reboot), as it does on power-off.
	Resets bool
}

// Args returns the QEMU arguments for f.
func (f FirmwareBoot) Args() []string {
	esc := func(s string) string { return strings.ReplaceAll(s, ",", ",,") }
	a := []string{
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + esc(f.OVMF.Code),
		"-drive", "if=pflash,format=raw,unit=1,file=" + esc(f.Vars),
		"-drive", "file=" + esc(f.Disk) + ",format=raw,if=none,id=bootdisk",
		"-device", "virtio-blk-pci,drive=bootdisk,bootindex=0",
	}
	if f.Resets {
		// Later on the command line than -no-reboot, so it wins.
		a = append(a, "-action", "reboot=reset")
	}
	return a
}
