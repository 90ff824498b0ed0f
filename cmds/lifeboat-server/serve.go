package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/server"
	"github.com/lifeboat-update/lifeboat/pkg/server/ddi"
	"github.com/lifeboat-update/lifeboat/pkg/server/repository"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
)

var serveCommand = cli.Command{
	Name:     "serve",
	Usage:    "[--listen=ADDR] [--db=FILE] [--admin-token-file=PATH] [--poll-interval=D] [--poll-jitter=D] [--root=ROOT.json [--data=DIR] [--repo-url=URL] [--max-upload=BYTES]]",
	Synopsis: "serve the fleet API",
	Run:      runServe,
}

// shutdownGrace is how long requests in flight may take to finish after
// SIGTERM.
const shutdownGrace = 10 * time.Second

func dbFlag(fs *flag.FlagSet) *string {
	return fs.String("db", "lifeboat.db", "SQLite database file (created if missing), or the postgres:// URL of a PostgreSQL database")
}

func runServe(ctx context.Context, std cli.IO, fs *flag.FlagSet, args []string) error {
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	db := dbFlag(fs)
	adminFile := fs.String("admin-token-file", "", "if the database has no admin token, create one and write it to this file (mode 0600)")
	interval := fs.Duration("poll-interval", server.DefaultPollInterval, "interval devices are told to poll at")
	jitter := fs.Duration("poll-jitter", server.DefaultPollJitter, "window over which devices' poll intervals are spread")
	rootFile := fs.String("root", "", "trusted root metadata (root.json) releases must verify against; without it the server keeps no releases")
	data := fs.String("data", "lifeboat-data", "directory of the release storage (chunk store, metadata, indexes), with --root")
	maxUpload := fs.Int64("max-upload", server.DefaultMaxUpload, "largest repository uploaded as a tar stream, in bytes")
	repoURL := fs.String("repo-url", "", "URL devices read repositories under (a CDN or static server holding a copy of /repo/); default this server's /repo/")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return cli.Usagef("serve takes no arguments")
	}
	if *maxUpload < 1 {
		return cli.Usagef("--max-upload=%d: want 1 or more", *maxUpload)
	}
	if *repoURL != "" {
		u, err := url.Parse(*repoURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return cli.Usagef("--repo-url=%s: want an http or https URL with no query", *repoURL)
		}
		if *rootFile == "" {
			return cli.Usagef("--repo-url needs --root: a server without releases assigns none")
		}
	}
	if *interval < time.Second || *jitter < 0 || *interval+*jitter > api.MaxPollInterval*time.Second {
		return cli.Usagef("--poll-interval=%s --poll-jitter=%s: want an interval of 1s or more, a jitter of 0 or more, and the two within %s",
			*interval, *jitter, api.MaxPollInterval*time.Second)
	}
	log := slog.New(slog.NewTextHandler(std.Stderr, nil))
	// The trusted root first: a server that cannot keep releases stops
	// before it touches the database.
	opts := []server.Option{server.WithLogger(log), server.WithPollInterval(*interval, *jitter), server.WithMaxUpload(*maxUpload)}
	if *rootFile != "" {
		root, err := os.ReadFile(*rootFile)
		if err != nil {
			return err
		}
		repos, err := repository.Open(*data, root, time.Now)
		if err != nil {
			return err
		}
		files, err := ddi.OpenFiles(filepath.Join(*data, "artifacts"))
		if err != nil {
			return err
		}
		opts = append(opts, server.WithRepositories(repos, *repoURL), server.WithArtifacts(files))
	}
	st, err := store.Open(ctx, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	if *adminFile != "" {
		if err := bootstrapAdmin(ctx, st, *adminFile, log); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           server.New(st, opts...),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	// The address line lets scripts that asked for port 0 find the port.
	fmt.Fprintf(std.Stdout, "serving the fleet API on http://%s/ (database %s)\n", ln.Addr(), *db)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		log.Info("shutting down", "grace", shutdownGrace)
		shutdown, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// bootstrapAdmin gives a database with no admin token one, written to path
// before it is stored: a token in the database that no file holds would
// lock the first operator out.
func bootstrapAdmin(ctx context.Context, st store.Operators, path string, log *slog.Logger) error {
	has, err := st.HasAdmin(ctx, time.Now())
	if err != nil || has {
		return err
	}
	tok, sha, err := server.NewToken(rand.Reader)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(durable.OS(filepath.Dir(path)), filepath.Base(path), []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("admin token file: %w", err)
	}
	name := "admin-" + sha[:8]
	now := time.Now().UTC()
	t := store.OperatorToken{TokenSHA256: sha, Name: name, Role: store.Admin, Created: now}
	ev := store.Event{At: now, Actor: "cli", Action: "token.create", Target: name, Detail: `{"role":"admin","bootstrap":true}`}
	if err := st.CreateOperatorToken(ctx, t, ev); err != nil {
		os.Remove(path)
		return err
	}
	log.Info("created the first admin token", "name", name, "file", path)
	return nil
}
