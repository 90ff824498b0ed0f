package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
	"github.com/lifeboat-update/lifeboat/pkg/publish"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/verity"
)

var createCommand = cli.Command{
	Name:     "create",
	Usage:    "--repo=DIR --keys=DIR --board=NAME --version=V --image CLASS=PATH... [--verity=CLASS]...",
	Synopsis: "add a signed release of a board's images to a repository",
	Run:      runCreate,
}

func runCreate(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
	repoDir := fs.String("repo", "", "repository directory (made by keys init)")
	keysDir := fs.String("keys", "", "directory of the private keys (targets, snapshot, timestamp)")
	board := fs.String("board", "", "board the release is for")
	version := fs.String("version", "", "release version, dotted numbers (2026.11.1); only moves forward")
	var images, verityClasses cli.Strings
	fs.Var(&images, "image", "CLASS=PATH: the image for a slot class; repeat for each class")
	fs.Var(&verityClasses, "verity", "slot class whose image gets a dm-verity hash tree after its data; repeatable")
	sizes := fs.String("chunk-size", chunk.DefaultParams.String(), "chunk sizes, AVG or MIN:AVG:MAX")
	out := cli.OutputFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *repoDir == "" || *keysDir == "" || *board == "" || *version == "" || len(images) == 0 || fs.NArg() != 0 {
		return cli.Usagef("want --repo, --keys, --board, --version and at least one --image")
	}
	params, err := chunk.ParseParams(*sizes)
	if err != nil {
		return cli.Usagef("--chunk-size: %v", err)
	}
	reporter, err := out.Reporter(std.Stderr)
	if err != nil {
		return err
	}
	ks, err := publish.LoadKeySet(*keysDir)
	if err != nil {
		return err
	}
	rel := release.Release{Board: *board, Version: *version, Created: time.Now().UTC().Truncate(time.Second)}
	if _, err := release.CompareVersions(*version, *version); err != nil {
		return cli.Usagef("--version: %v", err)
	}
	repo := &publish.Repo{Dir: *repoDir}
	var classes []string
	for _, spec := range images {
		class, path, ok := strings.Cut(spec, "=")
		if !ok || class == "" || path == "" {
			return cli.Usagef("--image %q: want CLASS=PATH", spec)
		}
		classes = append(classes, class)
		opt := publish.ImageOptions{Params: params, Digest: chunk.SHA512256, Progress: reporter}
		if slices.Contains(verityClasses, class) {
			p := verity.DefaultParams()
			opt.Verity = &p
		}
		im, err := repo.AddImage(ctx, class, path, opt)
		if err != nil {
			return fmt.Errorf("image %s: %w", class, err)
		}
		rel.Images = append(rel.Images, im)
	}
	for _, v := range verityClasses {
		if !slices.Contains(classes, v) {
			return cli.Usagef("--verity=%s names no --image class", v)
		}
	}
	if err := repo.AddRelease(rel, ks); err != nil {
		return err
	}
	return out.Result(std.Stdout, rel, func(w io.Writer) {
		fmt.Fprintf(w, "release %s/%s signed:\n", rel.Board, rel.Version)
		for _, im := range rel.Images {
			fmt.Fprintf(w, "  %-10s %s  sha256 %s", im.Class, progress.Bytes(im.Size), im.SHA256)
			if im.Verity != nil {
				fmt.Fprintf(w, "  verity root %s", im.Verity.RootHash)
			}
			fmt.Fprintln(w)
		}
	})
}

var timestampCommand = cli.Command{
	Name:     "timestamp",
	Usage:    "--repo=DIR --keys=DIR",
	Synopsis: "re-sign the short-lived metadata (snapshot, timestamp): run it from cron",
	Run: func(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
		repoDir := fs.String("repo", "", "repository directory")
		keysDir := fs.String("keys", "", "directory of the online keys (snapshot, timestamp)")
		if err := cli.Parse(fs, args); err != nil {
			return err
		}
		if *repoDir == "" || *keysDir == "" || fs.NArg() != 0 {
			return cli.Usagef("want --repo and --keys")
		}
		ks, err := publish.LoadKeySet(*keysDir)
		if err != nil {
			return err
		}
		return (&publish.Repo{Dir: *repoDir}).Refresh(ks)
	},
}
