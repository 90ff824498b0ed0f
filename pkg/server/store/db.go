package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
)

// DB is the Store in a SQL database: a SQLite file (OpenSQLite) or a
// PostgreSQL database (OpenPostgres). Both run every query and migration
// below; what differs between them is in their dialect, chosen once by
// Open.
type DB struct {
	db     *sql.DB
	d      dialect
	seen   *seenBuffer
	assign *assignmentCache
	// writers queues the writers when the dialect takes one at a time.
	writers sync.Mutex
	// reports queues the status reports written in groups (ReportStatus).
	reports reportQueue
}

// newDB returns the store over db, writing the times Seen records every
// SeenInterval until Close.
func newDB(db *sql.DB, d dialect) *DB {
	s := &DB{db: db, d: d, seen: newSeenBuffer(), assign: newAssignmentCache(time.Now)}
	go s.seenLoop()
	return s
}

var _ Store = (*DB)(nil)

// dialect is what differs between the databases DB runs on.
type dialect struct {
	// identity is what a migration's "INTEGER PRIMARY KEY" becomes, ""
	// for unchanged: SQLite numbers such a column itself (it is the
	// rowid), PostgreSQL needs it declared an identity column.
	identity string
	// isolation is the transactions' isolation level: SQLite's writers
	// take the database's lock when they begin (_txlock=immediate), so
	// each transaction runs as if alone; PostgreSQL gets the same with
	// serializable transactions, retried when they clash.
	isolation sql.IsolationLevel
	// uniqueViolation says whether err is a row clashing with another on
	// a primary key or a unique column.
	uniqueViolation func(err error) bool
	// retry says whether a transaction that failed with err may succeed
	// when run again (a serialization failure, a deadlock).
	retry func(err error) bool
	// anonymous says the statements built for many rows (placeholders)
	// take SQLite's anonymous "?" rather than "$N". SQLite takes "$N" as a
	// name, and its parser, and the driver when it binds each argument
	// (sqlite3_bind_parameter_name), look each up in a list, one by one:
	// a statement of 20,000 took seconds (and the one writer waited).
	// "?" is found by its place, at once.
	anonymous bool
	// oneWriter says the database takes one writer at a time: DB queues
	// its writers itself (writers), in order, rather than have them poll
	// for the lock, where under load one could lose to the others until
	// its busy timeout (SQLITE_BUSY).
	oneWriter bool
}

// migration returns the text of a migration as the dialect runs it.
func (d dialect) migration(sql string) string {
	if d.identity == "" {
		return sql
	}
	return strings.ReplaceAll(sql, "INTEGER PRIMARY KEY", d.identity)
}

// Open opens the store at dsn and brings its schema up to date: a
// postgres:// or postgresql:// URL is a PostgreSQL database
// (OpenPostgres), anything else the path of a SQLite file (OpenSQLite).
func Open(ctx context.Context, dsn string) (*DB, error) {
	if isPostgresURL(dsn) {
		return OpenPostgres(ctx, dsn)
	}
	return OpenSQLite(ctx, dsn)
}

// open is Open with the migrations of fsys.
func open(ctx context.Context, dsn string, fsys fs.FS) (*DB, error) {
	if isPostgresURL(dsn) {
		return openPostgres(ctx, dsn, fsys)
	}
	return openSQLite(ctx, dsn, fsys)
}

// maxConns bounds the connections DB keeps open to its database, and
// keeps that many open while idle. database/sql's defaults are no bound
// and two idle: under a fleet's check-ins the server opened a connection
// per request in flight, past PostgreSQL's max_connections (100; the
// excess were refused), and closed all but two after each burst, so that
// most requests paid for a new connection (on SQLite, its pragmas and
// the schema parsed again). Requests beyond it wait for a connection.
const maxConns = 16

// pool sets db's connection bounds (maxConns).
func pool(db *sql.DB) *sql.DB {
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	return db
}

// Close writes the last_seen times recorded and not written yet, and
// closes the database.
func (s *DB) Close() error {
	s.seen.stopOnce.Do(func() { close(s.seen.stop) })
	<-s.seen.done
	ctx, cancel := context.WithTimeout(context.Background(), 10*SeenInterval)
	defer cancel()
	return errors.Join(s.flushSeen(ctx), s.db.Close())
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

// maxTries bounds how often inTx runs a transaction that clashes with
// others before it gives up.
const maxTries = 20

// inTx runs f in a transaction and commits if it returns nil. A
// transaction the dialect says may succeed when run again is, after a
// random pause that grows with each try (from 1 ms, at most 100 ms).
func (s *DB) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	pause := time.Millisecond
	for try := 1; ; try++ {
		err := s.tx(ctx, f)
		if err == nil || try == maxTries || !s.d.retry(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (after %d tries: %w)", ctx.Err(), try, err)
		case <-time.After(pause/2 + rand.N(pause)):
		}
		pause = min(2*pause, 100*time.Millisecond)
	}
}

