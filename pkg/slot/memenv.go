package slot

import (
	"context"
	"maps"
	"sync"

	"github.com/lifeboat-update/lifeboat/pkg/bootenv"
)

// MemEnv is an in-memory bootenv.Env for tests: each Save replaces the
// variables at once, as the real backends' power-cut safe Save does, and is
// counted. It is safe for concurrent use.
type MemEnv struct {
	mu      sync.Mutex
	vars    bootenv.Vars
	saves   int
	saveErr error
}

var _ bootenv.Env = (*MemEnv)(nil)

// NewMemEnv returns a MemEnv holding a copy of v; a nil v is an
// environment with no valid copy, whose Load fails with bootenv.ErrNoEnv.
func NewMemEnv(v bootenv.Vars) *MemEnv { return &MemEnv{vars: maps.Clone(v)} }

// Load returns a copy of the variables.
func (m *MemEnv) Load(ctx context.Context) (bootenv.Vars, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.vars == nil {
		return nil, bootenv.ErrNoEnv
	}
	return maps.Clone(m.vars), nil
}

// Save replaces the variables with a copy of v, unless FailSaves set an
// error: then nothing changes, as when the power is cut before the switch.
func (m *MemEnv) Save(ctx context.Context, v bootenv.Vars) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.saveErr != nil {
		return m.saveErr
	}
	m.saves++
	m.vars = maps.Clone(v)
	if m.vars == nil {
		m.vars = bootenv.Vars{}
	}
	return nil
}

// Saves returns how many Saves succeeded.
func (m *MemEnv) Saves() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saves
}

// FailSaves makes every Save return err and change nothing; nil undoes it.
func (m *MemEnv) FailSaves(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saveErr = err
}

// Vars returns a copy of the variables, nil when there are none.
func (m *MemEnv) Vars() bootenv.Vars {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.vars)
}

func (m *MemEnv) String() string { return "memory environment" }
