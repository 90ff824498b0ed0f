// Command mkdemo builds a demo OS release image for a board: an ext4 file
// system with the board's kernel, the demo initramfs (demoinit as /init),
// the version and a payload, ready for `lifeboat-release create
// --image rootfs=IMAGE --verity=rootfs` (see demo/README.md).
//
// Synopsis:
//
//	mkdemo -board DIR -version V -o IMAGE [-size N] [-payload N] [-changed N]
//	       [-seed N] [-init DEMOINIT] [-verity] [-json]
//
// -board is the board's directory (boards/qemu-x86_64). The board's
// pinned kernel comes from the kernel cache ($LIFEBOAT_CACHE, else
// ~/.cache/lifeboat), fetched the first time. Without -init, demoinit is
// built with the go command, which must then run inside the Lifeboat
// module. -size (bytes, or with K, M or G) fixes the file system's size;
// by default it fits the content. -payload and -changed size the payload
// every version shares and the part that changes with the version; -seed
// chooses its bytes. The same flags give the same image, byte for byte.
//
// -verity appends the dm-verity tree to the image (a random salt) and
// prints the kernel command line argument that opens it,
// lifeboat.verity=HASHOFFSET:ROOTHASH: for writing a slot directly. An
// image for lifeboat-release must not have it (the release appends its
// own). -json prints the build's statistics as JSON.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/lifeboat-update/lifeboat/demo"
	"github.com/lifeboat-update/lifeboat/demo/demoinit"
	"github.com/lifeboat-update/lifeboat/pkg/board"
	"github.com/lifeboat-update/lifeboat/pkg/verity"
	"github.com/lifeboat-update/lifeboat/qemu/boardkernel"
	"github.com/lifeboat-update/lifeboat/qemu/kernel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "mkdemo: %v\n", err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "mkdemo: %v\n", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// sizeFlag is a byte count with an optional K, M or G.
type sizeFlag int64

func (s *sizeFlag) String() string { return fmt.Sprint(int64(*s)) }
func (s *sizeFlag) Set(v string) error {
	n, err := board.ParseSize(v)
	*s = sizeFlag(n)
	return err
}

// result is what -json prints.
type result struct {
	*demo.Stats
	Verity string `json:"verity,omitempty"` // lifeboat.verity= value, with -verity
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkdemo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	boardDir := fs.String("board", "", "the board's directory, e.g. boards/qemu-x86_64 (required)")
	version := fs.String("version", "", "the release version, dotted numbers (required)")
	out := fs.String("o", "", "the image file to write (required)")
	var size, payload, changed sizeFlag
	payload, changed = demo.DefaultPayloadSize, demo.DefaultChangedSize
	fs.Var(&size, "size", "the file system's size (default: fit the content)")
	fs.Var(&payload, "payload", "payload every version shares")
	fs.Var(&changed, "changed", "payload that changes with the version")
	seed := fs.Uint64("seed", demo.DefaultSeed, "the payload's seed")
	init := fs.String("init", "", "a demoinit binary built for the board (default: go build it)")
	withVerity := fs.Bool("verity", false, "append the dm-verity tree and print lifeboat.verity=")
	asJSON := fs.Bool("json", false, "print the statistics as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *boardDir == "" || *version == "" || *out == "" || fs.NArg() != 0 {
		fs.Usage()
		return fmt.Errorf("%w: want -board, -version and -o, and no arguments", errUsage)
	}
	b, err := board.Load(*boardDir)
	if err != nil {
		return err
	}
	cache, err := kernel.DefaultDir()
	if err != nil {
		return err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	k, err := boardkernel.Get(ctx, cache, b, logf)
	if err != nil {
		return err
	}
	st, err := demo.BuildImage(ctx, demo.Options{
		Board: b, Version: *version, Kernel: k, Out: *out,
		Size: int64(size), PayloadSize: int64(payload), ChangedSize: int64(changed), Seed: *seed,
		Init: *init, Logf: logf,
	})
	if err != nil {
		return err
	}
	res := result{Stats: st}
	if *withVerity {
		p := verity.DefaultParams()
		if p.Salt, err = verity.NewSalt(); err != nil {
			return err
		}
		t, err := demo.AppendVerity(ctx, *out, p)
		if err != nil {
			return err
		}
		res.Verity = demoinit.VerityParam(t.HashOffset, t.RootHash)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "%s: demo OS %s for %s, %d bytes (kernel %d, initramfs %d, payload %d), in %v\n",
		st.Image, st.Version, b.Name, st.Size, st.Kernel, st.Initramfs, st.Payload, st.Duration.Round(1e6))
	if res.Verity != "" {
		fmt.Fprintf(stdout, "lifeboat.verity=%s\n", res.Verity)
	}
	return nil
}
