package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/store"
)

var chunkServerCommand = cli.Command{
	Name:     "chunk-server",
	Usage:    "--store=DIR [--listen=ADDR]",
	Synopsis: "serve a chunk store over HTTP (casync layout)",
	Run:      runChunkServer,
}

func runChunkServer(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
	dir := fs.String("store", "", "chunk store directory to serve")
	listen := fs.String("listen", "127.0.0.1:8420", "address to listen on")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() != 0 {
		return cli.Usagef("want --store=DIR and no arguments")
	}
	st, err := store.Open(*dir)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(std.Stderr, nil))
	srv := &http.Server{
		Handler:           store.NewHandler(st, store.WithLogger(log)),
		ReadHeaderTimeout: 10 * time.Second,
	}
	// The address line lets scripts that asked for port 0 find the port.
	fmt.Fprintf(std.Stdout, "serving %s on http://%s/\n", *dir, ln.Addr())
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
