package kernel

import (
	"context"
	"fmt"
	"runtime"

	"github.com/lifeboat-update/lifeboat/pkg/board"
)

// BoardPin is the pin of a board's kernel (board.json's kernel).
func BoardPin(b *board.Board) Pin { return boardPin(b, runtime.GOARCH) }

// boardPin is BoardPin on a host of architecture hostArch. Debian and Go
// name amd64 and arm64 alike; a kernel of the host's architecture has
// none in its pin.
func boardPin(b *board.Board, hostArch string) Pin {
	pin := Pin{Package: b.Kernel.Package, Version: b.Kernel.Version, SHA256: b.Kernel.SHA256}
	if b.Arch != hostArch {
		pin.Arch = b.Arch
	}
	return pin
}

// ForBoard returns the board's pinned kernel from the cache in dir
// (DefaultDir when empty), downloading it the first time. Only the pinned
// build will do, never a fallback: the board's ramdisk carries that
// kernel's modules. logf, if not nil, gets progress lines.
func ForBoard(ctx context.Context, dir string, b *board.Board, logf func(string, ...any)) (*Kernel, error) {
	if dir == "" {
		d, err := DefaultDir()
		if err != nil {
			return nil, err
		}
		dir = d
	}
	pin := BoardPin(b)
	k, err := (&Cache{Dir: dir, Logf: logf}).Get(ctx, pin, "") // no metapackage: no other build
	if err != nil {
		return nil, fmt.Errorf("kernel for board %s: %w", b.Name, err)
	}
	if k.Package != pin.Package || k.Version != pin.Version || k.SHA256 != pin.SHA256 {
		return nil, fmt.Errorf("kernel for board %s: %w: the cache has %s %s (sha256 %s), not the pinned %s %s",
			b.Name, ErrUnavailable, k.Package, k.Version, k.SHA256, pin.Package, pin.Version)
	}
	return k, nil
}
