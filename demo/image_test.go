package demo_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/demo"
	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/verity"
	"github.com/lifeboat-update/lifeboat/qemu/boardkernel"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

// unavailable skips t because something it needs is missing, or fails it
// under CI, which must have it.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s; CI must have it (scripts/deps.sh, run by make test)", msg)
	}
	t.Skipf("%s; make deps installs it", msg)
}

// boardKernel returns the board's pinned kernel, fetching it into the
// kernel cache the first time.
func boardKernel(t *testing.T) *kernel.Kernel {
	t.Helper()
	if testing.Short() {
		t.Skip("-short skips tests that build demo images with the board's kernel")
	}
	dir, err := kernel.DefaultDir()
	if err != nil {
		unavailable(t, "kernel cache: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	k, err := boardkernel.Get(ctx, dir, loadBoard(t), t.Logf)
	switch {
	case errors.Is(err, kernel.ErrChecksum):
		t.Fatal(err)
	case err != nil:
		unavailable(t, "%v", err)
	}
	return k
}

// buildImage builds a demo image of version for the test board.
func buildImage(t *testing.T, k *kernel.Kernel, version, out string) *demo.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	st, err := demo.BuildImage(ctx, demo.Options{Board: loadBoard(t), Version: version, Kernel: k, Out: out, Logf: t.Logf})
	if err != nil {
		t.Fatalf("BuildImage(%s) = %v", version, err)
	}
	return st
}

// tool runs a tool that must succeed and returns its stdout.
func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String()
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// chunks cuts the image at path as lifeboat-release does, 64 KiB average.
func chunks(t *testing.T, path string) []chunk.Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	c, err := chunk.NewChunker(chunk.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	es, err := chunk.Scan(t.Context(), f, fi.Size(), c, chunk.SHA512256, chunk.ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// TestBuildImage builds versions 1 and 2 for qemu-x86_64 and version 1
// again: the file systems are clean, an update from 1 to 2 shares most
// chunks, and the same version builds to the same bytes.
func TestBuildImage(t *testing.T) {
	testtool.Require(t, "mkfs.ext4", "debugfs", "e2fsck")
	k := boardKernel(t)
	dir := t.TempDir()
	v1, v2, v1again := filepath.Join(dir, "v1.img"), filepath.Join(dir, "v2.img"), filepath.Join(dir, "v1-again.img")
	st1 := buildImage(t, k, "1", v1)
	st2 := buildImage(t, k, "2", v2)
	buildImage(t, k, "1", v1again)
	t.Logf("image: %d bytes (content %d: kernel %d, initramfs %d with demoinit %d and %d modules, payload %d); verity tree %d; slot %d; built in %v",
		st1.Size, st1.Content, st1.Kernel, st1.Initramfs, st1.Init, len(st1.Modules), st1.Payload, st1.VeritySize, st1.SlotSize, st1.Duration.Round(time.Millisecond))

	for _, img := range []string{v1, v2} {
		tool(t, "e2fsck", "-fn", img)
		fi, err := os.Stat(img)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != st1.Size || fi.Size()%demo.BlockSize != 0 {
			t.Errorf("%s is %d bytes, want %d", img, fi.Size(), st1.Size)
		}
	}
	if st1.Size != st2.Size {
		t.Errorf("versions 1 and 2 are %d and %d bytes; the same content sizes should give the same size", st1.Size, st2.Size)
	}
	if got := tool(t, "debugfs", "-R", "cat /etc/lifeboat-version", v2); got != "2\n" {
		t.Errorf("/etc/lifeboat-version of version 2 = %q", got)
	}
	ls := tool(t, "debugfs", "-R", "ls -p /boot", v1)
	for _, f := range []string{fmt.Sprintf("/vmlinuz/%d/", st1.Kernel), fmt.Sprintf("/initrd.img/%d/", st1.Initramfs)} {
		if !strings.Contains(ls, f) {
			t.Errorf("/boot of version 1 has no %s:\n%s", f, ls)
		}
	}
	if want := "/lib/modules/" + k.Release + "/kernel/drivers/md/dm-verity.ko"; len(st1.Modules) == 0 || st1.Modules[len(st1.Modules)-1] != want {
		t.Errorf("modules %q, want %s last", st1.Modules, want)
	}

	// Reproducible: mke2fs and debugfs with fixed identity and times, a
	// deterministic initramfs and demoinit built without VCS stamps.
	if a, b := fileSHA256(t, v1), fileSHA256(t, v1again); a != b {
		t.Errorf("version 1 built twice: sha256 %s and %s; want the same bytes", a, b)
	}

	// Chunks: most of version 2 is in version 1.
	c1, c2 := chunks(t, v1), chunks(t, v2)
	have := map[chunk.ID]bool{}
	for _, e := range c1 {
		have[e.ID] = true
	}
	var shared, sharedBytes, total int64
	for _, e := range c2 {
		total += int64(e.Size)
		if have[e.ID] {
			shared++
			sharedBytes += int64(e.Size)
		}
	}
	count := float64(shared) / float64(len(c2))
	bytesFrac := float64(sharedBytes) / float64(total)
	t.Logf("version 2 shares %d of its %d chunks with version 1 (%.1f%%), %d of %d bytes (%.1f%%)",
		shared, len(c2), 100*count, sharedBytes, total, 100*bytesFrac)
	if count < 0.5 || bytesFrac < 0.5 {
		t.Errorf("version 2 shares %.1f%% of its chunks (%.1f%% of bytes) with version 1, want most", 100*count, 100*bytesFrac)
	}
	if shared == int64(len(c2)) {
		t.Error("version 2 has no chunk version 1 lacks: an update would fetch nothing")
	}
}

// AppendVerity lays the tree out as lifeboat-release (pkg/publish) does
// for a --verity class: the same root hash and hash offset, so the
// lifeboat.verity= argument the recovery ramdisk passes opens a slot
// AppendVerity wrote.
func TestAppendVerityMatchesRelease(t *testing.T) {
	testtool.Require(t, "mkfs.ext4", "debugfs")
	k := boardKernel(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "v1.img")
	st := buildImage(t, k, "1", img)

	p := verity.DefaultParams()
	p.Salt = bytes.Repeat([]byte{0x42}, 32)
	repo := &publish.Repo{Dir: filepath.Join(dir, "repo")}
	// What keys init makes; AddImage writes into it.
	if err := os.MkdirAll(filepath.Join(repo.Dir, release.IndexDir), 0o755); err != nil {
		t.Fatal(err)
	}
	pp := p
	im, err := repo.AddImage(t.Context(), "rootfs", img, publish.ImageOptions{Params: chunk.DefaultParams, Digest: chunk.SHA512256, Verity: &pp})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := demo.AppendVerity(t.Context(), img, p)
	if err != nil {
		t.Fatal(err)
	}
	v := im.Verity
	if v == nil || v.RootHash != hex.EncodeToString(tree.RootHash) || v.HashOffset != tree.HashOffset || v.DataSize != st.Size || !v.Superblock {
		t.Errorf("release verity %+v; AppendVerity root %x at %d", v, tree.RootHash, tree.HashOffset)
	}
	if im.Size != st.Size+tree.HashSize || tree.HashSize != st.VeritySize {
		t.Errorf("release slot %d bytes, AppendVerity %d+%d, Stats.VeritySize %d", im.Size, st.Size, tree.HashSize, st.VeritySize)
	}
	if fi, err := os.Stat(img); err != nil || fi.Size() != im.Size {
		t.Errorf("image with tree: %v, %v; want %d bytes", fi.Size(), err, im.Size)
	}
	if err := verity.Verify(t.Context(), mustOpen(t, img), st.Size, mustOpen(t, img), st.Size, p, tree.RootHash); err != nil {
		t.Errorf("Verify(AppendVerity's tree) = %v", err)
	}
}

func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
