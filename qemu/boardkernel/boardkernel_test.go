package boardkernel

import (
	"path/filepath"
	"testing"

	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

func TestBoardPin(t *testing.T) {
	b, err := board.Load(filepath.Join("..", "..", "boards", "qemu-x86_64"))
	if err != nil {
		t.Fatal(err)
	}
	base := kernel.Pin{Package: b.Kernel.Package, Version: b.Kernel.Version, SHA256: b.Kernel.SHA256}
	if got := pin(b, "amd64"); got != base {
		t.Errorf("pin(amd64 board, amd64 host) = %+v, want %+v", got, base)
	}
	arm := *b
	arm.Arch = "arm64"
	want := base
	want.Arch = "arm64"
	if got := pin(&arm, "amd64"); got != want {
		t.Errorf("pin(arm64 board, amd64 host) = %+v, want %+v", got, want)
	}
	if got := pin(&arm, "arm64"); got != base {
		t.Errorf("pin(arm64 board, arm64 host) = %+v, want %+v", got, base)
	}
}
