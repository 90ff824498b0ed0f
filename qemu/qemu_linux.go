package qemu

import "syscall"

// sysProcAttr kills the child when the process that started it dies, so that
// a test binary killed by go test's -timeout leaves no QEMU behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
