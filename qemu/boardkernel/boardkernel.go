// Package boardkernel finds a board's pinned kernel (board.json's kernel)
// in the kernel cache of qemu/kernel: for the ramdisk builder, the demo OS
// and the QEMU device. It is a package of its own so that qemu/kernel, which
// the VM tier of every package uses, does not depend on pkg/board.
package boardkernel

import (
	"context"
	"fmt"
	"runtime"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

// Pin is the pin of a board's kernel (board.json's kernel).
func Pin(b *board.Board) kernel.Pin { return pin(b, runtime.GOARCH) }

// pin is Pin on a host of architecture hostArch. Debian and Go
// name amd64 and arm64 alike; a kernel of the host's architecture has
// none in its pin.
func pin(b *board.Board, hostArch string) kernel.Pin {
	p := kernel.Pin{Package: b.Kernel.Package, Version: b.Kernel.Version, SHA256: b.Kernel.SHA256}
	if b.Arch != hostArch {
		p.Arch = b.Arch
	}
	return p
}

// Get returns the board's pinned kernel from the cache in dir
// (DefaultDir when empty), downloading it the first time. Only the pinned
// build will do, never a fallback: the board's ramdisk carries that
// kernel's modules. logf, if not nil, gets progress lines.
func Get(ctx context.Context, dir string, b *board.Board, logf func(string, ...any)) (*kernel.Kernel, error) {
	if dir == "" {
		d, err := kernel.DefaultDir()
		if err != nil {
			return nil, err
		}
		dir = d
	}
	want := Pin(b)
	k, err := (&kernel.Cache{Dir: dir, Logf: logf}).Get(ctx, want, "") // no metapackage: no other build
	if err != nil {
		return nil, fmt.Errorf("kernel for board %s: %w", b.Name, err)
	}
	if k.Package != want.Package || k.Version != want.Version || k.SHA256 != want.SHA256 {
		return nil, fmt.Errorf("kernel for board %s: %w: the cache has %s %s (sha256 %s), not the pinned %s %s",
			b.Name, kernel.ErrUnavailable, k.Package, k.Version, k.SHA256, want.Package, want.Version)
	}
	return k, nil
}
