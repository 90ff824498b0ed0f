// Command lifeboat-release is Lifeboat's release-side tool: it turns images
// into signed releases that devices verify and install.
//
// Synopsis:
//
//	lifeboat-release keys init --keys=DIR --repo=DIR [--ROLE-keys=N] [--ROLE-threshold=M]
//	lifeboat-release keys rotate --keys=DIR --repo=DIR --role=ROLE [--count=N] [--threshold=M]
//	lifeboat-release create --repo=DIR --keys=DIR --board=NAME --version=V --image CLASS=PATH...
//	                        [--verity=CLASS]... [--chunk-size=...] [--json]
//	lifeboat-release verify --repo=DIR [--board=NAME] [--release=V] [--json]
//	lifeboat-release bundle --repo=DIR --release=V [--board=NAME] [--baseline=V0] OUT
//	lifeboat-release timestamp --repo=DIR --keys=DIR
//	lifeboat-release verity [--salt=HEX|-] [--hash=sha256] [--data-block-size=4096]
//	                        [--hash-block-size=4096] [--format=1|0] [--no-superblock]
//	                        [--hash-offset=N] [--data-blocks=N] [--uuid=UUID] [--json] DATA HASHFILE
//	lifeboat-release make [--store=DIR] [--chunk-size=[MIN:]AVG[:MAX]] [--digest=sha512-256|sha256]
//	                      [--progress=auto|bar|line|none] [--json] INDEX.caibx IMAGE
//	lifeboat-release chunk-server --store=DIR [--listen=ADDR]
//
// keys init writes a key per role (root and targets to keep offline,
// snapshot and timestamp online) and a repository signed by them; keys
// rotate replaces a role's keys in a new root version and revokes the old.
// create chunks each image into the repository's store, builds a dm-verity
// tree for --verity classes, and signs a new release. verify checks what a
// new device would check and rebuilds every image: the gate before
// publishing. bundle writes a USB stick, whole or as a delta against a
// baseline release. timestamp re-signs the short-lived metadata (cron).
// verity builds a hash tree as veritysetup format does.
//
// make chunks IMAGE with casync's content-defined chunker and writes its
// .caibx index and the chunks the store lacks; for the same input and
// parameters the index is byte-identical to `casync make`'s. Without
// --store, chunks go to default.castr beside the index, as with casync.
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
	verityCommand,
}

func run(ctx context.Context, io cli.IO, args []string) int {
	return cli.Run(ctx, "lifeboat-release", commands, io, args)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, cli.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}, os.Args[1:]))
}
