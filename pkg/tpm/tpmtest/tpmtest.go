// Package tpmtest runs an swtpm TPM 2.0 simulator for tests, so that package
// tpm's real implementation can be tested on a host without a TPM.
//
//	sim := tpmtest.Start(t)   // skips t if swtpm is not installed
//	tp := sim.Open(t)         // a *tpm.TPM on the simulator
//	sim.Restart(t)            // a reboot: same state dir, PCRs reset
//
// swtpm listens on a Unix socket that the test creates and hands over as a
// file descriptor, so the socket accepts connections (they queue in the
// backlog) before swtpm is even running: there is nothing to wait for.
package tpmtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/tpm"
)

// Sim is a running swtpm process with its state directory.
type Sim struct {
	dir  string
	sock string
	cmd  *exec.Cmd
	log  *strings.Builder
	done chan error
}

// Start starts swtpm with a fresh state directory and stops it when the test
// ends. It skips t when swtpm is not installed, or fails t under CI=true.
func Start(t testing.TB) *Sim {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("swtpm not found (CI=true; scripts/deps.sh installs it): %v", err)
		}
		t.Skipf("swtpm not found, cannot test against a simulated TPM (apt-get install swtpm): %v", err)
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "swtpm.sock")
	if len(sock) >= 100 { // sun_path is 108 bytes
		d, err := os.MkdirTemp("", "swtpm")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		sock = filepath.Join(d, "swtpm.sock")
	}
	s := &Sim{dir: dir, sock: sock}
	s.start(t)
	t.Cleanup(func() { s.stop(t) })
	return s
}

// StateDir is swtpm's state directory.
func (s *Sim) StateDir() string { return s.dir }

func (s *Sim) start(t testing.TB) {
	t.Helper()
	_ = os.Remove(s.sock)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.sock, Net: "unix"})
	if err != nil {
		t.Fatalf("listen %s: %v", s.sock, err)
	}
	l.SetUnlinkOnClose(false)
	f, err := l.File()
	l.Close()
	if err != nil {
		t.Fatalf("listener file: %v", err)
	}
	defer f.Close()
	s.log = new(strings.Builder)
	s.cmd = exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+s.dir,
		"--server", "type=unixio,fd=3",
		"--flags", "not-need-init,startup-clear")
	s.cmd.ExtraFiles = []*os.File{f}
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	s.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan<- error) { done <- cmd.Wait() }(s.cmd, s.done)
}

// stop terminates swtpm and waits for it, killing it after ten seconds.
func (s *Sim) stop(t testing.TB) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	var err error
	select {
	case err = <-s.done:
	case <-timer.C:
		_ = s.cmd.Process.Kill()
		err = <-s.done
		t.Errorf("swtpm did not stop on SIGTERM within 10s; killed")
	}
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == syscall.SIGTERM) {
		t.Errorf("swtpm: %v\n%s", err, s.log)
	}
	s.cmd = nil
}

// Restart stops swtpm and starts it again on the same state directory, as
// a reboot does: NV contents persist, PCRs and transient objects do not.
// Connections opened before are dead.
func (s *Sim) Restart(t testing.TB) {
	t.Helper()
	s.stop(t)
	s.start(t)
}

// Open connects to the simulator; the connection is closed when the test
// ends.
func (s *Sim) Open(t testing.TB) *tpm.TPM {
	t.Helper()
	c, err := net.Dial("unix", s.sock)
	if err != nil {
		t.Fatalf("connect to swtpm: %v", err)
	}
	tp := tpm.New(c)
	t.Cleanup(func() { tp.Close() })
	return tp
}

// String describes the simulator for test logs.
func (s *Sim) String() string { return fmt.Sprintf("swtpm(%s)", s.dir) }
