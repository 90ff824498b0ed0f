package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
	"github.com/lifeboat-update/lifeboat/pkg/server/filter"
)

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// groupLookup reads groups for filter.Compile.
func groupLookup(ctx context.Context, q querier) filter.GroupLookup {
	return func(name string) (string, bool, error) {
		var f sql.NullString
		err := q.QueryRowContext(ctx, `SELECT filter FROM device_groups WHERE name = $1`, name).Scan(&f)
		if errors.Is(err, sql.ErrNoRows) {
			return "", false, fmt.Errorf("%w: no such group", ErrBadFilter)
		}
		if err != nil {
			return "", false, err
		}
		return f.String, !f.Valid, nil
	}
}

// compileFilter compiles e with its placeholders from $first; nil is
// every device.
func compileFilter(ctx context.Context, q querier, e filter.Expr, now time.Time, first int) (filter.SQL, error) {
	if e == nil {
		return filter.SQL{Where: "1 = 1"}, nil
	}
	c, err := filter.Compile(e, now, first, groupLookup(ctx, q))
	var fe *filter.Error
	if errors.As(err, &fe) && !errors.Is(err, ErrBadFilter) {
		err = fmt.Errorf("%w: %w", ErrBadFilter, err)
	}
	return c, err
}

// SearchDevices implements Fleet.
// The last_seen times recorded are written first, for the filter and the
// answer to see them.
func (s *DB) SearchDevices(ctx context.Context, e filter.Expr, now time.Time, after string, limit int) ([]Device, error) {
	if err := s.flushSeen(ctx); err != nil {
		return nil, err
	}
	c, err := compileFilter(ctx, s.db, e, now, 3)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id > $1 AND `+c.Where+` ORDER BY id LIMIT $2`,
		append([]any{after, limit}, c.Args...)...)
	if err != nil {
		return nil, fmt.Errorf("search devices: %w", err)
	}
	defer rows.Close()
	var ds []Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return ds, rows.Err()
}

func strs(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// SetTags implements Fleet.
func (s *DB) SetTags(ctx context.Context, id string, tags []string, ev Event) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := exists(ctx, tx, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM device_tags WHERE device_id = $1`, id); err != nil {
			return err
		}
		for _, t := range tags {
			if _, err := tx.ExecContext(ctx, `INSERT INTO device_tags (device_id, tag) VALUES ($1, $2)`, id, t); err != nil {
				return fmt.Errorf("device %s tag %s: %w", id, t, err)
			}
		}
		return record(ctx, tx, ev)
	})
}

func exists(ctx context.Context, q querier, id string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM devices WHERE id = $1`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("device %s: %w", id, ErrNotFound)
	}
	return err
}

// CreateGroup implements Fleet.
func (s *DB) CreateGroup(ctx context.Context, g Group, ev Event) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		f := sql.NullString{String: g.Filter, Valid: g.Filter != ""}
		_, err := tx.ExecContext(ctx, `INSERT INTO device_groups (name, filter, created) VALUES ($1, $2, $3)`, g.Name, f, g.Created.UnixNano())
		if s.d.uniqueViolation(err) {
			return fmt.Errorf("group %s: %w", g.Name, ErrExists)
		}
		if err != nil {
			return err
		}
		for _, id := range g.Members {
			if err := exists(ctx, tx, id); err != nil {
				return fmt.Errorf("group %s: %w", g.Name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO group_members (group_name, device_id) VALUES ($1, $2)`, g.Name, id); err != nil {
				return fmt.Errorf("group %s member %s: %w", g.Name, id, err)
			}
		}
		return record(ctx, tx, ev)
	})
}

// Groups implements Fleet.
func (s *DB) Groups(ctx context.Context) ([]Group, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, filter, created FROM device_groups ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("groups: %w", err)
	}
	var gs []Group
	for rows.Next() {
		var (
			g       Group
			f       sql.NullString
			created sql.NullInt64
		)
		if err := rows.Scan(&g.Name, &f, &created); err != nil {
			rows.Close()
			return nil, err
		}
		g.Filter, g.Created = f.String, fromNanos(created)
		gs = append(gs, g)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range gs {
		if gs[i].Filter != "" {
			continue
		}
		if gs[i].Members, err = strs(ctx, s.db, `SELECT device_id FROM group_members WHERE group_name = $1 ORDER BY device_id`, gs[i].Name); err != nil {
			return nil, err
		}
	}
	return gs, nil
}

