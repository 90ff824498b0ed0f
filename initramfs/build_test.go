package initramfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/qemu"
	"github.com/lifeboat-update/lifeboat/qemu/cpio"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

// TestBuildQEMUx86 builds the real ramdisk for qemu-x86_64 (downloading the
// board's kernel into the cache the first time), checks what is in it and
// its size, and boots it.
func TestBuildQEMUx86(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the ramdisk with u-root (about a minute); make test runs it")
	}
	testtool.Require(t, "go", "xz")
	b := loadBoard(t)
	out := filepath.Join(t.TempDir(), "ramdisk.cpio.xz")
	root := makeRoot(t)
	res, err := Build(t.Context(), Options{Board: b, Output: out, Root: root, Logf: t.Logf})
	if errors.Is(err, kernel.ErrUnavailable) {
		if os.Getenv("CI") != "" {
			t.Fatalf("Build() = %v (CI is set: the kernel must be fetched)", err)
		}
		t.Skipf("Build() = %v: no kernel, so no ramdisk", err)
	}
	if res != nil {
		var report bytes.Buffer
		res.WriteReport(&report)
		t.Logf("%s", report.String())
	}
	if err != nil {
		t.Fatalf("Build() = %v", err)
	}

	xzBytes, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(xzBytes)) != res.Compressed {
		t.Errorf("Result.Compressed = %d, want the output's size %d", res.Compressed, len(xzBytes))
	}
	if res.Compressed > b.RamdiskBudget {
		t.Errorf("ramdisk is %d bytes compressed, over the budget of %d", res.Compressed, b.RamdiskBudget)
	}
	if err := checkXZ(xzBytes); err != nil {
		t.Errorf("%s: %v", out, err)
	}
	archive, err := exec.Command("xz", "-dc", out).Output()
	if err != nil {
		t.Fatalf("xz -dc %s: %v", out, err)
	}
	if int64(len(archive)) != res.Size {
		t.Errorf("Result.Size = %d, want the archive's size %d", res.Size, len(archive))
	}
	if sum := res.Busybox.Size + res.Modules.Size + res.Other.Size; sum != res.Size {
		t.Errorf("parts add up to %d bytes, want the archive's %d", sum, res.Size)
	}
	entries, err := List(bytes.NewReader(archive))
	if err != nil {
		t.Fatalf("List(ramdisk) = %v", err)
	}
	for _, p := range []string{"/init", UinitPath, "/bbin/lifeboat", "/bbin/gosh", BusyboxPath, BoardPath, RootPath, ModulesOrderPath} {
		if _, ok := entries[strings.TrimPrefix(p, "/")]; !ok {
			t.Errorf("ramdisk has no %s", p)
		}
	}
	if e := entries["init"]; e.Target != "bbin/init" {
		t.Errorf("/init -> %q, want bbin/init", e.Target)
	}
	if e := entries["bbin/uinit"]; e.Target != "bb" {
		t.Errorf("/bbin/uinit -> %q, want bb", e.Target)
	}

	files := readFiles(t, archive, BoardPath, RootPath, ModulesOrderPath)
	rj, err := os.ReadFile(root)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(files[RootPath], rj) {
		t.Errorf("%s differs from the root.json given", RootPath)
	}
	bj, err := os.ReadFile(filepath.Join(testBoardDir, board.File))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(files[BoardPath], bj) {
		t.Errorf("%s differs from %s", BoardPath, filepath.Join(testBoardDir, board.File))
	}
	order, err := ReadModulesOrder(bytes.NewReader(files[ModulesOrderPath]))
	if err != nil {
		t.Fatal(err)
	}
	if len(order) < len(b.Modules) {
		t.Errorf("modules.order has %d files for %d modules", len(order), len(b.Modules))
	}
	if diff := cmp.Diff(res.ModuleFiles, order); diff != "" {
		t.Errorf("modules.order and Result.ModuleFiles differ (-result +file):\n%s", diff)
	}
	for _, p := range order {
		if e, ok := entries[strings.TrimPrefix(p, "/")]; !ok || !e.IsRegular() || e.Size == 0 {
			t.Errorf("modules.order names %s; the ramdisk has %+v", p, e)
		}
		if !strings.HasPrefix(p, "/lib/modules/"+res.Release+"/") {
			t.Errorf("modules.order names %s, want it under /lib/modules/%s", p, res.Release)
		}
	}

	t.Run("boot", func(t *testing.T) { bootRamdisk(t, b, res) })
}

// readFiles returns the contents of the named regular files of an archive.
func readFiles(t *testing.T, archive []byte, names ...string) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	err := Walk(bytes.NewReader(archive), func(h *cpio.Header, data io.Reader) error {
		for _, name := range names {
			if h.Name == strings.TrimPrefix(name, "/") && h.Mode&0o170000 == cpio.TypeReg {
				b, err := io.ReadAll(data)
				got[name] = b
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Walk(ramdisk) = %v", err)
	}
	return got
}

// bootRamdisk boots the board's kernel with the ramdisk in QEMU: u-root's
// init must run our uinit, which reads the board and loads every module of
// modules.order into the board's real kernel; lifeboat.mode=shell then
// stops it at the rescue shell, without disks.
func bootRamdisk(t *testing.T, b *board.Board, res *Result) {
	testtool.Require(t, "qemu-system-x86_64")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	var (
		mu                             sync.Mutex // the console's lines come from QEMU's output copier
		sawBoard, sawModules, sawShell bool
		failure                        string
		console                        []string
	)
	wantLoaded := fmt.Sprintf("lifeboat: loaded %d kernel modules", len(res.ModuleFiles))
	lines := &qemu.Lines{}
	lines.Line = func(s string) {
		mu.Lock()
		defer mu.Unlock()
		s = strings.TrimRight(s, "\r")
		console = append(console, s)
		switch {
		case strings.HasPrefix(s, "lifeboat: recovery ramdisk for board "+b.Name):
			sawBoard = true
		case s == wantLoaded:
			sawModules = true
		case strings.HasPrefix(s, "lifeboat: mode shell"):
			sawShell = true
			cancel() // done: the rescue shell is up
		case strings.HasPrefix(s, "LIFEBOAT-RESULT") || strings.Contains(s, "Kernel panic"):
			failure = s
			cancel()
		}
	}
	start := time.Now()
	vm, err := qemu.Start(ctx, qemu.Config{
		Machine: b.QEMU.Machine,
		CPU:     b.QEMU.CPU,
		Memory:  b.QEMU.Memory,
		Kernel:  res.KernelImage,
		Initrd:  res.Output,
		Append:  b.BaseCmdline() + " lifeboat.mode=shell",
		Console: lines,
	})
	if err != nil {
		t.Fatalf("qemu.Start() = %v", err)
	}
	werr := vm.Wait()
	lines.Flush()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("booted to the rescue shell in %v", time.Since(start).Round(time.Millisecond))
	if sawBoard && sawModules && sawShell && failure == "" {
		return
	}
	tail := console
	if len(tail) > 60 {
		tail = tail[len(tail)-60:]
	}
	t.Errorf("boot: board line %v, %q %v, shell %v, failure %q (qemu: %v); console:\n\t%s",
		sawBoard, wantLoaded, sawModules, sawShell, failure, werr, strings.Join(tail, "\n\t"))
}
