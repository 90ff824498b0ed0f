package device

import "syscall"

// sysProcAttr kills QEMU when the process that started it dies, so that
// neither a killed test nor a killed runboard leaves a machine behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
