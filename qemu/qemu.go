// Package qemu runs an x86_64 QEMU machine under TCG (never KVM: this
// project's machines have none) for the VM and end-to-end test tiers: a
// kernel and initramfs or firmware, virtio disks, USB sticks, an optional
// user-mode network, an optional swtpm TPM 2.0, and the serial console
// captured to an io.Writer. A VM is stopped when its
// context ends and never outlives the process that started it.
//
// The go-test glue lives in qemu/vmtest; the kernel in qemu/kernel.
package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

var (
	// ErrNoQEMU means qemu-system-x86_64 is not installed.
	ErrNoQEMU = errors.New("qemu-system-x86_64 not found (Debian package qemu-system-x86)")
	// ErrNoSWTPM means swtpm is not installed.
	ErrNoSWTPM = errors.New("swtpm not found (Debian package swtpm)")
)

// Disk is a host file attached as a virtio disk or a USB stick.
type Disk struct {
	Path     string
	Format   string // default "raw"
	ReadOnly bool
}

// NetUser is QEMU's user-mode network (slirp): the guest's one NIC sits on
// 10.0.2.0/24 behind a NAT, with a DHCP server that leases 10.0.2.15, the
// host (its loopback) at 10.0.2.2 as the router, and a DNS forwarder at
// 10.0.2.3. It needs no root on the host.
type NetUser struct {
	Model string // NIC model [virtio-net-pci]
	// Bootfile is the boot file name QEMU's DHCP server offers (the BOOTP
	// file field), "" for none; the ramdisk takes an http:// or https://
	// one as its repository URL.
	Bootfile string
}

// arg is the value of -nic for n.
func (n *NetUser) arg() string {
	model := n.Model
	if model == "" {
		model = "virtio-net-pci"
	}
	a := "user,model=" + model
	if n.Bootfile != "" {
		a += ",bootfile=" + escapeOpt(n.Bootfile)
	}
	return a
}

// escapeOpt doubles the commas in a value inside a QEMU option string.
func escapeOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Config describes a machine. Zero values take the defaults in brackets.
type Config struct {
	QEMU    string // binary [qemu-system-x86_64]
	Machine string // [q35]
	CPU     string // [max]
	CPUs    int    // [1: boots fastest under TCG]
	Memory  string // [512M]

	Kernel string // bzImage for direct kernel boot, or "" to boot firmware
	Initrd string
	Append string // kernel command line, see Cmdline

	Disks []Disk // /dev/vda, /dev/vdb, ... in the order given

	// USB are USB mass-storage sticks (removable) on an xHCI controller,
	// one port each. The guest names them /dev/sdX in the order they
	// enumerate, which is not always the order given.
	USB []Disk

	// Net is a user-mode network, or nil for none (-nic none).
	Net *NetUser

	// TPMState is a directory for the state of an swtpm TPM 2.0 attached
	// through tpm-tis, or "" for no TPM.
	TPMState string

	// Args are more QEMU arguments: firmware, watchdog, ...
	Args []string

	// Console receives the serial console (ttyS0).
	Console io.Writer
	// Stdin, if set, is the console's input, for a person at a terminal:
	// the serial console and QEMU's monitor are multiplexed on it and on
	// Console (-serial mon:stdio; Ctrl-A c switches, Ctrl-A x quits).
	Stdin io.Reader
}

func (c *Config) binary() string {
	if c.QEMU != "" {
		return c.QEMU
	}
	return "qemu-system-x86_64"
}

// CommandLine returns QEMU's arguments for c; tpmSock is the swtpm control
// socket, or "" for none.
func (c *Config) CommandLine(tpmSock string) []string {
	or := func(s, def string) string {
		if s == "" {
			return def
		}
		return s
	}
	cpus := c.CPUs
	if cpus <= 0 {
		cpus = 1
	}
	nic := "none"
	if c.Net != nil {
		nic = c.Net.arg()
	}
	a := []string{
		"-machine", or(c.Machine, "q35"),
		"-accel", "tcg",
		"-cpu", or(c.CPU, "max"),
		"-smp", fmt.Sprint(cpus),
		"-m", or(c.Memory, "512M"),
		"-nodefaults", "-no-user-config",
		"-display", "none",
	}
	if c.Stdin != nil {
		a = append(a, "-serial", "mon:stdio")
	} else {
		a = append(a, "-monitor", "none", "-serial", "stdio")
	}
	a = append(a, "-nic", nic, "-no-reboot")
	if c.Kernel != "" {
		a = append(a, "-kernel", c.Kernel)
		if c.Initrd != "" {
			a = append(a, "-initrd", c.Initrd)
		}
		if c.Append != "" {
			a = append(a, "-append", c.Append)
		}
	}
	drive := func(d Disk, id string) string {
		// QEMU's option syntax doubles commas inside values.
		opt := fmt.Sprintf("file=%s,format=%s,if=none,id=%s", escapeOpt(d.Path), or(d.Format, "raw"), id)
		if d.ReadOnly {
			opt += ",readonly=on"
		}
		return opt
	}
	for i, d := range c.Disks {
		a = append(a, "-drive", drive(d, fmt.Sprintf("disk%d", i)), "-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d", i))
	}
	if len(c.USB) > 0 {
		a = append(a, "-device", "qemu-xhci,id=xhci")
		for i, d := range c.USB {
			a = append(a, "-drive", drive(d, fmt.Sprintf("usb%d", i)),
				"-device", fmt.Sprintf("usb-storage,bus=xhci.0,drive=usb%d,removable=on", i))
		}
	}
	if tpmSock != "" {
		a = append(a,
			"-chardev", "socket,id=chrtpm,path="+escapeOpt(tpmSock),
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
			"-device", "tpm-tis,tpmdev=tpm0")
	}
	return append(a, c.Args...)
}

