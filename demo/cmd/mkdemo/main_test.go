package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifeboat-update/lifeboat/demo"
	"github.com/lifeboat-update/lifeboat/demo/demoinit"
	"github.com/lifeboat-update/lifeboat/internal/testtool"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/qemu/boardkernel"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

const boardDir = "../../../boards/qemu-x86_64"

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"-board", boardDir, "-version", "1"},
		{"-board", boardDir, "-o", "x.img"},
		{"-version", "1", "-o", "x.img"},
		{"-board", boardDir, "-version", "1", "-o", "x.img", "extra"},
		{"-size", "12Q"},
		{"-nope"},
	} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, &stdout, &stderr); !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
}

// TestMkdemo builds an image with its verity tree, as a script would.
func TestMkdemo(t *testing.T) {
	if testing.Short() {
		t.Skip("-short skips building a demo image with the board's kernel")
	}
	testtool.Require(t, "mkfs.ext4", "debugfs")
	b, err := board.Load(boardDir)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := kernel.DefaultDir()
	if err != nil {
		t.Skipf("kernel cache: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if _, err := boardkernel.Get(ctx, dir, b, t.Logf); err != nil {
		if os.Getenv("CI") != "" || errors.Is(err, kernel.ErrChecksum) {
			t.Fatal(err)
		}
		t.Skipf("%v; make deps installs what fetching it needs", err)
	}

	out := filepath.Join(t.TempDir(), "demo.img")
	var stdout, stderr bytes.Buffer
	args := []string{"-board", boardDir, "-version", "2.1", "-o", out, "-size", "40M", "-payload", "2M", "-verity", "-json"}
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("run(%q) = %v\n%s", args, err, stderr.Bytes())
	}
	var res struct {
		demo.Stats
		Verity string `json:"verity"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("-json output %q: %v", stdout.Bytes(), err)
	}
	if res.Version != "2.1" || res.Size != 40<<20 || res.Payload < 2<<20 || res.Payload > 4<<20 {
		t.Errorf("stats %+v", res.Stats)
	}
	p, err := demoinit.ParseCmdline("lifeboat.verity=" + res.Verity)
	if err != nil || p.DataSize != 40<<20 {
		t.Errorf("lifeboat.verity=%s: %+v, %v", res.Verity, p, err)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() != res.Size+res.VeritySize {
		t.Errorf("image with tree: %v; want %d bytes", err, res.Size+res.VeritySize)
	}
}
