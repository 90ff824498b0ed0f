package vminit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
)

// Linux is the System of a real guest; its methods are in linux_linux.go.
type Linux struct{}

var _ System = Linux{}

// Exists implements System.
func (Linux) Exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Exec implements System. A command killed by a signal has status 128+signal,
// as in a shell.
func (Linux) Exec(ctx context.Context, argv, env []string, dir string, out io.Writer) (int, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("run %s: %w", argv[0], err)
	}
	return 0, nil
}
