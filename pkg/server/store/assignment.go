package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// AssignmentTTL bounds how long DB answers Assignment from memory. Every
// change made through the DB that can change an assignment (a rollout
// created, started, paused, resumed or cancelled; a device moved in its
// rollout by a report; a release added or deleted) drops what it holds at
// once; the TTL bounds how long a change made through another server
// sharing the database goes unseen.
const AssignmentTTL = 5 * time.Second

// assignmentEntries bounds the devices whose assignments DB holds.
const assignmentEntries = 100_000

// assigned is where a device's assignment comes from: its rollouts whose
// wave is open and that run or completed, or in which it is installing.
const assigned = `FROM rollout_devices d JOIN rollouts r ON r.id = d.rollout_id JOIN releases rel ON rel.board = r.board AND rel.version = r.version
	WHERE d.wave <= r.open_wave AND (r.state IN ('running', 'completed') OR d.state = 'installing')`

// assignmentCache holds assignments read at a generation, which each
// change that can alter many moves on: an entry of an older generation,
// or older than the TTL, is read again. A change that can alter one
// device's alone (a report moving it in its rollout) forgets that
// device's. It also holds whether any device has an assignment at all:
// while none has (no rollout has begun), no device needs reading.
type assignmentCache struct {
	now func() time.Time
	mu  sync.Mutex
	gen uint64
	// forgets counts the devices forgotten; forgot holds the count at
	// each device's last, since the generation began, so that what was
	// read before it is not kept.
	forgets uint64
	forgot  map[string]uint64
	// none is whether no device had an assignment at generation noneGen,
	// read at noneAt.
	none    bool
	noneGen uint64
	noneAt  time.Time
	devices map[string]cachedAssignment
}

type cachedAssignment struct {
	a   *Assignment // nil: none
	gen uint64
	at  time.Time
}

func newAssignmentCache(now func() time.Time) *assignmentCache {
	return &assignmentCache{now: now, gen: 1, devices: map[string]cachedAssignment{}, forgot: map[string]uint64{}}
}

// invalidate drops every assignment held.
func (c *assignmentCache) invalidate() {
	c.mu.Lock()
	c.invalidateLocked()
	c.mu.Unlock()
}

func (c *assignmentCache) invalidateLocked() {
	c.gen++
	clear(c.devices)
	clear(c.forgot)
}

// forget drops the assignment held for id, and that no device has one,
// if held (id may now have one). That some device has one is kept: it
// only sends Assignment to read the device's.
func (c *assignmentCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.forgot) >= assignmentEntries {
		c.invalidateLocked()
		return
	}
	c.forgets++
	c.forgot[id] = c.forgets
	delete(c.devices, id)
	if c.none {
		c.noneGen = 0
	}
}

// readMark is when a read began: what it read is kept only if nothing
// that could alter it came since.
type readMark struct{ gen, forgets uint64 }

// lookup returns id's assignment if held and current; otherwise the mark
// to read it at, and whether it is known that no device has one.
func (c *assignmentCache) lookup(id string) (a *Assignment, ok bool, m readMark, noneKnown bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	m = readMark{c.gen, c.forgets}
	if e, hit := c.devices[id]; hit && e.gen == c.gen && now.Sub(e.at) < AssignmentTTL {
		if e.a != nil {
			a := *e.a // the caller's own
			return &a, true, m, false
		}
		return nil, true, m, false
	}
	if c.noneGen == c.gen && now.Sub(c.noneAt) < AssignmentTTL {
		if c.none {
			return nil, true, m, true
		}
		return nil, false, m, true
	}
	return nil, false, m, false
}

// keep holds what was read for id from m on, unless a change came since.
func (c *assignmentCache) keep(id string, a *Assignment, m readMark, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.gen != c.gen || c.forgot[id] > m.forgets {
		return
	}
	if len(c.devices) >= assignmentEntries {
		for k := range c.devices { // one entry, whichever the map yields
			delete(c.devices, k)
			break
		}
	}
	c.devices[id] = cachedAssignment{a: a, gen: m.gen, at: at}
}

// keepNone holds whether no device has an assignment, read from m on,
// unless a change came since that could make it wrong.
func (c *assignmentCache) keepNone(none bool, m readMark, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.gen == c.gen && (!none || m.forgets == c.forgets) {
		c.none, c.noneGen, c.noneAt = none, m.gen, at
	}
}

// inAssignTx is inTx for a change that can alter assignments: once it is
// committed, the assignments held are dropped.
func (s *DB) inAssignTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	err := s.inTx(ctx, f)
	if err == nil {
		s.assign.invalidate()
	}
	return err
}

// Assignment implements Fleet. A device gets the release of its newest
// rollout once its wave is open, while the rollout runs or after it
// completed; a rollout paused, halted or cancelled keeps it only for a
// device already installing, so that it can finish. Answers come from
// memory while no change can have altered them (AssignmentTTL).
func (s *DB) Assignment(ctx context.Context, id string) (*Assignment, error) {
	a, ok, m, noneKnown := s.assign.lookup(id)
	if ok {
		return a, nil
	}
	at := s.assign.now()
	if !noneKnown {
		var one int
		err := s.db.QueryRowContext(ctx, `SELECT 1 `+assigned+` LIMIT 1`).Scan(&one)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("assignments: %w", err)
		}
		none := errors.Is(err, sql.ErrNoRows)
		s.assign.keepNone(none, m, at)
		if none {
			return nil, nil
		}
	}
	a = new(Assignment)
	err := s.db.QueryRowContext(ctx, `SELECT r.id, r.board, r.version, rel.repository `+assigned+` AND d.device_id = $1
		ORDER BY r.id DESC LIMIT 1`, id).Scan(&a.RolloutID, &a.Board, &a.Version, &a.Repository)
	if errors.Is(err, sql.ErrNoRows) {
		a, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("device %s assignment: %w", id, err)
	}
	s.assign.keep(id, a, m, at)
	return a, nil
}
