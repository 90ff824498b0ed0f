package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// SQLSTATEs the PostgreSQL dialect tells apart.
const (
	pgUniqueViolation      = "23505"
	pgSerializationFailure = "40001"
	pgDeadlockDetected     = "40P01"
)

func sqlState(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// postgresDialect is PostgreSQL's: identity columns, and serializable
// transactions, run again when they clash with another.
var postgresDialect = dialect{
	identity:        "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
	isolation:       sql.LevelSerializable,
	uniqueViolation: func(err error) bool { return sqlState(err) == pgUniqueViolation },
	retry: func(err error) bool {
		s := sqlState(err)
		return s == pgSerializationFailure || s == pgDeadlockDetected
	},
}

func isPostgresURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// OpenPostgres opens the PostgreSQL database at url (postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=…,
// as libpq takes it) through pgx, and brings its schema up to date. The
// database must exist; its tables are created by the migrations.
func OpenPostgres(ctx context.Context, url string) (*DB, error) {
	return openPostgres(ctx, url, migrations)
}

func openPostgres(ctx context.Context, dsn string, fsys fs.FS) (*DB, error) {
	name := redact(dsn)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	db := pool(stdlib.OpenDB(*cfg))
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	if _, err := migrate(ctx, db, postgresDialect, fsys); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	return newDB(db, postgresDialect), nil
}

// redact is dsn without its password, for messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "PostgreSQL database (unparsable URL)"
	}
	return u.Redacted()
}