// DeleteGroup implements Fleet.
func (s *DB) DeleteGroup(ctx context.Context, name string, ev Event) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM device_groups WHERE name = $1`, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return fmt.Errorf("group %s: %w", name, ErrNotFound)
		}
		return record(ctx, tx, ev)
	})
}

// Timeline implements Fleet.
func (s *DB) Timeline(ctx context.Context, id string, after int64, limit int) ([]Report, error) {
	if err := exists(ctx, s.db, id); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, at, status FROM status_reports WHERE device_id = $1 AND id > $2 ORDER BY id LIMIT $3`, id, after, limit)
	if err != nil {
		return nil, fmt.Errorf("device %s timeline: %w", id, err)
	}
	defer rows.Close()
	var rs []Report
	for rows.Next() {
		var (
			r  Report
			at sql.NullInt64
			st string
		)
		if err := rows.Scan(&r.ID, &at, &st); err != nil {
			return nil, err
		}
		r.At = fromNanos(at)
		if err := json.Unmarshal([]byte(st), &r.Status); err != nil {
			return nil, fmt.Errorf("device %s report %d: %w", id, r.ID, err)
		}
		rs = append(rs, r)
	}
	return rs, rows.Err()
}

// AddReleases implements Fleet.
func (s *DB) AddReleases(ctx context.Context, rs []Release, ev Event) error {
	return s.inAssignTx(ctx, func(tx *sql.Tx) error {
		for _, r := range rs {
			idx, _ := json.Marshal(r.Indexes)
			_, err := tx.ExecContext(ctx, `INSERT INTO releases (board, version, repository, created, indexes) VALUES ($1, $2, $3, $4, $5)`,
				r.Board, r.Version, r.Repository, r.Created.UnixNano(), string(idx))
			if s.d.uniqueViolation(err) {
				return fmt.Errorf("release %s %s: %w", r.Board, r.Version, ErrExists)
			}
			if err != nil {
				return fmt.Errorf("release %s %s: %w", r.Board, r.Version, err)
			}
		}
		return record(ctx, tx, ev)
	})
}

