package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/chunk"
	"github.com/lifeboat-update/lifeboat/pkg/progress"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

var makeCommand = cli.Command{
	Name:     "make",
	Usage:    "[--store=DIR] [--chunk-size=[MIN:]AVG[:MAX]] [--digest=sha512-256|sha256] INDEX.caibx IMAGE",
	Synopsis: "chunk an image into a store and write its casync index",
	Run:      runMake,
}

// makeStats is what make reports.
type makeStats struct {
	Index    string         `json:"index"`
	Size     int64          `json:"size"`
	Chunks   int            `json:"chunks"`
	Store    store.AddStats `json:"store"`
	Duration time.Duration  `json:"duration_ns"`
}

func runMake(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
	storeDir := fs.String("store", "", "chunk store directory (default: default.castr beside the index)")
	sizes := fs.String("chunk-size", chunk.DefaultParams.String(), "chunk sizes, AVG or MIN:AVG:MAX, with optional K/M suffixes")
	digest := fs.String("digest", "sha512-256", "chunk ID digest: sha512-256 or sha256")
	out := cli.OutputFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return cli.Usagef("want INDEX.caibx and IMAGE, got %d arguments", fs.NArg())
	}
	indexPath, imagePath := fs.Arg(0), fs.Arg(1)
	params, err := chunk.ParseParams(*sizes)
	if err != nil {
		return cli.Usagef("--chunk-size: %v", err)
	}
	d, err := chunk.ParseDigest(*digest)
	if err != nil {
		return cli.Usagef("--digest: %v", err)
	}
	reporter, err := out.Reporter(std.Stderr)
	if err != nil {
		return err
	}
	if *storeDir == "" {
		*storeDir = filepath.Join(filepath.Dir(indexPath), "default.castr")
	}
	ws, err := store.NewLocal(*storeDir)
	if err != nil {
		return err
	}

	start := time.Now()
	img, err := os.Open(imagePath)
	if err != nil {
		return err
	}
	defer img.Close()
	size, err := img.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("%s: size: %w", imagePath, err)
	}
	before, err := img.Stat()
	if err != nil {
		return err
	}
	c, err := chunk.NewChunker(params)
	if err != nil {
		return err
	}
	x := chunk.NewIndex(params, d)
	reporter.Start("chunk", size)
	x.Chunks, err = chunk.Scan(ctx, img, size, c, d, chunk.ScanOptions{Progress: reporter.Add})
	reporter.Done()
	if err != nil {
		return fmt.Errorf("chunk %s: %w", imagePath, err)
	}
	added, err := store.AddChunks(ctx, ws, img, x.Chunks, reporter)
	if err != nil {
		return fmt.Errorf("store %s: %w", *storeDir, err)
	}
	// The chunks were hashed once, when cut; a write to the image since then
	// would have stored chunks under the wrong IDs.
	if after, err := img.Stat(); err != nil || !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		return fmt.Errorf("%s changed while it was being chunked; the store may hold chunks that match no index", imagePath)
	}
	if err := writeFileAtomic(indexPath, x); err != nil {
		return err
	}
	st := makeStats{Index: indexPath, Size: size, Chunks: len(x.Chunks), Store: added, Duration: time.Since(start)}
	return out.Result(std.Stdout, st, func(w io.Writer) {
		fmt.Fprintf(w, "%s: %s in %d chunks (%d distinct); %d new in %s, %s stored, in %s\n",
			indexPath, progress.Bytes(size), st.Chunks, added.Chunks, added.New, *storeDir,
			progress.Bytes(added.Stored), st.Duration.Round(time.Millisecond))
	})
}

// writeFileAtomic writes the index under a temporary name, syncs it and
// renames it into place, so a reader never sees half an index.
func writeFileAtomic(path string, x *chunk.Index) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write index: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := x.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write index: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write index: %w", err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("write index: %w", err)
	}
	return os.Rename(f.Name(), path)
}
