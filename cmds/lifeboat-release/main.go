// Command lifeboat-release is Lifeboat's build-side tool: it turns images
// into what devices install.
//
// Synopsis:
//
//	lifeboat-release make [--store=DIR] [--chunk-size=[MIN:]AVG[:MAX]] [--digest=sha512-256|sha256]
//	                      [--progress=auto|bar|line|none] [--json] INDEX.caibx IMAGE
//	lifeboat-release chunk-server --store=DIR [--listen=ADDR]
//
// make chunks IMAGE with casync's content-defined chunker and writes its
// .caibx index and the chunks the store lacks; for the same input and
// parameters the index is byte-identical to `casync make`'s. Without
// --store, chunks go to default.castr beside the index, as with casync.
//
// chunk-server serves a store over HTTP in casync's layout, for tests,
// demos and a LAN: GET and HEAD /xxxx/<id>.cacnk.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/lifeboat-update/lifeboat/internal/cli"
)

var commands = []cli.Command{
	keysCommand,
	createCommand,
	verifyCommand,
	bundleCommand,
	timestampCommand,
	makeCommand,
	chunkServerCommand,
}

func run(ctx context.Context, io cli.IO, args []string) int {
	return cli.Run(ctx, "lifeboat-release", commands, io, args)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, cli.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}, os.Args[1:]))
}
