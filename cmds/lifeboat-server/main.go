// Command lifeboat-server is Lifeboat's fleet server: devices register
// with the tokens the manufacturing line gave them, or enroll themselves
// with client certificates, poll for the release assigned to them and
// report their status and inventory; operators register, search, tag,
// group and revoke devices, publish releases, run rollouts and read the
// audit log. hawkBit DDI clients (swupdate's suricatta) are served too.
//
// Synopsis:
//
//	lifeboat-server [serve] [--listen=127.0.0.1:8080] [--db=lifeboat.db|postgres://…]
//	                [--admin-token-file=PATH] [--poll-interval=5m] [--poll-jitter=1m]
//	                [--root=ROOT.json [--data=lifeboat-data] [--repo-url=URL] [--max-upload=BYTES]]
//	                [--tls-cert=CERT.pem --tls-key=KEY.pem [--device-ca=CA.pem]]
//	                [--ddi-tenant=DEFAULT] [--ddi-gateway-token-file=PATH]
//	lifeboat-server token create [--db=lifeboat.db] --role=viewer|operator|admin --name=NAME [--expires=DURATION]
//	lifeboat-server token revoke [--db=lifeboat.db] --name=NAME
//
// --db is the path of a SQLite database file, or the URL of a PostgreSQL
// database (postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=…); see
// docs/server.md.
//
// serve (the default when the first argument is a flag) opens the
// database, creating a SQLite file if missing, brings its schema up to
// date, and serves the API until SIGTERM or SIGINT, then lets requests in
// flight finish. With --admin-token-file, a database that holds no admin
// token (none that is neither revoked nor expired) gets one, written to
// that file (mode 0600) for the first operator to sign in with; a
// database that has one is left alone. With --root, the server keeps
// releases in --data: repositories are verified against that root when
// published, served at /repo/NAME/, and devices are told to read them
// there, or under --repo-url (a CDN or static server holding a copy of
// /repo/). --max-upload bounds a repository uploaded as a tar stream (16
// GiB), and a file attached to a release for hawkBit DDI clients (kept in
// --data/artifacts).
//
// With --tls-cert and --tls-key (PEM), the server speaks HTTPS only: TLS
// 1.2 or later, ECDHE key exchange with AEAD ciphers. With --device-ca (a
// PEM bundle) as well, it asks clients for a certificate and verifies one
// given against those CAs alone, for client authentication: a device
// enrolls with it (POST /api/v1/device/enroll) and acts as the device its
// subject Common Name names; clients without one (operators, devices
// with tokens) connect as before. Without --tls-cert it speaks plain
// HTTP: put a TLS-terminating proxy in front, or keep it on a trusted
// network.
//
// --ddi-tenant names the hawkBit tenant the DDI endpoints answer under
// (DEFAULT). --ddi-gateway-token-file holds a gateway token (64 hex
// digits; a new one is written there, mode 0600, if the file is
// missing), which DDI clients may present as Authorization: GatewayToken
// for any registered controller; the server keeps only its SHA-256.
//
// token create issues an operator token and prints it: the database keeps
// only its SHA-256, so this is the only time it is shown. With --expires
// it is refused once that long has passed. token revoke revokes one.
// Both work while the server runs. Every token issued or revoked is in
// the audit log.
//
// The API is described in docs/server.md.
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
