// Package storetest gives tests a fresh, empty store database on each
// backend the fleet server runs on: a SQLite file in the test's temporary
// directory, and a PostgreSQL database created for the test on the server
// LIFEBOAT_TEST_POSTGRES names, dropped after it.
//
// Without LIFEBOAT_TEST_POSTGRES the PostgreSQL half skips, saying why,
// and fails under CI (CI=true), where make test starts a server
// (scripts/postgres.sh) and sets it. With -short it skips.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
)

// EnvPostgres names the environment variable holding the URL of a
// PostgreSQL server, and a database on it, as a role that may create
// databases: postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=disable.
const EnvPostgres = "LIFEBOAT_TEST_POSTGRES"

// Run runs test as the subtests sqlite and postgres, each with the
// data source name of a fresh database (store.Open takes either). The two
// run in parallel: the PostgreSQL one spends most of its time waiting for
// the server.
func Run(t *testing.T, test func(t *testing.T, dsn string)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { t.Parallel(); test(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { t.Parallel(); test(t, Postgres(t)) })
}

// SQLite returns the path of a SQLite database in t's temporary
// directory, not yet created.
func SQLite(t testing.TB) string {
	return filepath.Join(t.TempDir(), "fleet.db")
}

// Postgres creates a database with a random name on the server
// LIFEBOAT_TEST_POSTGRES names, drops it (and ends the connections to it)
// when t ends, and returns its URL. The database orders text byte-wise
// (LOCALE 'C'), as SQLite does, and as docs/server.md advises.
func Postgres(t testing.TB) string {
	t.Helper()
	server := os.Getenv(EnvPostgres)
	switch {
	case testing.Short():
		t.Skip("PostgreSQL tests skipped in -short mode (make unit): they need a server")
	case server == "" && os.Getenv("CI") != "":
		t.Fatalf("%s is not set; under CI make test sets it (scripts/postgres.sh starts PostgreSQL)", EnvPostgres)
	case server == "":
		t.Skipf("%s is not set: no PostgreSQL server to test on (make test starts one with scripts/postgres.sh)", EnvPostgres)
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s: want a postgres:// URL", EnvPostgres)
	}
	admin, err := sql.Open("pgx", server)
	if err != nil {
		t.Fatalf("%s: %v", EnvPostgres, err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	name := "lifeboat_test_" + hex.EncodeToString(b)
	ctx := context.Background()
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE `+name+` TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'`); err != nil {
		admin.Close()
		t.Fatalf("create database %s on %s: %v", name, u.Redacted(), err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.ExecContext(ctx, `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	// A test needs no commit to outlive a crash of the server: it need
	// not wait for the disk at each one.
	if _, err := admin.ExecContext(ctx, `ALTER DATABASE `+name+` SET synchronous_commit = off`); err != nil {
		t.Fatalf("database %s: %v", name, err)
	}
	u.Path = "/" + name
	return u.String()
}
