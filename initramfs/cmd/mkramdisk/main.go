// Command mkramdisk builds a board's recovery ramdisk with u-root and checks
// it against the board's size budget (package initramfs). Run it in the
// checkout: it builds ./uinit and ./cmds/lifeboat.
//
// Synopsis:
//
//	mkramdisk [-board DIR] [-o PATH] [-root ROOT.json] [-v]
//
// Options:
//
//	-board DIR   the board definition's directory [boards/qemu-x86_64]
//	-o PATH      the .cpio.xz to write [out/BOARD/ramdisk.cpio.xz]
//	-root PATH   a root.json to bake in as /etc/lifeboat/root.json [none]
//	-v           show the go and u-root output as it comes
//
// It prints the compressed size, and what the busybox binary, the modules
// and the rest weigh. It fails, writing nothing, when the compressed
// ramdisk exceeds the board's ramdisk_budget. The board's kernel comes from
// the kernel cache ($LIFEBOAT_CACHE, else ~/.cache/lifeboat), downloaded
// the first time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/lifeboat-update/lifeboat/initramfs"
	"github.com/lifeboat-update/lifeboat/pkg/board"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "mkramdisk:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkramdisk", flag.ContinueOnError)
	fs.SetOutput(stderr)
	boardDir := fs.String("board", "boards/qemu-x86_64", "the board definition's `DIR`ectory")
	out := fs.String("o", "", "the .cpio.xz to write (default out/BOARD/ramdisk.cpio.xz)")
	root := fs.String("root", "", "a root.json to bake in as /etc/lifeboat/root.json")
	verbose := fs.Bool("v", false, "show the go and u-root output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	b, err := board.Load(*boardDir)
	if err != nil {
		return err
	}
	if *out == "" {
		*out = filepath.Join("out", b.Name, "ramdisk.cpio.xz")
	}
	opt := initramfs.Options{
		Board:  b,
		Output: *out,
		Root:   *root,
		Logf:   func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) },
	}
	if *verbose {
		opt.BuildOutput = stderr
	}
	res, err := initramfs.Build(ctx, opt)
	if res != nil {
		if werr := res.WriteReport(stdout); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}
