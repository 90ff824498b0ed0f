package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// SeenInterval is how often DB writes the last_seen times Seen recorded:
// one UPDATE per seenRows devices instead of a write transaction per poll
// (on PostgreSQL, a commit and a WAL flush each; on SQLite, the one
// writer's lock each). Reads through the same DB see the times at once
// (Device overlays them, SearchDevices and CreateRollout write them
// first); another server sharing the database sees them within this
// interval.
const SeenInterval = time.Second

// seenRows bounds the devices of one UPDATE: two arguments each.
const seenRows = 1000

// seenBuffer holds the last_seen times recorded since they were last
// written: pending, and those being written (inflight), so that a read
// overlaying them never misses one.
type seenBuffer struct {
	mu       sync.Mutex
	pending  map[string]int64 // device ID → Unix nanoseconds
	inflight map[string]int64
	// flushing serialises the writes, so that two never lock the same
	// rows in different orders.
	flushing sync.Mutex
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

func newSeenBuffer() *seenBuffer {
	return &seenBuffer{pending: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
}

// record keeps the later of at and what it holds for id.
func (b *seenBuffer) record(id string, at int64) {
	b.mu.Lock()
	if at > b.pending[id] {
		b.pending[id] = at
	}
	b.mu.Unlock()
}

// latest is the latest time recorded for id and not known written, 0 for
// none.
func (b *seenBuffer) latest(id string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return max(b.pending[id], b.inflight[id])
}

// Seen implements Reports: it records the time, which flushSeen writes
// within SeenInterval. A device that is not there is not an error: its
// time is dropped when written.
func (s *DB) Seen(ctx context.Context, id string, at time.Time) error {
	s.seen.record(id, at.UnixNano())
	return nil
}

// seenLoop writes the recorded times every SeenInterval until Close. A
// write that fails keeps its times for the next.
func (s *DB) seenLoop() {
	defer close(s.seen.done)
	t := time.NewTicker(SeenInterval)
	defer t.Stop()
	for {
		select {
		case <-s.seen.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*SeenInterval)
			s.flushSeen(ctx)
			cancel()
		}
	}
}

// flushSeen writes the recorded times, each only over an earlier one
// (a status report may have written a later time meanwhile), seenRows
// devices to a statement, in ID order. What it could not write stays
// recorded.
func (s *DB) flushSeen(ctx context.Context) error {
	b := s.seen
	b.flushing.Lock()
	defer b.flushing.Unlock()
	b.mu.Lock()
	b.inflight, b.pending = b.pending, map[string]int64{}
	batch := b.inflight
	b.mu.Unlock()
	ids := make([]string, 0, len(batch))
	for id := range batch {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var err error
	for start := 0; start < len(ids) && err == nil; start += seenRows {
		done := s.writing()
		err = writeSeen(ctx, s.db, s.d, ids[start:min(start+seenRows, len(ids))], batch)
		done()
	}
	b.mu.Lock()
	if err != nil {
		for id, at := range batch {
			if at > b.pending[id] {
				b.pending[id] = at
			}
		}
	}
	b.inflight = nil
	b.mu.Unlock()
	return err
}

// writeSeen sets the last_seen of ids to their times in at, in one
// statement.
func writeSeen(ctx context.Context, db *sql.DB, d dialect, ids []string, at map[string]int64) error {
	args := make([]any, 0, 2*len(ids))
	for _, id := range ids {
		args = append(args, id, at[id])
	}
	if _, err := db.ExecContext(ctx, seenQuery(d, len(ids)), args...); err != nil {
		return fmt.Errorf("last seen of %d devices, %s to %s: %w", len(ids), ids[0], ids[len(ids)-1], err)
	}
	return nil
}

// seenQuery is writeSeen's statement for n devices, whose IDs and times
// are its arguments, in turn.
func seenQuery(d dialect, n int) string {
	var q strings.Builder
	q.WriteString(`UPDATE devices SET last_seen = v.column2 FROM (VALUES `)
	for i := range n {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "(CAST(%s AS TEXT), CAST(%s AS BIGINT))", d.placeholder(2*i+1), d.placeholder(2*i+2))
	}
	q.WriteString(`) AS v WHERE devices.id = v.column1 AND (devices.last_seen IS NULL OR devices.last_seen < v.column2)`)
	return q.String()
}

// overlaySeen sets d's LastSeen to the time recorded for it, when later.
func (s *DB) overlaySeen(d *Device) {
	if at := s.seen.latest(d.ID); at > 0 && (d.LastSeen.IsZero() || at > d.LastSeen.UnixNano()) {
		d.LastSeen = time.Unix(0, at).UTC()
	}
}
