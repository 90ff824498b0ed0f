//go:build !linux

package tpm

import "os"

// openDevice opens a TPM character device.
func openDevice(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR, 0)
}
