package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"modernc.org/sqlite" // also registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the Store in a SQLite database file.
//
// A PostgreSQL store would share every query and migration below; what
// differs is Open (pgx's stdlib driver and a connection URL instead of the
// file and its pragmas), audit_log.id (an identity column, see the first
// migration), and telling a unique violation (SQLSTATE 23505) in
// isUniqueViolation.
type SQLite struct {
	db *sql.DB
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating it if need be) the database at path and brings
// its schema up to date. The database runs in WAL mode, so that readers do
// not wait for the writer; writers take the lock when they begin, and wait
// for each other up to 5 seconds.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	return openSQLite(ctx, path, migrations)
}

func openSQLite(ctx context.Context, path string, fsys fs.FS) (*SQLite, error) {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	// A file: URI, so the path is escaped: '?', '#' and '%' are file
	// name characters.
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := migrate(ctx, db, fsys); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &SQLite{db: db}, nil
}

// Close closes the database.
func (s *SQLite) Close() error { return s.db.Close() }

// isUniqueViolation says whether err is a row clashing with another on a
// primary key or a unique column.
func isUniqueViolation(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && (e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

// nanos and fromNanos store times as Unix nanoseconds, NULL for zero.
func nanos(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// inTx runs f in a transaction and commits if it returns nil.
func (s *SQLite) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

func record(ctx context.Context, tx *sql.Tx, ev Event) error {
	if ev.At.IsZero() || ev.Actor == "" || ev.Action == "" {
		return fmt.Errorf("audit event %+v: want a time, an actor and an action", ev)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)`,
		ev.At.UnixNano(), ev.Actor, ev.Action, ev.Target, ev.Detail)
	if err != nil {
		return fmt.Errorf("audit %s: %w", ev.Action, err)
	}
	return nil
}

// RegisterDevice implements Devices.
func (s *SQLite) RegisterDevice(ctx context.Context, d Device, ev Event) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO devices (id, board, token_sha256, token_expires, created, installed_version)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			d.ID, d.Board, d.TokenSHA256, nanos(d.TokenExpires), d.Created.UnixNano(), d.InstalledVersion)
		if isUniqueViolation(err) {
			return fmt.Errorf("device %s: %w (its ID or its token is registered)", d.ID, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("device %s: %w", d.ID, err)
		}
		return record(ctx, tx, ev)
	})
}

const deviceColumns = `id, board, token_sha256, token_expires, revoked_at, created, last_seen, installed_version, status`

type scanner interface{ Scan(dest ...any) error }

func scanDevice(row scanner) (Device, error) {
	var (
		d                               Device
		expires, revoked, created, seen sql.NullInt64
		status                          sql.NullString
	)
	if err := row.Scan(&d.ID, &d.Board, &d.TokenSHA256, &expires, &revoked, &created, &seen, &d.InstalledVersion, &status); err != nil {
		return Device{}, err
	}
	d.TokenExpires, d.RevokedAt, d.Created, d.LastSeen = fromNanos(expires), fromNanos(revoked), fromNanos(created), fromNanos(seen)
	if status.Valid {
		d.Status = new(api.Status)
		if err := json.Unmarshal([]byte(status.String), d.Status); err != nil {
			return Device{}, fmt.Errorf("device %s: stored status: %w", d.ID, err)
		}
	}
	return d, nil
}

// Device implements Devices.
func (s *SQLite) Device(ctx context.Context, id string) (Device, error) {
	d, err := scanDevice(s.db.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, fmt.Errorf("device %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Device{}, fmt.Errorf("device %s: %w", id, err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT name, value FROM device_attributes WHERE device_id = $1`, id)
	if err != nil {
		return Device{}, fmt.Errorf("device %s attributes: %w", id, err)
	}
	defer rows.Close()
	d.Attributes = map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return Device{}, err
		}
		d.Attributes[k] = v
	}
	if err := rows.Err(); err != nil {
		return Device{}, err
	}
	d.Tags, err = strs(ctx, s.db, `SELECT tag FROM device_tags WHERE device_id = $1 ORDER BY tag`, id)
	return d, err
}

// DeviceByToken implements Devices.
func (s *SQLite) DeviceByToken(ctx context.Context, tokenSHA256 string) (Device, error) {
	d, err := scanDevice(s.db.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE token_sha256 = $1`, tokenSHA256))
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, fmt.Errorf("device token: %w", ErrNotFound)
	}
	return d, err
}

// revoke sets revoked_at on the row of table whose column is key, telling
// a missing row from one already revoked.
func revoke(ctx context.Context, tx *sql.Tx, table, column, key string, at time.Time) error {
	res, err := tx.ExecContext(ctx, `UPDATE `+table+` SET revoked_at = $1 WHERE `+column+` = $2 AND revoked_at IS NULL`, at.UnixNano(), key)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	var one int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM `+table+` WHERE `+column+` = $1`, key).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return ErrRevoked
}

// RevokeDevice implements Devices.
func (s *SQLite) RevokeDevice(ctx context.Context, id string, ev Event) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := revoke(ctx, tx, "devices", "id", id, ev.At); err != nil {
			return fmt.Errorf("revoke device %s: %w", id, err)
		}
		return record(ctx, tx, ev)
	})
}

