package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/install"
	"github.com/lifeboat-update/lifeboat/pkg/release"
)

var provisionCommand = cli.Command{
	Name:     "provision",
	Usage:    "--state=DIR ROOT.json",
	Synopsis: "store the repository's first root as this device's root of trust (factory step)",
	Run: func(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
		stateDir := fs.String("state", "", "trusted state directory (on the data partition)")
		if err := cli.Parse(fs, args); err != nil {
			return err
		}
		if *stateDir == "" || fs.NArg() != 1 {
			return cli.Usagef("want --state and ROOT.json")
		}
		b, err := os.ReadFile(fs.Arg(0))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(*stateDir, 0o700); err != nil {
			return err
		}
		return release.Provision(durable.OS(*stateDir), b)
	},
}

var installCommand = cli.Command{
	Name:     "install",
	Usage:    "--repo=DIR|URL --state=DIR --board=NAME --slot CLASS=PATH... [--store=DIR|URL]... [--seed=PATH]...",
	Synopsis: "verify the newest release for this board and write it into its slots",
	Run:      runInstall,
}

func runInstall(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
	repo := fs.String("repo", "", "repository: a directory (USB bundle) or an http(s) URL")
	stateDir := fs.String("state", "", "trusted state directory, provisioned first")
	board := fs.String("board", "", "this device's board")
	var slots cli.Strings
	fs.Var(&slots, "slot", "CLASS=PATH: the file or block device to write a slot class into; repeatable")
	src := sourceFlags(fs, "chunk store (default: the repository's store); repeatable")
	out := cli.OutputFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *repo == "" || *stateDir == "" || *board == "" || len(slots) == 0 || fs.NArg() != 0 {
		return cli.Usagef("want --repo, --state, --board and at least one --slot")
	}
	if err := src.validate(); err != nil {
		return err
	}
	reporter, err := out.Reporter(std.Stderr)
	if err != nil {
		return err
	}
	slotMap := map[string]string{}
	for _, s := range slots {
		class, path, ok := strings.Cut(s, "=")
		if !ok || class == "" || path == "" {
			return cli.Usagef("--slot %q: want CLASS=PATH", s)
		}
		slotMap[class] = path
	}
	var fetch release.Fetcher = release.DirFetcher{Dir: *repo}
	if strings.Contains(*repo, "://") {
		hf, err := release.NewHTTPFetcher(*repo, nil)
		if err != nil {
			return err
		}
		hf.Client.Timeout = src.timeout
		fetch = hf
	}
	if len(src.stores) == 0 {
		src.stores = append(src.stores, strings.TrimSuffix(*repo, "/")+"/"+release.StoreDir)
	}
	stores, seeds, closeSeeds, err := src.open()
	if err != nil {
		return err
	}
	defer closeSeeds()
	opt := install.Options{Progress: reporter, Stores: stores, Seeds: seeds}
	client := &release.Client{State: durable.OS(*stateDir), Fetch: fetch, Board: *board}
	res, err := install.Install(ctx, client, slotMap, opt)
	if errors.Is(err, release.ErrUpToDate) {
		res = &install.Result{Board: *board, UpToDate: true}
		return out.Result(std.Stdout, res, func(w io.Writer) { fmt.Fprintln(w, err) })
	}
	if err != nil {
		return err
	}
	return out.Result(std.Stdout, res, func(w io.Writer) {
		fmt.Fprintf(w, "installed %s %s\n", res.Board, res.Version)
		for _, im := range res.Images {
			fmt.Fprintf(w, "\n%s -> %s\n", im.Class, im.Slot)
			im.Stats.WriteSummary(w)
		}
	})
}