func (s *DB) tx(ctx context.Context, f func(tx *sql.Tx) error) error {
	defer s.writing()()
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: s.d.isolation})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// writing waits for the database's writer's turn, when it takes one at a
// time, and returns what ends it.
func (s *DB) writing() (done func()) {
	if !s.d.oneWriter {
		return func() {}
	}
	s.writers.Lock()
	return s.writers.Unlock
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
func (s *DB) RegisterDevice(ctx context.Context, d Device, ev Event) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO devices (id, board, token_sha256, token_expires, created, installed_version, cert_sha256)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			d.ID, d.Board, d.TokenSHA256, nanos(d.TokenExpires), d.Created.UnixNano(), d.InstalledVersion,
			sql.NullString{String: d.CertSHA256, Valid: d.CertSHA256 != ""})
		if s.d.uniqueViolation(err) {
			return fmt.Errorf("device %s: %w (its ID or its token is registered)", d.ID, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("device %s: %w", d.ID, err)
		}
		return record(ctx, tx, ev)
	})
}

// RegisterDevices implements Devices. The devices are inserted
// insertRows to a statement without looking for those registered first:
// on PostgreSQL, serializable transactions that read the devices' indexes
// clash with each other (and run again, and again) when several batches
// are registered at once. Only when an insert is refused is the clash
// looked for, to be named.
func (s *DB) RegisterDevices(ctx context.Context, ds []Device, ev Event) error {
	if err := givenTwice(ds); err != nil {
		return err
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for start := 0; start < len(ds); start += insertRows {
			if err := insertDevices(ctx, tx, s.d, ds[start:min(start+insertRows, len(ds))]); err != nil {
				return err
			}
		}
		return record(ctx, tx, ev)
	})
	if !s.d.uniqueViolation(err) {
		return err
	}
	if err := registered(ctx, s.db, s.d, ds); err != nil {
		return err
	}
	return fmt.Errorf("devices %s to %s: %w (one of them was registered meanwhile)", ds[0].ID, ds[len(ds)-1].ID, ErrExists)
}

// insertRows bounds the rows of one INSERT, and the devices of one
// look-up: 6 arguments each, within SQLite's 32,766 and PostgreSQL's
// 65,535.
const insertRows = 1000

// givenTwice names the first device of ds whose ID or token is given
// earlier in ds.
func givenTwice(ds []Device) error {
	ids := make(map[string]int, len(ds))
	tokens := make(map[string]int, len(ds))
	for i, d := range ds {
		if j, ok := ids[d.ID]; ok {
			return fmt.Errorf("devices[%d] (%s): %w (its ID is given at devices[%d] too)", i, d.ID, ErrExists, j)
		}
		if j, ok := tokens[d.TokenSHA256]; ok {
			return fmt.Errorf("devices[%d] (%s): %w (its token is given at devices[%d] too)", i, d.ID, ErrExists, j)
		}
		ids[d.ID], tokens[d.TokenSHA256] = i, i
	}
	return nil
}

// registered names the first device of ds whose ID or token is
// registered: nil when none is.
func registered(ctx context.Context, q querier, d dialect, ds []Device) error {
	takenID, takenToken := map[string]bool{}, map[string]bool{}
	for start := 0; start < len(ds); start += insertRows {
		batch := ds[start:min(start+insertRows, len(ds))]
		args := make([]any, 0, 2*len(batch))
		for _, d := range batch {
			args = append(args, d.ID)
		}
		for _, d := range batch {
			args = append(args, d.TokenSHA256)
		}
		rows, err := q.QueryContext(ctx, `SELECT id, token_sha256 FROM devices WHERE id IN (`+d.placeholders(1, len(batch))+`)
			OR token_sha256 IN (`+d.placeholders(len(batch)+1, len(batch))+`)`, args...)
		if err != nil {
			return fmt.Errorf("registered devices: %w", err)
		}
		for rows.Next() {
			var id, token string
			if err := rows.Scan(&id, &token); err != nil {
				rows.Close()
				return err
			}
			takenID[id], takenToken[token] = true, true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("registered devices: %w", err)
		}
	}
	for i, d := range ds {
		switch {
		case takenID[d.ID]:
			return fmt.Errorf("devices[%d] (%s): %w (its ID is registered)", i, d.ID, ErrExists)
		case takenToken[d.TokenSHA256]:
			return fmt.Errorf("devices[%d] (%s): %w (its token is registered to another device)", i, d.ID, ErrExists)
		}
	}
	return nil
}

// insertDevices adds ds in one statement.
func insertDevices(ctx context.Context, tx *sql.Tx, d dialect, ds []Device) error {
	var q strings.Builder
	q.WriteString(`INSERT INTO devices (id, board, token_sha256, token_expires, created, installed_version) VALUES `)
	args := make([]any, 0, 6*len(ds))
	for i, dev := range ds {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(" + d.placeholders(len(args)+1, 6) + ")")
		args = append(args, dev.ID, dev.Board, dev.TokenSHA256, nanos(dev.TokenExpires), dev.Created.UnixNano(), dev.InstalledVersion)
	}
	if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
		return fmt.Errorf("devices %s to %s: %w", ds[0].ID, ds[len(ds)-1].ID, err)
	}
	return nil
}