// Cmdline returns a kernel command line for a test guest on the serial
// console: quiet, no reboot on panic (QEMU runs with -no-reboot and exits),
// and the params, which override defaults with the same key.
func Cmdline(params ...string) string {
	defaults := []string{
		"console=ttyS0,115200",
		"panic=-1",        // reboot at once on panic: QEMU exits
		"oops=panic",      // an oops ends the run instead of hanging it
		"quiet",           // kernel messages at warning and above only
		"mitigations=off", // speculative-execution workarounds cost time under TCG
		"tsc=reliable",    // no clocksource watchdog noise under TCG
		"no_timer_check",
		"rdinit=/init",
	}
	key := func(p string) string { k, _, _ := strings.Cut(p, "="); return k }
	override := map[string]bool{}
	for _, p := range params {
		override[key(p)] = true
	}
	var out []string
	for _, d := range defaults {
		if !override[key(d)] {
			out = append(out, d)
		}
	}
	return strings.Join(append(out, params...), " ")
}

// VM is a running machine.
type VM struct {
	cmd      *exec.Cmd
	tpm      *exec.Cmd
	tpmDir   string
	stderr   bytes.Buffer // QEMU's
	tpmErr   bytes.Buffer // swtpm's
	waitOnce sync.Once
	waitErr  error
}

// Start boots a machine. Cancelling ctx stops it (SIGTERM, then SIGKILL);
// so does the death of this process. Call Wait.
func Start(ctx context.Context, c Config) (*VM, error) {
	bin, err := exec.LookPath(c.binary())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoQEMU, err)
	}
	vm := &VM{}
	var sock string
	if c.TPMState != "" {
		if sock, err = vm.startTPM(ctx, c.TPMState); err != nil {
			return nil, err
		}
	}
	vm.cmd = exec.CommandContext(ctx, bin, c.CommandLine(sock)...)
	vm.cmd.Stdin = c.Stdin
	vm.cmd.Stdout = c.Console
	if c.Console == nil {
		vm.cmd.Stdout = io.Discard
	}
	vm.cmd.Stderr = &vm.stderr
	stopOnCancel(vm.cmd)
	if err := vm.cmd.Start(); err != nil {
		vm.stopTPM()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	return vm, nil
}

func stopOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 3 * time.Second
}

// startTPM starts swtpm on a control socket that already listens, so that
// QEMU can connect at once; it returns the socket's path.
func (vm *VM) startTPM(ctx context.Context, state string) (string, error) {
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoSWTPM, err)
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return "", err
	}
	// A short directory: socket paths are limited to 108 bytes.
	vm.tpmDir, err = os.MkdirTemp("", "swtpm")
	if err != nil {
		return "", err
	}
	sock := filepath.Join(vm.tpmDir, "ctrl")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		os.RemoveAll(vm.tpmDir)
		return "", fmt.Errorf("listen %s: %w", sock, err)
	}
	l.SetUnlinkOnClose(false)
	lf, err := l.File()
	l.Close()
	if err != nil {
		os.RemoveAll(vm.tpmDir)
		return "", err
	}
	defer lf.Close()
	vm.tpm = exec.CommandContext(ctx, bin, "socket", "--tpm2",
		"--tpmstate", "dir="+state,
		"--ctrl", "type=unixio,fd=3",
		"--terminate", // exit when QEMU goes away
		"--log", "level=1")
	vm.tpm.ExtraFiles = []*os.File{lf}
	vm.tpm.Stdout = &vm.tpmErr
	vm.tpm.Stderr = &vm.tpmErr
	stopOnCancel(vm.tpm)
	if err := vm.tpm.Start(); err != nil {
		os.RemoveAll(vm.tpmDir)
		return "", fmt.Errorf("start swtpm: %w", err)
	}
	return sock, nil
}

func (vm *VM) stopTPM() {
	if vm.tpm == nil {
		return
	}
	vm.tpm.Process.Kill()
	vm.tpm.Wait()
	os.RemoveAll(vm.tpmDir)
}

// Wait waits until QEMU has exited and swtpm is gone, and returns QEMU's
// error, with what it printed on stderr. Calling it again returns the same.
func (vm *VM) Wait() error {
	vm.waitOnce.Do(func() {
		err := vm.cmd.Wait()
		if vm.tpm != nil {
			// --terminate ends swtpm when QEMU disconnects; make sure.
			done := make(chan struct{})
			go func() {
				select {
				case <-done:
				case <-time.After(2 * time.Second):
					vm.tpm.Process.Kill()
				}
			}()
			vm.tpm.Wait()
			close(done)
			os.RemoveAll(vm.tpmDir)
		}
		if err != nil {
			msg := strings.TrimSpace(vm.stderr.String() + "\n" + vm.tpmErr.String())
			err = fmt.Errorf("qemu: %w: %s", err, msg)
		}
		vm.waitErr = err
	})
	return vm.waitErr
}

// Kill stops the machine at once and waits for it.
func (vm *VM) Kill() error {
	vm.cmd.Process.Kill()
	return vm.Wait()
}
