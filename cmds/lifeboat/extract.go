package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/assemble"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

var extractCommand = cli.Command{
	Name:     "extract",
	Usage:    "[--store=DIR|URL]... [--seed=PATH]... [--seed-index=INDEX.caibx]... [--timeout=D] [--retries=N] INDEX.caibx TARGET",
	Synopsis: "write the image an index describes into a file or block device",
	Run:      runExtract,
}

func runExtract(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
	src := sourceFlags(fs, "chunk store: a directory or an http(s) URL; repeat to fail over in order")
	workers := fs.Int("workers", 8, "chunks fetched and written at once")
	out := cli.OutputFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return cli.Usagef("want INDEX.caibx and TARGET, got %d arguments", fs.NArg())
	}
	if *workers <= 0 {
		return cli.Usagef("--workers must be positive")
	}
	if err := src.validate(); err != nil {
		return err
	}
	indexPath, targetPath := fs.Arg(0), fs.Arg(1)
	reporter, err := out.Reporter(std.Stderr)
	if err != nil {
		return err
	}

	idx, err := chunk.ReadIndexFile(indexPath)
	if err != nil {
		return err
	}
	stores, seeds, closeSeeds, err := src.open()
	if err != nil {
		return err
	}
	defer closeSeeds()
	opt := assemble.Options{Workers: *workers, Progress: reporter, Stores: stores, Seeds: seeds}

	target, err := assemble.OpenTarget(targetPath, int64(idx.Size()))
	if err != nil {
		return err
	}
	opt.InPlace, opt.Fresh = target.InPlace(), target.Fresh()
	stats, err := assemble.Assemble(ctx, idx, target, opt)
	if err != nil {
		target.Abort()
		return fmt.Errorf("extract %s: %w", targetPath, err)
	}
	if err := target.Commit(); err != nil {
		return err
	}
	return out.Result(std.Stdout, stats, func(w io.Writer) { stats.WriteSummary(w) })
}