// Releases implements Fleet.
func (s *DB) Releases(ctx context.Context) ([]Release, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT board, version, repository, created, indexes FROM releases ORDER BY board, version`)
	if err != nil {
		return nil, fmt.Errorf("releases: %w", err)
	}
	defer rows.Close()
	var rs []Release
	for rows.Next() {
		var (
			r       Release
			created sql.NullInt64
			idx     string
		)
		if err := rows.Scan(&r.Board, &r.Version, &r.Repository, &created, &idx); err != nil {
			return nil, err
		}
		r.Created = fromNanos(created)
		if err := json.Unmarshal([]byte(idx), &r.Indexes); err != nil {
			return nil, fmt.Errorf("release %s %s indexes: %w", r.Board, r.Version, err)
		}
		rs = append(rs, r)
	}
	return rs, rows.Err()
}

// DeleteRelease implements Fleet.
func (s *DB) DeleteRelease(ctx context.Context, board, version string, ev Event) error {
	return s.inAssignTx(ctx, func(tx *sql.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM rollouts WHERE board = $1 AND version = $2 AND state IN ('created', 'running', 'paused') ORDER BY id LIMIT 1`, board, version).Scan(&id)
		if err == nil {
			return fmt.Errorf("release %s %s: %w by rollout %d, which is active: cancel it first", board, version, ErrInUse, id)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM releases WHERE board = $1 AND version = $2`, board, version)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return fmt.Errorf("release %s %s: %w", board, version, ErrNotFound)
		}
		return record(ctx, tx, ev)
	})
}

// waveOrder is the order devices fill waves in: by the SHA-256 of their
// IDs, so that it is fixed and spread over the fleet whatever the IDs.
// Each ID is hashed once (a million, in a rollout over the whole fleet).
func waveOrder(ids []string) {
	type keyed struct {
		key [sha256.Size]byte
		id  string
	}
	ks := make([]keyed, len(ids))
	for i, id := range ids {
		ks[i] = keyed{sha256.Sum256([]byte(id)), id}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return bytes.Compare(a.key[:], b.key[:]) })
	for i := range ks {
		ids[i] = ks[i].id
	}
}

// CreateRollout implements Fleet.
// The last_seen times recorded are written first, for the target to
// see them.
func (s *DB) CreateRollout(ctx context.Context, r Rollout, target filter.Expr, ev Event) (Rollout, error) {
	if err := s.flushSeen(ctx); err != nil {
		return r, err
	}
	err := s.inAssignTx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM releases WHERE board = $1 AND version = $2`, r.Board, r.Version).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("release %s %s: %w", r.Board, r.Version, ErrNotFound)
		}
		if err != nil {
			return err
		}
		c, err := compileFilter(ctx, tx, target, r.Created, 2)
		if err != nil {
			return err
		}
		ids, err := strs(ctx, tx, `SELECT id FROM devices WHERE board = $1 AND revoked_at IS NULL AND `+c.Where,
			append([]any{r.Board}, c.Args...)...)
		if err != nil {
			return fmt.Errorf("rollout target: %w", err)
		}
		if len(ids) == 0 {
			return fmt.Errorf("target %q: %w of board %s that is not revoked", r.Target, ErrNoDevices, r.Board)
		}
		if err := inActiveRollout(ctx, tx, c, r.Board); err != nil {
			return err
		}
		waveOrder(ids)
		r.Sizes = ResolveWaves(r.Waves, len(ids))
		r.State, r.OpenWave, r.Updated = Created, 0, r.Created
		waves, _ := json.Marshal(struct {
			Waves []Wave
			Sizes []int
		}{r.Waves, r.Sizes})
		err = tx.QueryRowContext(ctx, `INSERT INTO rollouts (board, version, target, waves, success_threshold, error_threshold, state, open_wave, created, updated, reason)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
			r.Board, r.Version, r.Target, string(waves), r.SuccessThreshold, r.ErrorThreshold, string(r.State), r.OpenWave,
			r.Created.UnixNano(), r.Updated.UnixNano(), r.Reason).Scan(&r.ID)
		if err != nil {
			return fmt.Errorf("rollout: %w", err)
		}
		if err := insertRolloutDevices(ctx, tx, s.d, r, ids); err != nil {
			return err
		}
		ev.Target = fmt.Sprint(r.ID)
		return record(ctx, tx, ev)
	})
	return r, err
}

// inActiveRollout names the first device, in ID order, of the target
// (board, and the compiled filter c with its placeholders from $2) that
// is in an active rollout: one query, whatever the target's size.
func inActiveRollout(ctx context.Context, tx *sql.Tx, c filter.SQL, board string) error {
	var (
		id    string
		other int64
	)
	err := tx.QueryRowContext(ctx, `SELECT d.device_id, r.id FROM rollout_devices d JOIN rollouts r ON r.id = d.rollout_id
		WHERE r.state IN ('created', 'running', 'paused')
		AND d.device_id IN (SELECT id FROM devices WHERE board = $1 AND revoked_at IS NULL AND `+c.Where+`)
		ORDER BY d.device_id, r.id LIMIT 1`, append([]any{board}, c.Args...)...).Scan(&id, &other)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rollout target: devices in active rollouts: %w", err)
	}
	return fmt.Errorf("device %s is in rollout %d, which is active: %w", id, other, ErrState)
}

// rolloutRows bounds the devices of one INSERT into rollout_devices: two
// arguments each, within SQLite's 32,766.
const rolloutRows = 10_000

// insertRolloutDevices adds ids, in wave order, to rollout r's waves
// (r.Sizes), and counts each wave's devices (rollout_waves), all
// assigned. The devices are inserted in ID order, rolloutRows to a
// statement: on PostgreSQL each row's foreign key is checked, and its
// device's row locked, through the devices' ID index and table, which
// are then read in order rather than at random (a million rows took 37 s
// in wave order, 21 s in ID order).
func insertRolloutDevices(ctx context.Context, tx *sql.Tx, d dialect, r Rollout, ids []string) error {
	type member struct {
		id   string
		wave int
	}
	ms := make([]member, 0, len(ids))
	next := 0
	for wave, size := range r.Sizes {
		for _, id := range ids[next : next+size] {
			ms = append(ms, member{id, wave})
		}
		next += size
		if size == 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO rollout_waves (rollout_id, wave, assigned, installing, succeeded, failed) VALUES ($1, $2, $3, 0, 0, 0)`,
			r.ID, wave, size); err != nil {
			return fmt.Errorf("rollout %d wave %d: %w", r.ID, wave+1, err)
		}
	}
	slices.SortFunc(ms, func(a, b member) int { return strings.Compare(a.id, b.id) })
	// The rollout's ID and time, integers, are written out, so that each
	// placeholder comes once, in order (placeholders).
	row := fmt.Sprintf("(%d, %d, ", r.ID, r.Created.UnixNano())
	for start := 0; start < len(ms); start += rolloutRows {
		batch := ms[start:min(start+rolloutRows, len(ms))]
		var q strings.Builder
		q.WriteString(`INSERT INTO rollout_devices (rollout_id, updated, device_id, wave, state) VALUES `)
		args := make([]any, 0, 2*len(batch))
		for i, m := range batch {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(row + d.placeholders(len(args)+1, 2) + ", 'assigned')")
			args = append(args, m.id, m.wave)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("rollout %d devices %s to %s: %w", r.ID, batch[0].id, batch[len(batch)-1].id, err)
		}
	}
	return nil
}

