package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/qemu"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

// ErrExited is wrapped by WaitFor's error when the machine stopped before
// a console line matched.
var ErrExited = errors.New("machine exited")

// RunSpec says how to run a device. It boots through firmware (OVMF, then
// the bootloader on Disk) unless Kernel is set.
type RunSpec struct {
	Board *board.Board
	// Disk is the device's disk image (Build), attached as the first
	// virtio disk (/dev/vda). Firmware boots need one.
	Disk string

	// OVMF is the firmware of an x86_64 firmware boot; zero means
	// qemu.FindOVMF(qemu.OVMFDir).
	OVMF qemu.OVMF
	// QEMU is the qemu-system-aarch64 of an arm64 board (U-Boot's
	// saveenv needs QEMU >= 10); zero means qemu.FindAarch64 in
	// kernel.DefaultDir().
	QEMU qemu.Aarch64
	// Flash is a U-Boot board's flash image, U-Boot's environment (the
	// virt board's second pflash bank); "" means Disk with FlashSuffix, as
	// Build makes it. U-Boot writes it in place, as a board's flash.
	Flash string
	// Vars is the machine's NVRAM for a firmware boot: a file made from
	// OVMF's template if it does not exist, and kept, so that runs of one
	// machine share it as power cycles of a real one do. "" gives each
	// run a fresh one.
	Vars string

	// Kernel, Initrd and Append boot a kernel directly, skipping firmware
	// and bootloader: the fast way to run a ramdisk.
	Kernel string
	Initrd string
	Append string

	// USB is a USB stick image (Stick), attached as removable USB mass
	// storage; "" for none.
	USB string
	// Net is a user-mode network, or nil for none.
	Net *qemu.NetUser
	// TPMState is the state directory of an swtpm TPM 2.0, or "" for none.
	TPMState string

	// Resets makes a guest reset (reboot, watchdog) restart the machine in
	// the same run, firmware first; by default QEMU exits on a reset as it
	// does on power-off.
	Resets bool

	// Console receives the serial console as it comes; Log is a file it is
	// also written to (replaced). Either may be empty.
	Console io.Writer
	Log     string
	// Stdin, if set, is the console's input, for a person at a terminal:
	// the serial console and QEMU's monitor are multiplexed on it and on
	// Console (-serial mon:stdio; Ctrl-A c switches, Ctrl-A x quits).
	Stdin io.Reader
}

func (s *RunSpec) direct() bool { return s.Kernel != "" }

// Validate checks s without starting anything.
func (s *RunSpec) Validate() error {
	if s.Board == nil {
		return invalid("no board")
	}
	arm64 := s.Board.Arch == "arm64"
	switch {
	case s.Board.Arch != "amd64" && !arm64:
		return invalid("board %s: arch %s: only x86_64 and arm64 machines run here", s.Board.Name, s.Board.Arch)
	case arm64 && s.TPMState != "":
		return invalid("board %s: no TPM on arm64 machines here (QEMU's virt board has no tpm-tis)", s.Board.Name)
	}
	if !s.direct() {
		if s.Initrd != "" || s.Append != "" {
			return invalid("an initrd or a kernel command line needs a kernel: a firmware boot takes them from the disk")
		}
		if s.Disk == "" {
			return invalid("a firmware boot needs a disk")
		}
		switch fw := s.Board.QEMU.Firmware; {
		case fw == "ovmf" && !arm64, fw == "u-boot" && arm64:
		default:
			return invalid("board %s: arch %s, firmware %q: only OVMF (x86_64) and U-Boot (arm64) boot here", s.Board.Name, s.Board.Arch, fw)
		}
		if arm64 {
			if err := isFile(s.flash()); err != nil {
				return invalid("U-Boot's flash: %v", err)
			}
		}
	}
	for what, f := range map[string]string{"disk": s.Disk, "kernel": s.Kernel, "initrd": s.Initrd, "USB stick": s.USB} {
		if f == "" {
			continue
		}
		if err := isFile(f); err != nil {
			return invalid("%s: %v", what, err)
		}
	}
	return nil
}

// Machine is a running device.
type Machine struct {
	stop func() error  // kills QEMU at once
	wait func() error  // waits for QEMU to exit
	tmp  string        // removed when QEMU has exited
	cut  atomic.Bool   // PowerCut killed it
	log  *os.File      // or nil
	con  qemu.Lines    // splits the console into lines for line
	done chan struct{} // closed when QEMU has exited and err is set
	err  error

	mu      sync.Mutex // guards the fields below
	lines   []string
	next    int           // WaitFor's cursor in lines
	changed chan struct{} // closed and replaced on every line and at exit
}

// Run starts the machine s describes. Cancelling ctx stops it; call Wait
// (or PowerCut) in any case.
func Run(ctx context.Context, s RunSpec) (*Machine, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	m := newMachine()
	var err error
	if m.tmp, err = os.MkdirTemp("", "lifeboat-machine-"); err != nil {
		return nil, err
	}
	if err := m.start(ctx, &s); err != nil {
		if m.log != nil {
			m.log.Close()
		}
		os.RemoveAll(m.tmp)
		return nil, fmt.Errorf("run %s: %w", s.Board.Name, err)
	}
	go m.waitExit()
	return m, nil
}

