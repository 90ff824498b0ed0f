// Command lifeboat-server is Lifeboat's fleet server: devices register
// with the tokens the manufacturing line gave them, poll for the release
// assigned to them and report their status and inventory; operators
// register, search, tag, group and revoke devices, publish releases, run
// rollouts and read the audit log.
//
// Synopsis:
//
//	lifeboat-server [serve] [--listen=127.0.0.1:8080] [--db=lifeboat.db|postgres://…]
//	                [--admin-token-file=PATH] [--poll-interval=5m] [--poll-jitter=1m]
//	                [--root=ROOT.json [--data=lifeboat-data] [--repo-url=URL] [--max-upload=BYTES]]
//	lifeboat-server token create [--db=lifeboat.db] --role=viewer|operator|admin --name=NAME
//	lifeboat-server token revoke [--db=lifeboat.db] --name=NAME
//
// --db is the path of a SQLite database file, or the URL of a PostgreSQL
// database (postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=…); see
// docs/server.md.
//
// serve (the default when the first argument is a flag) opens the
// database, creating a SQLite file if missing, brings its schema up to
// date, and serves the API over HTTP until SIGTERM or SIGINT, then lets
// requests in flight finish. With --admin-token-file, a database that holds no admin token
// gets one, written to that file (mode 0600) for the first operator to
// sign in with; a database that has one is left alone. With --root, the
// server keeps releases in --data: repositories are verified against that
// root when published, served at /repo/NAME/, and devices are told to
// read them there, or under --repo-url (a CDN or static server holding a
// copy of /repo/). --max-upload bounds a repository uploaded as a tar
// stream (16 GiB), and a file attached to a release for hawkBit DDI
// clients (kept in --data/artifacts).
//
// token create issues an operator token and prints it: the database keeps
// only its SHA-256, so this is the only time it is shown. token revoke
// revokes one. Both work while the server runs. Every token issued or
// revoked is in the audit log.
//
// The API is described in docs/server.md. There is no TLS yet: put a
// TLS-terminating proxy in front, or keep it on a trusted network.
package main

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/lifeboat-update/lifeboat/internal/cli"
)

var commands = []cli.Command{
	serveCommand,
	tokenCommand,
}

func run(ctx context.Context, io cli.IO, args []string) int {
	// Flags first means serve: "lifeboat-server --db=fleet.db".
	if len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "--help" {
		args = append([]string{serveCommand.Name}, args...)
	}
	return cli.Run(ctx, "lifeboat-server", commands, io, args)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, cli.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}, os.Args[1:]))
}