const rolloutColumns = `id, board, version, target, waves, success_threshold, error_threshold, state, open_wave, created, updated, reason`

func scanRollout(row scanner) (Rollout, error) {
	var (
		r                Rollout
		waves, state     string
		created, updated sql.NullInt64
	)
	err := row.Scan(&r.ID, &r.Board, &r.Version, &r.Target, &waves, &r.SuccessThreshold, &r.ErrorThreshold, &state, &r.OpenWave, &created, &updated, &r.Reason)
	if err != nil {
		return r, err
	}
	var w struct {
		Waves []Wave
		Sizes []int
	}
	if err := json.Unmarshal([]byte(waves), &w); err != nil {
		return r, fmt.Errorf("rollout %d waves: %w", r.ID, err)
	}
	r.Waves, r.Sizes, r.State, r.Created, r.Updated = w.Waves, w.Sizes, RolloutState(state), fromNanos(created), fromNanos(updated)
	return r, nil
}

// rolloutProgress reads rollout id and its waves' devices counted by
// state (rollout_waves), in one query: the policy runs it after every
// report that moves a device.
func rolloutProgress(ctx context.Context, q querier, id int64) (Rollout, []WaveProgress, error) {
	// No column of rollout_waves is named as one of rollouts.
	rows, err := q.QueryContext(ctx, `SELECT `+rolloutColumns+`, wave, assigned, installing, succeeded, failed
		FROM rollouts LEFT JOIN rollout_waves ON rollout_id = id WHERE id = $1`, id)
	if err != nil {
		return Rollout{}, nil, err
	}
	defer rows.Close()
	var (
		r     Rollout
		waves []WaveProgress
	)
	for rows.Next() {
		var (
			wave                                    sql.NullInt64
			assigned, installing, succeeded, failed sql.NullInt64
		)
		row, err := scanRollout(withExtra{rows, []any{&wave, &assigned, &installing, &succeeded, &failed}})
		if err != nil {
			return r, nil, err
		}
		if waves == nil {
			r = row
			waves = make([]WaveProgress, len(r.Sizes))
			for i, n := range r.Sizes {
				waves[i] = WaveProgress{Size: n, Open: r.State != Created && i <= r.OpenWave}
			}
		}
		if !wave.Valid { // no wave counted
			continue
		}
		w := int(wave.Int64)
		if w < 0 || w >= len(waves) {
			return r, nil, fmt.Errorf("rollout %d: devices counted in wave %d of %d", id, w, len(waves))
		}
		waves[w].Assigned, waves[w].Installing = int(assigned.Int64), int(installing.Int64)
		waves[w].Succeeded, waves[w].Failed = int(succeeded.Int64), int(failed.Int64)
	}
	if err := rows.Err(); err != nil {
		return r, nil, err
	}
	if waves == nil {
		return r, nil, fmt.Errorf("rollout %d: %w", id, ErrNotFound)
	}
	return r, waves, nil
}

