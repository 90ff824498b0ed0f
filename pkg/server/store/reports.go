package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lifeboat-update/lifeboat/pkg/api"
)

// maxGroup bounds the status reports written in one transaction. Each
// savepoint that writes is a subtransaction on PostgreSQL, and past 64 in
// one transaction (PGPROC_MAX_CACHED_SUBXIDS) every other session's
// snapshot overflows and looks them up in pg_subtrans, slowing every
// query of the server.
const maxGroup = 64

// report is one status report to write, and what writing it did.
type report struct {
	ctx    context.Context
	id     string
	st     api.Status
	status string // st as JSON
	at     time.Time
	// moved and changed: reportToRollout's.
	moved, changed bool
	err            error
	// done tells a report queued behind a group that it is written
	// (false; err says how) or that it is to write the next group (true).
	done chan bool
}

// reportQueue holds the status reports waiting for the group under way.
type reportQueue struct {
	mu      sync.Mutex
	busy    bool // a group is being written
	waiting []*report
}

// ReportStatus implements Reports. The report goes to the device's
// timeline too, and moves the device in its rollout, in the same
// transaction. A report that moves the device drops the assignment held
// for it; one that changes its rollout too, every device's.
//
// On PostgreSQL, a report seen beforehand to move its device in a
// rollout is written in a group: one transaction for all such reports
// that arrived while the group before was written (writeGroup), so that
// one that fails fails alone, with its own error. Such reports each count
// the device in the rollout's waves and run its policy over the counts,
// so two at once clash (serialization failures) and run again, over and
// over under a fleet's reports; in a group they clash no more, in this
// server. What a report does is decided in its transaction, whatever was
// seen before it. On SQLite, whose one writer takes them in turn, they
// clash never, and groups were measured to gain nothing: each report is
// written alone, as on PostgreSQL the reports that move no device.
func (s *DB) ReportStatus(ctx context.Context, id string, st api.Status, at time.Time) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	r := &report{ctx: ctx, id: id, st: st, status: string(b), at: at}
	group := false
	if !s.d.oneWriter {
		dr, ok, err := rolloutOf(ctx, s.db, id)
		if err != nil {
			return fmt.Errorf("device %s rollout: %w", id, err)
		}
		group = ok && dr.moves(st) != ""
	}
	if group {
		s.writeInGroup(r)
	} else {
		r.err = s.inTx(ctx, func(tx *sql.Tx) error { return writeReport(ctx, tx, r, nil) })
	}
	if r.err == nil {
		switch {
		case r.changed: // its rollout's waves or state: every device's
			s.assign.invalidate()
		case r.moved: // this device's alone
			s.assign.forget(id)
		}
	}
	return r.err
}

// writeReport writes r in tx, setting what it did; held is
// reportToRollout's.
func writeReport(ctx context.Context, tx *sql.Tx, r *report, held heldCounts) error {
	r.moved, r.changed = false, false
	if err := updateDevice(ctx, tx, r.id, `UPDATE devices SET last_seen = $2, installed_version = $3, phase = $4, status = $5 WHERE id = $1`,
		r.at.UnixNano(), r.st.InstalledVersion, string(r.st.Phase), r.status); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO status_reports (device_id, at, status) VALUES ($1, $2, $3)`, r.id, r.at.UnixNano(), r.status); err != nil {
		return fmt.Errorf("device %s report: %w", r.id, err)
	}
	var err error
	if r.moved, r.changed, err = reportToRollout(ctx, tx, r.id, r.st, r.at, held); err != nil {
		return fmt.Errorf("device %s rollout: %w", r.id, err)
	}
	return nil
}

// writeInGroup queues r and returns once it is written. The report that
// finds no group under way writes one, of itself and the reports queued
// behind it meanwhile, and hands the next to the first report queued then.
func (s *DB) writeInGroup(r *report) {
	q := &s.reports
	r.done = make(chan bool, 1)
	q.mu.Lock()
	q.waiting = append(q.waiting, r)
	lead := !q.busy
	q.busy = true
	q.mu.Unlock()
	if !lead && !<-r.done {
		return
	}
	q.mu.Lock()
	n := min(len(q.waiting), maxGroup)
	group := q.waiting[:n:n]
	q.waiting = q.waiting[n:]
	q.mu.Unlock()
	s.writeGroup(group)
	q.mu.Lock()
	if len(q.waiting) > 0 {
		q.waiting[0].done <- true
	} else {
		q.busy = false
	}
	q.mu.Unlock()
	for _, o := range group {
		if o != r {
			o.done <- false
		}
	}
}

// errOneFailed: a report of a group written without savepoints failed.
var errOneFailed = errors.New("a report of the group failed")

// writeGroup writes group in one transaction. It writes the reports one
// after another, reading each rollout's counts once; if one fails, it
// writes the group again, each report in a savepoint: one that fails is
// undone alone, and keeps its error. One whose request has ended is not
// written (its context's error). A failure of the transaction itself, or
// one that says to run it again (inTx), is every report's. The
// transaction is not cut short when the request of the report that
// writes it ends: the others wait for it.
func (s *DB) writeGroup(group []*report) {
	ctx := context.WithoutCancel(group[0].ctx)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		held := heldCounts{}
		for _, r := range group {
			if r.err = r.ctx.Err(); r.err != nil {
				continue
			}
			if r.err = writeReport(ctx, tx, r, held); r.err != nil {
				if s.d.retry(r.err) {
					return r.err
				}
				return errOneFailed
			}
		}
		return nil
	})
	if errors.Is(err, errOneFailed) {
		err = s.inTx(ctx, func(tx *sql.Tx) error {
			for _, r := range group {
				if r.err = r.ctx.Err(); r.err != nil {
					continue
				}
				if _, err := tx.ExecContext(ctx, `SAVEPOINT report`); err != nil {
					return fmt.Errorf("status reports: %w", err)
				}
				// The counts are read again after each: a savepoint
				// undone may have undone a change to them.
				if r.err = writeReport(ctx, tx, r, nil); r.err != nil {
					if s.d.retry(r.err) {
						return r.err
					}
					if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT report`); err != nil {
						return fmt.Errorf("status reports: %w", err)
					}
				}
				if _, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT report`); err != nil {
					return fmt.Errorf("status reports: %w", err)
				}
			}
			return nil
		})
	}
	if err != nil {
		for _, r := range group {
			r.err = err
		}
	}
}