func newMachine() *Machine {
	m := &Machine{done: make(chan struct{}), changed: make(chan struct{})}
	m.con.Line = m.line
	return m
}

// Boot runs the machine s describes until it stops by itself (or ctx
// ends), and returns it, for its console, with Wait's error.
func Boot(ctx context.Context, s RunSpec) (*Machine, error) {
	m, err := Run(ctx, s)
	if err != nil {
		return nil, err
	}
	return m, m.Wait()
}

func (m *Machine) start(ctx context.Context, s *RunSpec) error {
	var ovmf qemu.OVMF
	var vars string
	if s.Board.Arch == "arm64" && s.QEMU == (qemu.Aarch64{}) {
		dir, err := kernel.DefaultDir()
		if err != nil {
			return err
		}
		if s.QEMU, err = qemu.FindAarch64(ctx, dir); err != nil {
			return err
		}
	}
	if !s.direct() && s.Board.Arch == "amd64" {
		ovmf = s.OVMF
		if ovmf == (qemu.OVMF{}) {
			var err error
			if ovmf, err = qemu.FindOVMF(qemu.OVMFDir); err != nil {
				return err
			}
		}
		vars = s.Vars
		if vars == "" {
			vars = filepath.Join(m.tmp, "OVMF_VARS.fd")
		}
		if _, err := os.Stat(vars); errors.Is(err, os.ErrNotExist) {
			if err := ovmf.NewVars(vars); err != nil {
				return err
			}
		}
	}
	var outs []io.Writer
	if s.Console != nil {
		outs = append(outs, s.Console)
	}
	if s.Log != "" {
		if err := os.MkdirAll(filepath.Dir(s.Log), 0o755); err != nil {
			return err
		}
		f, err := os.Create(s.Log)
		if err != nil {
			return err
		}
		m.log = f
		outs = append(outs, f)
	}
	console := io.MultiWriter(append(outs, &m.con)...)
	cfg := s.config(ovmf, vars)
	cfg.Console, cfg.Stdin = console, s.Stdin
	vm, err := qemu.Start(ctx, cfg)
	if err != nil {
		return err
	}
	m.stop, m.wait = vm.Kill, vm.Wait
	return nil
}

// waitExit waits for QEMU and records how it ended.
func (m *Machine) waitExit() {
	err := m.wait()
	m.con.Flush()
	if m.log != nil {
		if cerr := m.log.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("console log: %w", cerr)
		}
	}
	os.RemoveAll(m.tmp)
	if m.cut.Load() {
		err = nil
	}
	m.err = err
	close(m.done)
	m.mu.Lock()
	close(m.changed)
	m.mu.Unlock()
}

// escapes are terminal escapes and carriage returns, which Lines and
// WaitFor leave out.
var escapes = regexp.MustCompile(`\x1b\[[0-9;=?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\r`)

// line records one console line.
func (m *Machine) line(l string) {
	l = escapes.ReplaceAllString(l, "")
	if strings.TrimSpace(l) == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lines = append(m.lines, l)
	close(m.changed)
	m.changed = make(chan struct{})
}

// Lines returns the console's lines so far, without terminal escapes,
// carriage returns or blank lines.
func (m *Machine) Lines() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.lines...)
}

// WaitFor waits for a console line that matches re and returns it. It
// looks at the lines after the one the previous WaitFor returned (from the
// first line, the first time), so that waiting twice for the same pattern
// finds two lines. It fails with an error wrapping ErrExited if the
// machine stops first, and with ctx's error if ctx ends first.
func (m *Machine) WaitFor(ctx context.Context, re *regexp.Regexp) (string, error) {
	for {
		m.mu.Lock()
		for m.next < len(m.lines) {
			l := m.lines[m.next]
			m.next++
			if re.MatchString(l) {
				m.mu.Unlock()
				return l, nil
			}
		}
		changed := m.changed
		m.mu.Unlock()
		select {
		case <-m.done:
			// Lines that came before the exit are in by now.
			m.mu.Lock()
			more := m.next < len(m.lines)
			m.mu.Unlock()
			if !more {
				return "", fmt.Errorf("wait for %q: %w (%v)", re, ErrExited, m.err)
			}
		case <-changed:
		case <-ctx.Done():
			return "", fmt.Errorf("wait for %q: %w", re, ctx.Err())
		}
	}
}

// PowerCut stops the machine at once, as pulling its power would: QEMU is
// killed (SIGKILL) wherever the guest is. What the guest had written to
// its disk stays there; what it had not yet written is lost. Wait then
// returns nil.
func (m *Machine) PowerCut() error {
	select {
	case <-m.done:
		return nil
	default:
	}
	m.cut.Store(true)
	if err := m.stop(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		// qemu.VM.Kill returns Wait's error: killed, as intended.
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			return err
		}
	}
	<-m.done
	return nil
}

// Wait waits until the machine has stopped and returns QEMU's error, with
// what it printed: nil when the guest powered off (or, without Resets,
// reset), or when PowerCut stopped it.
func (m *Machine) Wait() error {
	<-m.done
	return m.err
}

// Done is closed when the machine has stopped.
func (m *Machine) Done() <-chan struct{} { return m.done }