// withExtra scans a row's columns into the destinations given, then
// into extra.
type withExtra struct {
	row   scanner
	extra []any
}

func (w withExtra) Scan(dest ...any) error { return w.row.Scan(append(dest, w.extra...)...) }

// evaluate applies advance to rollout id and stores what changed; it
// says whether anything did.
func evaluate(ctx context.Context, tx *sql.Tx, id int64, now time.Time) (Rollout, bool, error) {
	r, waves, err := rolloutProgress(ctx, tx, id)
	if err != nil {
		return r, false, err
	}
	c := rolloutCounts{r, waves}
	changed, err := c.apply(ctx, tx, now)
	return c.r, changed, err
}

// rolloutCounts is a rollout and its waves' progress as a transaction
// read them and changed them since.
type rolloutCounts struct {
	r     Rollout
	waves []WaveProgress
}

// apply applies advance to c and stores what changed; it says whether
// anything did.
func (c *rolloutCounts) apply(ctx context.Context, tx *sql.Tx, now time.Time) (bool, error) {
	state, open, reason := advance(c.r, c.waves)
	if state == c.r.State && open == c.r.OpenWave {
		return false, nil
	}
	c.r.State, c.r.OpenWave, c.r.Reason, c.r.Updated = state, open, reason, now
	_, err := tx.ExecContext(ctx, `UPDATE rollouts SET state = $2, open_wave = $3, reason = $4, updated = $5 WHERE id = $1`,
		c.r.ID, string(state), open, reason, now.UnixNano())
	return err == nil, err
}

// heldCounts holds, for reports written one after another in one
// transaction, the rollouts they read and changed, so that each reads
// them once: nothing but the transaction changes what it reads.
type heldCounts map[int64]*rolloutCounts

// Rollout implements Fleet.
func (s *DB) Rollout(ctx context.Context, id int64) (Rollout, []WaveProgress, error) {
	return rolloutProgress(ctx, s.db, id)
}

// RolloutDevices implements Fleet.
func (s *DB) RolloutDevices(ctx context.Context, id int64) ([]RolloutDevice, error) {
	var one int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM rollouts WHERE id = $1`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("rollout %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT device_id, wave, state, updated FROM rollout_devices WHERE rollout_id = $1 ORDER BY wave, device_id`, id)
	if err != nil {
		return nil, fmt.Errorf("rollout %d devices: %w", id, err)
	}
	defer rows.Close()
	var ds []RolloutDevice
	for rows.Next() {
		var (
			d       RolloutDevice
			state   string
			updated sql.NullInt64
		)
		if err := rows.Scan(&d.DeviceID, &d.Wave, &state, &updated); err != nil {
			return nil, err
		}
		d.State, d.Updated = DeviceState(state), fromNanos(updated)
		ds = append(ds, d)
	}
	return ds, rows.Err()
}

// Rollouts implements Fleet.
func (s *DB) Rollouts(ctx context.Context) ([]Rollout, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+rolloutColumns+` FROM rollouts ORDER BY id DESC`)
	if err != nil {
		return nil, fmt.Errorf("rollouts: %w", err)
	}
	defer rows.Close()
	var rs []Rollout
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, rows.Err()
}

