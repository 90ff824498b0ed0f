package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"

	"modernc.org/sqlite" // also registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteDialect is SQLite's: migrations as written, transactions that
// take the write lock when they begin, one at a time in DB's own queue
// (and waiting for other processes' writers, busy_timeout), so none needs
// running again.
var sqliteDialect = dialect{
	isolation: sql.LevelDefault,
	uniqueViolation: func(err error) bool {
		var e *sqlite.Error
		return errors.As(err, &e) && (e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
	},
	retry:     func(error) bool { return false },
	anonymous: true,
	oneWriter: true,
}

// OpenSQLite opens (creating it if need be) the SQLite database at path and
// brings its schema up to date. The database runs in WAL mode, so that
// readers do not wait for the writer; writers take the lock when they
// begin, and wait for each other up to 5 seconds.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	return openSQLite(ctx, path, migrations)
}

func openSQLite(ctx context.Context, path string, fsys fs.FS) (*DB, error) {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	// No index made for one statement: every join the store makes has
	// its index. Without statistics, SQLite (3.54) chose to make one on
	// the 1,000 rows of a last_seen write (writeSeen) and scan all the
	// devices against it, a million rows, three times a second under a
	// fleet's check-ins, holding the one writer's turn.
	q.Add("_pragma", "automatic_index(0)")
	q.Set("_txlock", "immediate")
	// A file: URI, so the path is escaped: '?', '#' and '%' are file
	// name characters.
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	pool(db)
	if _, err := migrate(ctx, db, sqliteDialect, fsys); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return newDB(db, sqliteDialect), nil
}
