package kmod

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Load loads the module file at path into the running kernel with
// finit_module(2). Compressed modules are handed to the kernel to
// decompress (MODULE_INIT_COMPRESSED_FILE). A module already loaded is not
// an error.
func Load(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if Compressed(path) {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("finit_module %s flags %#x: %w", path, flags, err)
	}
	return nil
}
