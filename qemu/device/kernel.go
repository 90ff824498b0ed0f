package device

import (
	"context"
	"fmt"
	"runtime"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

// BoardKernel returns the board's pinned kernel (board.json's kernel)
// from the kernel cache (qemu/kernel.DefaultDir), downloading it the first
// time. Only the pinned build will do: the board's ramdisk carries that
// kernel's modules. A board of another architecture than the host's
// (arm64 on amd64) gets that architecture's package. logf, if not nil,
// gets progress lines.
func BoardKernel(ctx context.Context, b *board.Board, logf func(string, ...any)) (*kernel.Kernel, error) {
	dir, err := kernel.DefaultDir()
	if err != nil {
		return nil, err
	}
	pin := kernel.Pin{Package: b.Kernel.Package, Version: b.Kernel.Version, SHA256: b.Kernel.SHA256}
	if b.Arch != runtime.GOARCH {
		// Debian and Go name amd64 and arm64 alike.
		pin.Arch = b.Arch
	}
	k, err := (&kernel.Cache{Dir: dir, Logf: logf}).Get(ctx, pin, "")
	if err != nil {
		return nil, fmt.Errorf("board %s kernel: %w", b.Name, err)
	}
	if k.Package != pin.Package || k.Version != pin.Version {
		return nil, fmt.Errorf("board %s kernel: %w: pinned %s %s, the cache has %s", b.Name, kernel.ErrUnavailable, pin.Package, pin.Version, k)
	}
	return k, nil
}
