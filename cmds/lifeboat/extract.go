package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/assemble"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

var extractCommand = cli.Command{
	Name:     "extract",
	Usage:    "[--store=DIR|URL]... [--seed=PATH]... [--seed-index=INDEX.caibx]... [--timeout=D] [--retries=N] INDEX.caibx TARGET",
	Synopsis: "write the image an index describes into a file or block device",
	Run:      runExtract,
}

func runExtract(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
	var stores, seeds, seedIndexes cli.Strings
	fs.Var(&stores, "store", "chunk store: a directory or an http(s) URL; repeat to fail over in order")
	fs.Var(&seeds, "seed", "file or block device that may share chunks with the image; repeatable")
	fs.Var(&seedIndexes, "seed-index", "index of a seed image that lies beside it without .caibx; repeatable")
	workers := fs.Int("workers", 8, "chunks fetched and written at once")
	timeout := fs.Duration("timeout", 30*time.Second, "time allowed for each HTTP request")
	retries := fs.Int("retries", 4, "times an HTTP request is repeated after a failure, with backoff")
	out := cli.OutputFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return cli.Usagef("want INDEX.caibx and TARGET, got %d arguments", fs.NArg())
	}
	if *timeout <= 0 || *retries < 0 || *workers <= 0 {
		return cli.Usagef("--timeout and --workers must be positive, --retries not negative")
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
	opt := assemble.Options{Workers: *workers, Progress: reporter}
	for _, s := range stores {
		st, err := store.Open(s, store.WithTimeout(*timeout), store.WithRetries(*retries))
		if err != nil {
			return err
		}
		opt.Stores = append(opt.Stores, st)
	}
	for _, p := range seeds {
		seed, c, err := assemble.OpenSeed(p, "")
		if err != nil {
			return err
		}
		defer c.Close()
		opt.Seeds = append(opt.Seeds, seed)
	}
	for _, x := range seedIndexes {
		img, err := assemble.SeedIndexPath(x)
		if err != nil {
			return err
		}
		seed, c, err := assemble.OpenSeed(img, x)
		if err != nil {
			return err
		}
		defer c.Close()
		opt.Seeds = append(opt.Seeds, seed)
	}

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
	return out.Result(std.Stdout, stats, func(w io.Writer) { printStats(w, stats) })
}

func printStats(w io.Writer, s *assemble.Stats) {
	fmt.Fprintf(w, "image:     %d chunks (%d distinct), %s\n", s.Chunks, s.Unique, progress.Bytes(s.Bytes))
	line := func(label string, src assemble.Source) {
		fmt.Fprintf(w, "%-10s %d chunks, %s", label+":", src.Chunks, progress.Bytes(src.Bytes))
		if src.Wire > 0 {
			fmt.Fprintf(w, " (%s transferred)", progress.Bytes(src.Wire))
		}
		fmt.Fprintln(w)
	}
	line("in place", s.InPlace)
	line("zeros", s.Zero)
	for _, src := range s.Seeds {
		line("seed "+src.Name, src)
	}
	for _, src := range s.Stores {
		line("store "+src.Name, src)
	}
	if s.SeedMismatches > 0 {
		fmt.Fprintf(w, "seed chunks that did not match their index: %d\n", s.SeedMismatches)
	}
	fmt.Fprintf(w, "fetched:   %s from stores, %d retries, in %s\n", progress.Bytes(s.Fetched()), s.Retries, s.Duration.Round(1e6))
}
