// Command lifeboat is Lifeboat's device-side tool: it runs in the recovery
// ramdisk and in the installed system.
//
// Synopsis:
//
//	lifeboat provision --state=DIR ROOT.json
//	lifeboat install --repo=DIR|URL --state=DIR --board=NAME --slot CLASS=PATH...
//	                 [--store=DIR|URL]... [--seed=PATH]... [--timeout=30s] [--progress=...] [--json]
//	lifeboat extract [--store=DIR|URL]... [--seed=PATH]... [--seed-index=INDEX.caibx]...
//	                 [--workers=N] [--timeout=30s] [--retries=4] [--progress=auto|bar|line|none]
//	                 [--json] INDEX.caibx TARGET
//	lifeboat status    BOOTLOADER [--json]
//	lifeboat mark-good BOOTLOADER [--force] [--identity=FILE --version=V] [--json] [SLOT]
//	lifeboat rollback  BOOTLOADER [--json]
//	lifeboat env print BOOTLOADER [--slot=S] [--json] [NAME...]
//	lifeboat env set   BOOTLOADER [--slot=S] NAME=VALUE...
//	lifeboat wipe [--secure] [--verify] [--progress=...] [--json] PARTLABEL|DEVICE
//
//	BOOTLOADER: --bootloader=uboot [--env-config=/etc/fw_env.config]
//	          | --bootloader=grub --grubenv=PATH
//	          | --bootloader=ebg --ebg-config=SLOT=PATH...
//	          [--cmdline=/proc/cmdline] [--slots=A,B,recovery] [--good-tries=3]
//
// provision stores a repository's first root as the device's root of trust.
// install refreshes the trusted metadata by TUF's workflow, plans the newest
// release for the board (refusing rollback, freeze, fast-forward,
// mix-and-match, endless data, extraneous images and other boards), writes
// each image into its slot, verifies every slot against the signed SHA-256,
// and only then records the release as installed.
//
// extract writes the image an index describes into TARGET, a file or block
// device. Each chunk comes from the cheapest verified source: TARGET itself
// when it already holds the chunk (an existing file or device), zeros
// without I/O, the seeds (--seed chunks a file or device on the fly;
// --seed-index reads a seed's index, its image being the index path without
// .caibx), and last the stores, tried in the order given. Every chunk is
// verified against its ID before it is written. A new TARGET file appears
// only once it is whole.
//
// status shows each slot's state (good, trying, failed, inactive) and tries
// left, the booted slot (from lifeboat.slot= or rauc.slot= on the kernel
// command line) and the slot the bootloader picks next. mark-good records
// that the booted slot works (run it on every boot once the system is
// healthy: a slot that boots its tries away without it falls back); it
// refuses any other slot unless --force. rollback gives up the slot on
// trial, or else the booted slot, so that the good slot boots next, and
// refuses when no good slot would remain. env print and env set read and
// write the bootloader environment itself (EBG: one slot's config); set
// makes every change in one power-cut safe write, and NAME= deletes NAME.
// The slot policy is pkg/slot's; U-Boot and GRUB keep their try counters
// in BOOT_ORDER and BOOT_<SLOT>_LEFT (RAUC's scheme).
//
// wipe discards and zeroes one partition, found by PARTLABEL or device
// path, so that it reads as zeros (--verify reads it back); it refuses a
// whole disk, a partition in use (mounted, or under device-mapper) and the
// booted slot's partition.
//
// HTTP requests that fail (5xx, 408, 429, network errors, bodies cut short)
// are repeated up to --retries times with jittered exponential backoff;
// each attempt may take --timeout. Flags follow casync's names; --json
// prints the statistics as JSON.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/lifeboat-update/lifeboat/internal/cli"
)

var commands = []cli.Command{
	installCommand,
	provisionCommand,
	extractCommand,
	statusCommand(openBootloader),
	markGoodCommand(openBootloader),
	rollbackCommand(openBootloader),
	envCommand(openBootloader),
	wipeCommand(liveHost),
}

func run(ctx context.Context, io cli.IO, args []string) int {
	return cli.Run(ctx, "lifeboat", commands, io, args)
}

// memoryLimit is the soft heap limit on a device, where the updater shares
// a small RAM with the system it updates. GOMEMLIMIT overrides it.
const memoryLimit = 16 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, cli.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}, os.Args[1:]))
}
