package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lifeboat-update/lifeboat/internal/cli"
	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/durable"
	"github.com/lifeboat-update/lifeboat/pkg/server"
	"github.com/lifeboat-update/lifeboat/pkg/server/ddi"
	"github.com/lifeboat-update/lifeboat/pkg/server/mtls"
	"github.com/lifeboat-update/lifeboat/pkg/server/repository"
	"github.com/lifeboat-update/lifeboat/pkg/server/store"
)

var serveCommand = cli.Command{
	Name:     "serve",
	Usage:    "[--listen=ADDR] [--db=FILE] [--admin-token-file=PATH] [--poll-interval=D] [--poll-jitter=D] [--root=ROOT.json [--data=DIR] [--repo-url=URL] [--max-upload=BYTES]] [--tls-cert=PEM --tls-key=PEM [--device-ca=PEM]] [--ddi-tenant=NAME] [--ddi-gateway-token-file=PATH]",
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
	adminFile := fs.String("admin-token-file", "", "if the database has no admin token that is neither revoked nor expired, create one and write it to this file (mode 0600)")
	interval := fs.Duration("poll-interval", server.DefaultPollInterval, "interval devices are told to poll at")
	jitter := fs.Duration("poll-jitter", server.DefaultPollJitter, "window over which devices' poll intervals are spread")
	rootFile := fs.String("root", "", "trusted root metadata (root.json) releases must verify against; without it the server keeps no releases")
	data := fs.String("data", "lifeboat-data", "directory of the release storage (chunk store, metadata, indexes), with --root")
	maxUpload := fs.Int64("max-upload", server.DefaultMaxUpload, "largest repository uploaded as a tar stream, in bytes")
	repoURL := fs.String("repo-url", "", "URL devices read repositories under (a CDN or static server holding a copy of /repo/); default this server's /repo/")
	tlsCert := fs.String("tls-cert", "", "PEM certificate chain to serve HTTPS with, with --tls-key; without them the server speaks plain HTTP")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert")
	deviceCA := fs.String("device-ca", "", "PEM bundle of the CAs that issue device certificates: clients may then present one, verified against these CAs alone, to enroll and act as the device its Common Name names (needs --tls-cert)")
	ddiTenant := fs.String("ddi-tenant", ddi.DefaultTenant, "the hawkBit tenant the DDI endpoints answer under (/TENANT/controller/v1/)")
	gatewayFile := fs.String("ddi-gateway-token-file", "", "file holding the hawkBit DDI gateway token, accepted as Authorization: GatewayToken for every controller (a new token is written there, mode 0600, if the file is missing)")
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
	if (*tlsCert == "") != (*tlsKey == "") {
		return cli.Usagef("--tls-cert=%q --tls-key=%q: give both, or neither for plain HTTP", *tlsCert, *tlsKey)
	}
	if *deviceCA != "" && *tlsCert == "" {
		return cli.Usagef("--device-ca needs --tls-cert and --tls-key: client certificates come with TLS")
	}
	if err := server.CheckDDITenant(*ddiTenant); err != nil {
		return cli.Usagef("--ddi-tenant: %v", err)
	}
	log := slog.New(slog.NewTextHandler(std.Stderr, nil))
	// TLS, the gateway token and the trusted root first: a server that
	// cannot serve stops before it touches the database.
	var tlsConf *tls.Config
	if *tlsCert != "" {
		c, err := mtls.Load(*tlsCert, *tlsKey, *deviceCA)
		if err != nil {
			return err
		}
		tlsConf = c
	}
	opts := []server.Option{server.WithLogger(log), server.WithPollInterval(*interval, *jitter), server.WithMaxUpload(*maxUpload), server.WithDDITenant(*ddiTenant)}
	if *gatewayFile != "" {
		sha, err := ddiGatewayToken(*gatewayFile, log)
		if err != nil {
			return err
		}
		opts = append(opts, server.WithDDIGatewayToken(sha))
	}
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
		TLSConfig:         tlsConf,
		// Refused handshakes (a certificate of another CA, expired) and
		// the like.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
	}
	// The address line lets scripts that asked for port 0 find the port.
	fmt.Fprintf(std.Stdout, "serving the fleet API on %s://%s/ (database %s)\n", scheme, ln.Addr(), *db)
	errc := make(chan error, 1)
	go func() {
		if tlsConf != nil {
			errc <- srv.ServeTLS(ln, "", "") // the certificate is in TLSConfig
			return
		}
		errc <- srv.Serve(ln)
	}()
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
	if err := writeToken(path, tok); err != nil {
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

// writeToken writes tok to path, mode 0600, durably.
func writeToken(path, tok string) error {
	return durable.WriteFile(durable.OS(filepath.Dir(path)), filepath.Base(path), []byte(tok+"\n"), 0o600)
}

// ddiGatewayToken returns the SHA-256 of the DDI gateway token in the
// file path, first writing a new token there when the file is missing.
// The server keeps only the hash.
func ddiGatewayToken(path string, log *slog.Logger) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		tok, sha, err := server.NewToken(rand.Reader)
		if err != nil {
			return "", err
		}
		if err := writeToken(path, tok); err != nil {
			return "", fmt.Errorf("DDI gateway token file: %w", err)
		}
		log.Info("created the DDI gateway token", "file", path)
		return sha, nil
	}
	if err != nil {
		return "", fmt.Errorf("DDI gateway token file: %w", err)
	}
	sha, err := server.HashToken(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("DDI gateway token file %s: %w", path, err)
	}
	return sha, nil
}
