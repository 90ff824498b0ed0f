package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/release"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

var chunkServerCommand = cli.Command{
	Name:     "chunk-server",
	Usage:    "--store=DIR|--repo=DIR [--listen=ADDR]",
	Synopsis: "serve a chunk store, or a whole repository, over HTTP",
	Run:      runChunkServer,
}

func runChunkServer(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
	dir := fs.String("store", "", "chunk store directory to serve at /")
	repo := fs.String("repo", "", "repository directory to serve: metadata/, indexes/ and store/")
	listen := fs.String("listen", "127.0.0.1:8420", "address to listen on")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if (*dir == "") == (*repo == "") || fs.NArg() != 0 {
		return cli.Usagef("want one of --store=DIR and --repo=DIR, and no arguments")
	}
	log := slog.New(slog.NewTextHandler(std.Stderr, nil))
	handler, served, err := serveHandler(*dir, *repo, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	// The address line lets scripts that asked for port 0 find the port.
	fmt.Fprintf(std.Stdout, "serving %s on http://%s/\n", served, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// serveHandler returns the handler for a store, or for a repository: its
// store through the chunk handler (strict paths), its metadata and indexes
// as plain files.
func serveHandler(storeDir, repoDir string, log *slog.Logger) (http.Handler, string, error) {
	if storeDir != "" {
		st, err := store.Open(storeDir)
		if err != nil {
			return nil, "", err
		}
		return store.NewHandler(st, store.WithLogger(log)), storeDir, nil
	}
	st, err := store.Open(filepath.Join(repoDir, release.StoreDir))
	if err != nil {
		return nil, "", fmt.Errorf("repository %s: %w", repoDir, err)
	}
	mux := http.NewServeMux()
	prefix := "/" + release.StoreDir + "/"
	mux.Handle(prefix, http.StripPrefix(strings.TrimSuffix(prefix, "/"), store.NewHandler(st, store.WithLogger(log))))
	files := http.FileServer(http.Dir(repoDir))
	for _, d := range []string{release.MetadataDir, release.IndexDir} {
		mux.Handle("GET /"+d+"/", files)
	}
	return mux, repoDir, nil
}
