package tpm

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openDevice opens a TPM character device in blocking mode. os.OpenFile
// would register the descriptor with Go's poller and make it non-blocking,
// and in that mode the kernel's TPM driver queues each command and answers
// a read that comes before the response with 0 bytes (EOF), not EAGAIN.
func openDevice(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open(%s, O_RDWR): %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}