// SetRolloutState implements Fleet.
func (s *DB) SetRolloutState(ctx context.Context, id int64, t Transition, ev Event) (Rollout, error) {
	var r Rollout
	err := s.inAssignTx(ctx, func(tx *sql.Tx) error {
		cur, _, err := rolloutProgress(ctx, tx, id)
		if err != nil {
			return err
		}
		if !slices.Contains(t.From, cur.State) {
			return fmt.Errorf("rollout %d is %s: %w to %s", id, cur.State, ErrState, t.Name)
		}
		reason := ""
		if t.To != Running {
			reason = string(t.To) + " by " + ev.Actor
		}
		if _, err := tx.ExecContext(ctx, `UPDATE rollouts SET state = $2, reason = $3, updated = $4 WHERE id = $1`,
			id, string(t.To), reason, ev.At.UnixNano()); err != nil {
			return err
		}
		if r, _, err = evaluate(ctx, tx, id, ev.At); err != nil {
			return err
		}
		return record(ctx, tx, ev)
	})
	return r, err
}

// deviceRollout is where a device is in its newest rollout that runs,
// is paused or completed (whose devices still have the release, and may
// retry): the rollout, its release, the device's wave and state.
type deviceRollout struct {
	id      int64
	version string
	wave    int
	state   DeviceState
}

// rolloutOf reads device id's rollout (deviceRollout); ok is false when
// it is in none.
func rolloutOf(ctx context.Context, q querier, id string) (dr deviceRollout, ok bool, err error) {
	var state string
	err = q.QueryRowContext(ctx, `SELECT r.id, r.version, d.wave, d.state FROM rollout_devices d JOIN rollouts r ON r.id = d.rollout_id
		WHERE d.device_id = $1 AND d.wave <= r.open_wave AND r.state IN ('running', 'paused', 'completed')
		ORDER BY r.id DESC LIMIT 1`, id).Scan(&dr.id, &dr.version, &dr.wave, &state)
	if errors.Is(err, sql.ErrNoRows) {
		return dr, false, nil
	}
	dr.state = DeviceState(state)
	return dr, err == nil, err
}

// moves is where st moves a device from dr: "" for nowhere.
func (dr deviceRollout) moves(st api.Status) DeviceState {
	to := deviceState(st, dr.version)
	if to == dr.state || dr.state == Succeeded {
		return ""
	}
	return to
}

// reportToRollout moves device id in its rollout (rolloutOf) by st, and
// applies the rollout's policy. It says whether it moved the device, and
// whether the policy then changed the rollout. The rollout's counts are
// read once for all the reports of a transaction that share held (nil:
// read each time).
func reportToRollout(ctx context.Context, tx *sql.Tx, id string, st api.Status, at time.Time, held heldCounts) (moved, changed bool, err error) {
	dr, ok, err := rolloutOf(ctx, tx, id)
	if err != nil || !ok {
		return false, false, err
	}
	from, to := dr.state, dr.moves(st)
	if to == "" {
		return false, false, nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE rollout_devices SET state = $3, updated = $4 WHERE rollout_id = $1 AND device_id = $2`,
		dr.id, id, string(to), at.UnixNano()); err != nil {
		return false, false, err
	}
	// from and to are DeviceStates, which name rollout_waves' columns.
	if !from.valid() {
		return false, false, fmt.Errorf("rollout %d device %s: stored state %q", dr.id, id, from)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE rollout_waves SET `+string(from)+` = `+string(from)+` - 1, `+string(to)+` = `+string(to)+` + 1
		WHERE rollout_id = $1 AND wave = $2`, dr.id, dr.wave); err != nil {
		return false, false, fmt.Errorf("rollout %d wave %d: %w", dr.id, dr.wave+1, err)
	}
	c := held[dr.id]
	if c == nil {
		// Read after the move: the counts include it.
		r, waves, err := rolloutProgress(ctx, tx, dr.id)
		if err != nil {
			return false, false, err
		}
		c = &rolloutCounts{r, waves}
		if held != nil {
			held[dr.id] = c
		}
	} else {
		*c.waves[dr.wave].count(from)--
		*c.waves[dr.wave].count(to)++
	}
	changed, err = c.apply(ctx, tx, at)
	return err == nil, changed, err
}
