package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
)

var verifyCommand = cli.Command{
	Name:     "verify",
	Usage:    "--repo=DIR [--board=NAME] [--release=V]",
	Synopsis: "check every signature, and rebuild and check every image: the gate before publishing",
	Run: func(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
		repoDir := fs.String("repo", "", "repository directory")
		board := fs.String("board", "", "only releases for this board")
		version := fs.String("release", "", "only this release version")
		out := cli.OutputFlags(fs)
		if err := cli.Parse(fs, args); err != nil {
			return err
		}
		if *repoDir == "" || fs.NArg() != 0 {
			return cli.Usagef("want --repo")
		}
		reporter, err := out.Reporter(std.Stderr)
		if err != nil {
			return err
		}
		checked, err := publish.Verify(ctx, *repoDir, *board, *version, reporter)
		if err != nil {
			return err
		}
		return out.Result(std.Stdout, checked, func(w io.Writer) {
			for _, im := range checked {
				v := ""
				if im.Verity {
					v = ", verity tree"
				}
				fmt.Fprintf(w, "ok  %s/%s %s: %s%s\n", im.Board, im.Version, im.Class, progress.Bytes(im.Size), v)
			}
		})
	},
}

var bundleCommand = cli.Command{
	Name:     "bundle",
	Usage:    "--repo=DIR --release=V [--board=NAME] [--baseline=V0] OUT",
	Synopsis: "write a USB bundle of a release, whole or as a delta against a baseline",
	Run: func(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
		repoDir := fs.String("repo", "", "repository directory")
		version := fs.String("release", "", "release version to bundle")
		board := fs.String("board", "", "board, when several boards share the version")
		baseline := fs.String("baseline", "", "leave out chunks this release of the board has (a delta stick)")
		out := cli.OutputFlags(fs)
		if err := cli.Parse(fs, args); err != nil {
			return err
		}
		if *repoDir == "" || *version == "" || fs.NArg() != 1 {
			return cli.Usagef("want --repo, --release and OUT")
		}
		st, err := publish.Bundle(ctx, *repoDir, *board, *version, *baseline, fs.Arg(0))
		if err != nil {
			return err
		}
		return out.Result(std.Stdout, st, func(w io.Writer) {
			fmt.Fprintf(w, "bundle %s: %s/%s, %d chunks (%s)", fs.Arg(0), st.Board, st.Version, st.Chunks, progress.Bytes(st.Bytes))
			if st.Baseline != "" {
				fmt.Fprintf(w, ", %d left out as in %s", st.Skipped, st.Baseline)
			}
			fmt.Fprintln(w)
		})
	},
}