// updateDevice runs an UPDATE of one device by id ($1) and says
// ErrNotFound when there is none.
func updateDevice(ctx context.Context, ex interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, id, query string, args ...any) error {
	res, err := ex.ExecContext(ctx, query, append([]any{id}, args...)...)
	if err != nil {
		return fmt.Errorf("device %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("device %s: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("device %s: %w", id, ErrNotFound)
	}
	return nil
}

// Seen implements Reports.
func (s *SQLite) Seen(ctx context.Context, id string, at time.Time) error {
	return updateDevice(ctx, s.db, id, `UPDATE devices SET last_seen = $2 WHERE id = $1`, at.UnixNano())
}

// ReportStatus implements Reports. The report goes to the device's
// timeline too, and moves the device in its rollout, in the same
// transaction.
func (s *SQLite) ReportStatus(ctx context.Context, id string, st api.Status, at time.Time) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := updateDevice(ctx, tx, id, `UPDATE devices SET last_seen = $2, installed_version = $3, phase = $4, status = $5 WHERE id = $1`,
			at.UnixNano(), st.InstalledVersion, string(st.Phase), string(b)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO status_reports (device_id, at, status) VALUES ($1, $2, $3)`, id, at.UnixNano(), string(b)); err != nil {
			return fmt.Errorf("device %s report: %w", id, err)
		}
		if err := reportToRollout(ctx, tx, id, st, at); err != nil {
			return fmt.Errorf("device %s rollout: %w", id, err)
		}
		return nil
	})
}

// ReportInventory implements Reports.
func (s *SQLite) ReportInventory(ctx context.Context, id string, attrs map[string]string, at time.Time) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := updateDevice(ctx, tx, id, `UPDATE devices SET last_seen = $2 WHERE id = $1`, at.UnixNano()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM device_attributes WHERE device_id = $1`, id); err != nil {
			return fmt.Errorf("device %s attributes: %w", id, err)
		}
		names := make([]string, 0, len(attrs))
		for k := range attrs {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if _, err := tx.ExecContext(ctx, `INSERT INTO device_attributes (device_id, name, value) VALUES ($1, $2, $3)`, id, k, attrs[k]); err != nil {
				return fmt.Errorf("device %s attribute %s: %w", id, k, err)
			}
		}
		return nil
	})
}

// CreateOperatorToken implements Operators.
func (s *SQLite) CreateOperatorToken(ctx context.Context, t OperatorToken, ev Event) error {
	if t.Role.Rank() == 0 {
		return fmt.Errorf("operator token %s: role %q: want viewer, operator or admin", t.Name, t.Role)
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO operator_tokens (token_sha256, name, role, created) VALUES ($1, $2, $3, $4)`,
			t.TokenSHA256, t.Name, string(t.Role), t.Created.UnixNano())
		if isUniqueViolation(err) {
			return fmt.Errorf("operator token %s: %w", t.Name, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("operator token %s: %w", t.Name, err)
		}
		return record(ctx, tx, ev)
	})
}

// OperatorToken implements Operators.
func (s *SQLite) OperatorToken(ctx context.Context, tokenSHA256 string) (OperatorToken, error) {
	var (
		t                OperatorToken
		role             string
		created, revoked sql.NullInt64
	)
	err := s.db.QueryRowContext(ctx, `SELECT token_sha256, name, role, created, revoked_at FROM operator_tokens WHERE token_sha256 = $1`, tokenSHA256).
		Scan(&t.TokenSHA256, &t.Name, &role, &created, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return OperatorToken{}, fmt.Errorf("operator token: %w", ErrNotFound)
	}
	if err != nil {
		return OperatorToken{}, fmt.Errorf("operator token: %w", err)
	}
	t.Role, t.Created, t.RevokedAt = Role(role), fromNanos(created), fromNanos(revoked)
	return t, nil
}

// RevokeOperatorToken implements Operators.
func (s *SQLite) RevokeOperatorToken(ctx context.Context, name string, ev Event) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := revoke(ctx, tx, "operator_tokens", "name", name, ev.At); err != nil {
			return fmt.Errorf("revoke operator token %s: %w", name, err)
		}
		return record(ctx, tx, ev)
	})
}

// HasAdmin implements Operators.
func (s *SQLite) HasAdmin(ctx context.Context) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM operator_tokens WHERE role = $1 AND revoked_at IS NULL`, string(Admin)).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("count admin tokens: %w", err)
	}
	return n > 0, nil
}

// Events implements Audit.
func (s *SQLite) Events(ctx context.Context, before int64, limit int) ([]Event, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, at, actor, action, target, detail FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer rows.Close()
	var evs []Event
	for rows.Next() {
		var (
			ev Event
			at sql.NullInt64
		)
		if err := rows.Scan(&ev.ID, &at, &ev.Actor, &ev.Action, &ev.Target, &ev.Detail); err != nil {
			return nil, err
		}
		ev.At = fromNanos(at)
		evs = append(evs, ev)
	}
	return evs, rows.Err()
}