// placeholders returns n placeholders from first: "$3, $4, $5", or on
// SQLite "?, ?, ?" (anonymous), so a statement built of them must have
// each number once, in order, and no other placeholder.
func (d dialect) placeholders(first, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(d.placeholder(first + i))
	}
	return b.String()
}

// placeholder is placeholders' placeholder n.
func (d dialect) placeholder(n int) string {
	if d.anonymous {
		return "?"
	}
	return "$" + strconv.Itoa(n)
}

const deviceColumns = `id, board, token_sha256, token_expires, revoked_at, created, last_seen, installed_version, status, cert_sha256`

// authColumns are deviceColumns without the status, for scanDevice.
const authColumns = `id, board, token_sha256, token_expires, revoked_at, created, last_seen, installed_version, NULL, cert_sha256`

type scanner interface{ Scan(dest ...any) error }

func scanDevice(row scanner) (Device, error) {
	var (
		d                               Device
		expires, revoked, created, seen sql.NullInt64
		status, cert                    sql.NullString
	)
	if err := row.Scan(&d.ID, &d.Board, &d.TokenSHA256, &expires, &revoked, &created, &seen, &d.InstalledVersion, &status, &cert); err != nil {
		return Device{}, err
	}
	d.TokenExpires, d.RevokedAt, d.Created, d.LastSeen = fromNanos(expires), fromNanos(revoked), fromNanos(created), fromNanos(seen)
	d.CertSHA256 = cert.String
	if status.Valid {
		d.Status = new(api.Status)
		if err := json.Unmarshal([]byte(status.String), d.Status); err != nil {
			return Device{}, fmt.Errorf("device %s: stored status: %w", d.ID, err)
		}
	}
	return d, nil
}

// Device implements Devices.
func (s *DB) Device(ctx context.Context, id string) (Device, error) {
	d, err := scanDevice(s.db.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, fmt.Errorf("device %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Device{}, fmt.Errorf("device %s: %w", id, err)
	}
	s.overlaySeen(&d)
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

// DeviceByToken implements Devices. It reads no status: authenticating
// a device, at every request, needs none.
func (s *DB) DeviceByToken(ctx context.Context, tokenSHA256 string) (Device, error) {
	d, err := scanDevice(s.db.QueryRowContext(ctx, `SELECT `+authColumns+` FROM devices WHERE token_sha256 = $1`, tokenSHA256))
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
func (s *DB) RevokeDevice(ctx context.Context, id string, ev Event) error {
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

// ReportInventory implements Reports.
func (s *DB) ReportInventory(ctx context.Context, id string, attrs map[string]string, at time.Time) error {
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
func (s *DB) CreateOperatorToken(ctx context.Context, t OperatorToken, ev Event) error {
	if t.Role.Rank() == 0 {
		return fmt.Errorf("operator token %s: role %q: want viewer, operator or admin", t.Name, t.Role)
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO operator_tokens (token_sha256, name, role, created, expires) VALUES ($1, $2, $3, $4, $5)`,
			t.TokenSHA256, t.Name, string(t.Role), t.Created.UnixNano(), nanos(t.Expires))
		if s.d.uniqueViolation(err) {
			return fmt.Errorf("operator token %s: %w", t.Name, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("operator token %s: %w", t.Name, err)
		}
		return record(ctx, tx, ev)
	})
}

// OperatorToken implements Operators.
func (s *DB) OperatorToken(ctx context.Context, tokenSHA256 string) (OperatorToken, error) {
	var (
		t                         OperatorToken
		role                      string
		created, expires, revoked sql.NullInt64
	)
	err := s.db.QueryRowContext(ctx, `SELECT token_sha256, name, role, created, expires, revoked_at FROM operator_tokens WHERE token_sha256 = $1`, tokenSHA256).
		Scan(&t.TokenSHA256, &t.Name, &role, &created, &expires, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return OperatorToken{}, fmt.Errorf("operator token: %w", ErrNotFound)
	}
	if err != nil {
		return OperatorToken{}, fmt.Errorf("operator token: %w", err)
	}
	t.Role, t.Created, t.Expires, t.RevokedAt = Role(role), fromNanos(created), fromNanos(expires), fromNanos(revoked)
	return t, nil
}

// RevokeOperatorToken implements Operators.
func (s *DB) RevokeOperatorToken(ctx context.Context, name string, ev Event) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := revoke(ctx, tx, "operator_tokens", "name", name, ev.At); err != nil {
			return fmt.Errorf("revoke operator token %s: %w", name, err)
		}
		return record(ctx, tx, ev)
	})
}

// HasAdmin implements Operators.
func (s *DB) HasAdmin(ctx context.Context, now time.Time) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM operator_tokens WHERE role = $1 AND revoked_at IS NULL AND (expires IS NULL OR expires > $2)`,
		string(Admin), now.UnixNano()).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("count admin tokens: %w", err)
	}
	return n > 0, nil
}

// Events implements Audit.
func (s *DB) Events(ctx context.Context, before int64, limit int) ([]Event, error) {
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
